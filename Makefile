# govtrust — the two set-up commands are `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= ./var

.PHONY: run test lint proto bench docs-images install system-deps-run system-deps-test system-deps-bench clean

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

## Lint, type-check and run the whole suite (SQLite and PostgreSQL legs).
test: system-deps-test $(STAMP) lint
	$(PY) -m pytest $(PYTEST_ARGS)

## Refresh the pictures in docs/ by running the tests that draw them with DOCS_IMAGES set
## (a plain test run writes them under its temporary folders only).
DOCS_IMAGE_TESTS := tests/seal/test_images.py::test_docs_example \
	tests/license/test_document.py::test_sealed_licence_validates_shows_its_text_and_both_qr_codes_decode \
	tests/license/test_public_page.py::test_chromium_shows_a_valid_and_a_revoked_licence
docs-images: system-deps-test $(STAMP)
	DOCS_IMAGES=$(CURDIR)/docs $(PY) -m pytest -q $(DOCS_IMAGE_TESTS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

proto: $(STAMP)
	$(PY) scripts/gen_proto.py

bench: system-deps-bench $(STAMP)
	@set -e; for b in $(filter-out bench/__init__.py bench/_%.py,$(wildcard bench/*.py)); do echo "== $$b"; $(PY) $$b; done

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
