"""Generate the Python gRPC stubs for the govtrust API contract.

Runs ``grpc_tools.protoc`` over every ``proto/govtrust/v1/*.proto`` file with ``-I proto`` (plus
grpc_tools' bundled well-known types), producing under ``<out>/govtrust/v1/``:

* ``<name>_pb2.py`` (``--python_out``) and ``<name>_pb2_grpc.py`` (``--grpc_python_out``);
* ``<name>_pb2.pyi`` and ``<name>_pb2_grpc.pyi``: type stubs from mypy-protobuf's
  ``protoc-gen-mypy`` / ``protoc-gen-mypy_grpc`` plugins. Unlike protoc's own ``--pyi_out`` they
  pass ``mypy --strict``, type the gRPC stubs and servicers (sync and ``grpc.aio``), and carry the
  ``.proto`` comments as docstrings. Servicer methods are concrete (not abstract), so a servicer
  that leaves an RPC out inherits grpc's UNIMPLEMENTED answer.

Modules import as ``from govtrust.v1 import common_pb2``. The default output directory is the
repository root; the staleness test passes a temporary directory and compares the results with
the committed files.

Usage::

    .venv/bin/python scripts/gen_proto.py            # regenerate into the repository
    .venv/bin/python scripts/gen_proto.py OUT_DIR    # generate into OUT_DIR instead
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

# grpc_tools ships no type information; imported by name so mypy needs no override for it.
protoc = importlib.import_module("grpc_tools.protoc")

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
PACKAGE_DIR = Path("govtrust") / "v1"
INIT_DOCSTRING = '"""Generated gRPC stubs; regenerate with `make proto`."""\n'


def proto_files() -> list[Path]:
    """The contract's ``.proto`` files, relative to ``proto/``, in a stable order."""
    return sorted(p.relative_to(PROTO_ROOT) for p in (PROTO_ROOT / PACKAGE_DIR).glob("*.proto"))


def well_known_include() -> Path:
    """grpc_tools' bundled include directory holding ``google/protobuf/*.proto``."""
    return Path(str(resources.files("grpc_tools") / "_proto"))


def plugin(name: str) -> Path:
    """Path of a protoc plugin executable installed beside this interpreter (or on ``PATH``)."""
    beside = Path(sys.executable).parent / name
    if beside.is_file():
        return beside
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(
            f"protoc plugin {name!r} not found: install mypy-protobuf (requirements.lock) "
            "into the venv"
        )
    return Path(found)


def protoc_args(out_dir: Path) -> list[str]:
    """The ``protoc`` command line (argv[0] included) generating into ``out_dir``."""
    return [
        "grpc_tools.protoc",
        f"-I{PROTO_ROOT}",
        f"-I{well_known_include()}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--plugin=protoc-gen-mypy={plugin('protoc-gen-mypy')}",
        f"--mypy_out=quiet:{out_dir}",
        f"--plugin=protoc-gen-mypy_grpc={plugin('protoc-gen-mypy_grpc')}",
        f"--mypy_grpc_out=generate_concrete_servicer_stubs,quiet:{out_dir}",
        *(str(PROTO_ROOT / p) for p in proto_files()),
    ]


def generated_files(out_dir: Path) -> list[Path]:
    """The generated stub files present under ``<out_dir>/govtrust/v1/``, sorted."""
    package = out_dir / PACKAGE_DIR
    if not package.is_dir():
        return []
    return sorted(p for p in package.glob("*_pb2*") if p.suffix in {".py", ".pyi"})


def generate(out_dir: Path) -> list[Path]:
    """Generate the stubs into ``out_dir`` and return the generated files, sorted.

    protoc writes into a scratch directory first, so a failed run leaves ``out_dir`` untouched;
    on success, stubs left from ``.proto`` files that no longer exist are removed and the new
    ones moved in. Writes ``<out_dir>/govtrust/v1/__init__.py`` when it is missing. Raises
    ``RuntimeError`` when protoc fails (its diagnostics go to stderr).
    """
    if not proto_files():
        raise RuntimeError(f"no .proto files under {PROTO_ROOT / PACKAGE_DIR}")
    package = out_dir / PACKAGE_DIR
    package.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gen_proto-") as scratch:
        status = protoc.main(protoc_args(Path(scratch)))
        if status != 0:
            raise RuntimeError(f"protoc failed with exit status {status}")
        for stale in generated_files(out_dir):
            stale.unlink()
        for fresh in generated_files(Path(scratch)):
            shutil.copyfile(fresh, package / fresh.name)
    init = package / "__init__.py"
    if not init.exists():
        init.write_text(INIT_DOCSTRING, encoding="utf-8")
    return generated_files(out_dir)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "out_dir",
        nargs="?",
        type=Path,
        default=REPO_ROOT,
        help="directory to generate govtrust/v1/ into (default: the repository root)",
    )
    args = parser.parse_args(argv)
    try:
        files = generate(args.out_dir)
    except RuntimeError as exc:
        print(f"gen_proto: {exc}", file=sys.stderr)
        return 1
    print(f"gen_proto: generated {len(files)} files in {args.out_dir / PACKAGE_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
