"""Run notebooks top to bottom in place, then export the package.

    python tools/execute.py notebooks/01_http_parser.ipynb [...]

Outputs are saved (nbval compares them); timing metadata is not recorded, so a committed
notebook holds nothing machine-specific. The kernel runs in this interpreter's environment.
"""
from __future__ import annotations

import sys
from pathlib import Path

# `python tools/execute.py` puts tools/ first on sys.path, where tools/html.py would shadow
# the standard library's `html` (which Jupyter's client imports): take tools/ off first.
TOOLS = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != TOOLS]

import nbformat  # noqa: E402
from nbclient import NotebookClient  # noqa: E402

sys.path.append(str(TOOLS))
import export  # noqa: E402


def execute(path: Path, timeout: int = 300) -> None:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            record_timing=False,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    nb.metadata.pop("widgets", None)
    nbformat.write(nb, path)
    print(f"executed {path}")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    # Export first, so a notebook that imports another stage's module sees its latest code.
    export.main([])
    for name in argv:
        execute(Path(name))
    return export.main([])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
