# govtrust — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= ./var

.PHONY: run test mutate lint proto bench docs-images install system-deps-run system-deps-test system-deps-bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) requirements.lock pyproject.toml
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

system-deps-run:
	@scripts/system-deps.sh run

system-deps-bench:
	@scripts/system-deps.sh bench

system-deps-test:
	@scripts/system-deps.sh test

## Serve gRPC (127.0.0.1:50051) and HTTP (127.0.0.1:8080) on an embedded instance in ./var.
run: system-deps-run $(STAMP)
	$(VENV)/bin/govtrust serve --data-dir $(DATA_DIR)

## Lint, type-check and run the whole suite (SQLite and PostgreSQL legs) in two passes
## (docs/testing.md "How the suite runs"): every test not marked `serial` on TEST_WORKERS
## xdist workers (a test file stays on one worker), then the `serial` ones alone (the cluster
## leg; tests timing themselves against tight bounds). Both passes always run; either failing
## fails the target. A pass that selects nothing (PYTEST_ARGS naming a few tests) is no failure.
TEST_WORKERS ?= 2
test: system-deps-test $(STAMP) lint
	@status=0; \
	echo "== parallel pass ($(TEST_WORKERS) workers): not serial"; \
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial" $(PYTEST_ARGS) \
	  || [ $$? -eq 5 ] || status=1; \
	echo "== serial pass: serial"; \
	$(PY) -m pytest -p no:xdist -m serial $(PYTEST_ARGS) || [ $$? -eq 5 ] || status=1; \
	exit $$status

## Refresh the pictures in docs/ by running the tests that draw them with DOCS_IMAGES set
## (a plain test run writes them under its temporary folders only).
DOCS_IMAGE_TESTS := tests/seal/test_images.py::test_docs_example \
	tests/license/test_document.py::test_sealed_licence_validates_shows_its_text_and_both_qr_codes_decode \
	tests/license/test_ofd_licence.py::test_easyofd_renders_the_sealed_licence_text_seal_and_both_qr_codes_decode \
	tests/license/test_public_page.py::test_chromium_shows_a_valid_and_a_revoked_licence \
	tests/console/test_console_browser.py::test_chromium_drives_a_seal_from_application_to_remaking \
	tests/console/test_console_browser.py::test_chromium_shows_licences_access_codes_and_certificates \
	tests/console/test_console_operator_browser.py::test_chromium_shows_the_operator_page_and_verifies_the_chain
docs-images: system-deps-test $(STAMP)
	DOCS_IMAGES=$(CURDIR)/docs $(PY) -m pytest -q $(DOCS_IMAGE_TESTS)

## Mutation testing of the critical modules (docs/testing.md "Mutation testing"): each module
## against its own fast tests, resumable (verdicts kept in var/mutate/), bounded by
## MUTATE_SECONDS per module; MODULE=idp.identifiers runs one.
MUTATE_SECONDS ?= 600
mutate: $(STAMP)
	MUTATE_SECONDS=$(MUTATE_SECONDS) $(PY) scripts/mutate.py $(MODULE)

## Ruff, mypy, the import-linter contracts of pyproject.toml (docs/architecture.md
## "Enforced layers") and the table-ownership scan ("Who owns which table").
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -p no:randomly -p no:cacheprovider tests/platform/test_table_ownership.py

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

## Every bench runs (a missed target does not stop the others); the misses are repeated at the
## end (each bench's last lines) and the exit status is non-zero if any bench missed or failed.
BENCHES ?= $(filter-out bench/__init__.py bench/_%.py,$(wildcard bench/*.py))
bench: system-deps-bench $(STAMP)
	@logs=$$(mktemp -d); missed=""; \
	for b in $(BENCHES); do \
	  echo "== $$b"; log=$$logs/$$(basename $$b).log; \
	  { $(PY) $$b; echo $$? > $$log.rc; } 2>&1 | tee $$log; \
	  [ "$$(cat $$log.rc)" = 0 ] || missed="$$missed $$b"; \
	done; \
	if [ -z "$$missed" ]; then echo "== every bench met its targets"; rm -rf $$logs; exit 0; fi; \
	echo "== targets missed:"; \
	for b in $$missed; do \
	  log=$$logs/$$(basename $$b).log; echo "-- $$b (exit $$(cat $$log.rc)):"; tail -n 5 $$log; \
	done; \
	rm -rf $$logs; exit 1

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
