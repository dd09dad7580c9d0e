"""Generate Python messages, .pyi stubs and gRPC stubs from protos/ into a directory.

Usage: python tools/gen.py OUT_DIR  (make gen uses gen/, make check-gen a scratch dir)
"""

import sys
from importlib import resources
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"


def main(out_dir: str) -> int:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    well_known = str(resources.files("grpc_tools") / "_proto")
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    code = protoc.main(
        [
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"-I{well_known}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            *sources,
        ]
    )
    if code != 0:
        return code
    # Packages need __init__.py so setuptools and mypy see them as regular packages.
    for directory in [out, *(d for d in out.rglob("*") if d.is_dir())]:
        if directory != out:
            (directory / "__init__.py").touch()
    (out / "energy" / "py.typed").touch()
    print(f"generated {len(sources)} protos into {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
