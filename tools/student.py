"""Write a student edition of one stage of the course.

In the notebooks, the code a student should write sits inside function bodies between two
lines, nbgrader's markers::

    def chunk_size(line: bytes) -> int:
        ### BEGIN SOLUTION
        ...the solution...
        ### END SOLUTION

For the chosen stage (the two-digit prefix of its notebooks), this tool copies the course into
a new directory, replaces every marked region of that stage's notebook(s) by::

        # YOUR CODE HERE
        raise NotImplementedError()

at the marker's indentation, clears that notebook's outputs (they could show the solution),
and re-exports the package there from the student notebooks (with the workspace's own
``tools/export.py``, run in this process), so the stage's module holds the stubs while every
other stage keeps its solution. The stage's grading tests
(``tests/test_NN_exercises.py``) then fail until the student writes the code back.

    python tools/student.py --list                      # stages and their exercise counts
    python tools/student.py --stage 01 --out DIR        # write the workspace
    python tools/student.py --stage 01 --out DIR --force   # replace the course files in DIR
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import re
import shutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")

# What a student workspace holds: the course, not its history or caches.
COURSE = ("notebooks", "tests", "tools", "lowserver", "benchmarks",
          "conftest.py", "pyproject.toml", "requirements.txt", "README.md", ".gitignore")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", ".pytest_cache",
                                ".hypothesis", "*.egg-info", "*.tmp")

# Anything that looks like a marker but is not exactly one is an error, not a silent leak.
_MARKER_LIKE = re.compile(r"^\s*#+\s*(BEGIN|END)\s*SOLUTION\b", re.IGNORECASE)


class StudentEditionError(Exception):
    """A course the tool refuses to turn into a student edition (the message says why)."""


@dataclass
class Region:
    """One marked solution region of a code cell (line numbers are 1-based, in the cell)."""
    where: str                  # "notebooks/01_x.ipynb, cell 21"
    begin: int                  # line of the BEGIN marker
    end: int                    # line of the END marker
    indent: str                 # the BEGIN marker's indentation
    lines: list[str] = field(default_factory=list)   # the solution lines between the markers
    function: str = ""          # the function whose body holds the region

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def stage_of(path: Path) -> str:
    return path.name[:2]


def stage_notebooks(stage: str, notebooks: Path = NOTEBOOKS) -> list[Path]:
    return sorted(notebooks.glob(f"{stage}_*.ipynb"))


def all_stages(notebooks: Path = NOTEBOOKS) -> dict[str, list[Path]]:
    stages: dict[str, list[Path]] = {}
    for path in sorted(notebooks.glob("[0-9][0-9]_*.ipynb")):
        stages.setdefault(stage_of(path), []).append(path)
    return stages


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(ROOT).as_posix()
    except ValueError:
        return path.as_posix()


def find_regions(source: str, where: str) -> list[Region]:
    """The marked regions of one code cell; unbalanced or malformed markers are errors."""
    regions: list[Region] = []
    current: Region | None = None
    for number, line in enumerate(source.splitlines(), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if current is not None:
                raise StudentEditionError(
                    f"{where}, line {number}: {BEGIN!r} inside the region opened at line "
                    f"{current.begin} (regions do not nest)")
            current = Region(where, number, 0, line[:len(line) - len(line.lstrip())])
        elif stripped == END:
            if current is None:
                raise StudentEditionError(f"{where}, line {number}: {END!r} without a {BEGIN!r}")
            current.end = number
            regions.append(current)
            current = None
        elif _MARKER_LIKE.match(line):
            raise StudentEditionError(
                f"{where}, line {number}: malformed marker {stripped!r} "
                f"(write exactly {BEGIN!r} or {END!r} on a line of its own)")
        elif current is not None:
            current.lines.append(line)
    if current is not None:
        raise StudentEditionError(
            f"{where}, line {current.begin}: {BEGIN!r} is never closed by {END!r}")
    return regions


def _parse(source: str) -> ast.Module | None:
    """The cell's syntax tree, or None for a cell that is not plain Python (magics)."""
    try:
        return compile(source, "<cell>", "exec",
                       ast.PyCF_ONLY_AST | ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)  # type: ignore[return-value]
    except SyntaxError:
        return None


def _function_bodies(tree: ast.Module) -> list[tuple[int, int, str]]:
    """(first line, last line, name) of every function body, innermost last."""
    return sorted(((node.body[0].lineno, node.end_lineno or node.body[-1].lineno, node.name)
                   for node in ast.walk(tree)
                   if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))),
                  key=lambda body: (body[0], -body[1]))


def strip_cell(source: str, where: str) -> tuple[str, list[Region]]:
    """The cell with each marked region replaced by the stub, and the regions removed."""
    regions = find_regions(source, where)
    if not regions:
        return source, regions
    lines = source.splitlines()
    out: list[str] = []
    raise_lines: list[tuple[Region, int]] = []
    cursor = 0
    for region in regions:
        out.extend(lines[cursor:region.begin - 1])
        out.append(region.indent + STUB[0])
        out.append(region.indent + STUB[1])
        raise_lines.append((region, len(out)))
        cursor = region.end
    out.extend(lines[cursor:])
    student = "\n".join(out) + ("\n" if source.endswith("\n") else "")
    if _parse(source) is not None:
        # The stub must leave valid Python whose `raise` sits in a function body, or the
        # student's module would not even import.
        tree = _parse(student)
        if tree is None:
            raise StudentEditionError(
                f"{where}: replacing the marked regions by the stub breaks the syntax; a region "
                "must be a whole block of statements of a function body")
        bodies = _function_bodies(tree)
        for region, line in raise_lines:
            enclosing = [name for first, last, name in bodies if first <= line <= last]
            if not enclosing:
                raise StudentEditionError(
                    f"{where}, line {region.begin}: the marked region is not inside a function "
                    "body (its stub would raise when the module is imported)")
            region.function = enclosing[-1]
    return student, regions


def notebook_regions(path: Path) -> list[Region]:
    """Every marked region of a notebook's code cells (markdown may mention the markers).

    Each region is checked the way the student edition will use it: balanced markers, and a
    stub that leaves valid Python inside a function body.
    """
    nb = nbformat.read(path, as_version=4)
    regions: list[Region] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            regions += strip_cell(cell.source, f"{_relative(path)}, cell {index}")[1]
    return regions


def make_student_notebook(path: Path, shown_as: str | None = None) -> list[Region]:
    """Rewrite the notebook at `path` in place as its student edition; return the regions."""
    nb = nbformat.read(path, as_version=4)
    name = shown_as or _relative(path)
    regions: list[Region] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        cell.source, found = strip_cell(cell.source, f"{name}, cell {index}")
        regions += found
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
    nbformat.write(nb, path)
    return regions


def _check_destination(out: Path, force: bool) -> None:
    out = out.resolve()
    if out == ROOT:
        raise StudentEditionError("the workspace cannot be the course itself")
    for name in COURSE:
        if out.is_relative_to(ROOT / name):
            raise StudentEditionError(f"the workspace cannot be inside the course's {name}")
    if out.exists() and not out.is_dir():
        raise StudentEditionError(f"{out} exists and is not a directory")
    if out.exists() and any(out.iterdir()) and not force:
        raise StudentEditionError(
            f"{out} exists and is not empty: choose another directory, or pass --force to "
            "replace the course files in it (everything else in it is left alone)")


def copy_course(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name in COURSE:
        source, target = ROOT / name, out / name
        if not source.exists():
            continue
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        if source.is_dir():
            shutil.copytree(source, target, ignore=IGNORE)
        else:
            shutil.copy2(source, target)


def export_workspace(out: Path) -> tuple[int, str]:
    """Run the workspace's own exporter, ``out/tools/export.py``, as ``python tools/export.py``
    there would (its ROOT is `out`), but in this process: no second interpreter, and nbformat
    (slow to import) is already loaded. Return its exit code and everything it printed."""
    name = "_student_workspace_export"
    printed = io.StringIO()
    dont_write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            spec = importlib.util.spec_from_file_location(name, out / "tools" / "export.py")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module           # as for any module (dataclasses look there)
            spec.loader.exec_module(module)
            code = module.main([])
    except SystemExit as exit_:                  # what sys.exit(...) in it would have meant
        code = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
        if isinstance(exit_.code, str):
            printed.write(exit_.code + "\n")
    except Exception:                            # the exporter's crash is the tool's error
        printed.write(traceback.format_exc())
        code = 1
    finally:
        sys.modules.pop(name, None)
        sys.dont_write_bytecode = dont_write_bytecode
    return code, printed.getvalue()


def write_workspace(stage: str, out: Path, force: bool = False) -> list[Region]:
    """Write the student edition of `stage` into `out`; return the regions it removed."""
    notebooks = stage_notebooks(stage)
    if not notebooks:
        known = ", ".join(all_stages()) or "none"
        raise StudentEditionError(f"no notebook for stage {stage} (stages: {known})")
    regions = [region for path in notebooks for region in notebook_regions(path)]
    if not regions:
        names = ", ".join(_relative(p) for p in notebooks)
        raise StudentEditionError(
            f"stage {stage} has no exercises: no {BEGIN!r} ... {END!r} region in {names}")
    _check_destination(out, force)
    copy_course(out)
    regions = []
    for path in notebooks:
        regions += make_student_notebook(out / "notebooks" / path.name, shown_as=_relative(path))
    code, printed = export_workspace(out)
    if code != 0:
        raise StudentEditionError(f"exporting the student package in {out} failed:\n{printed}")
    # The stage's modules are regenerated from the student notebooks, so no region survives;
    # check it rather than trust it.
    for path in (out / "lowserver").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        for region in regions:
            if region.text.strip() and region.text in text:
                raise StudentEditionError(
                    f"{path}: still holds the solution of {region.where}, line {region.begin}")
    return regions


def list_stages() -> list[str]:
    rows = []
    for stage, paths in all_stages().items():
        count = sum(len(notebook_regions(path)) for path in paths)
        grader = ROOT / "tests" / f"test_{stage}_exercises.py"
        graded = f"graded by tests/{grader.name}" if grader.exists() else "no grading tests"
        names = ", ".join(path.name for path in paths)
        rows.append(f"{stage}  {count:2d} exercise{'s' if count != 1 else ' '}  {names}"
                    + (f"  ({graded})" if count else ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="print the stages and their exercise counts")
    parser.add_argument("--stage", help="the stage to hand out: its two-digit prefix, e.g. 01")
    parser.add_argument("--out", type=Path, help="the directory to write the workspace into")
    parser.add_argument("--force", action="store_true",
                        help="write into a non-empty directory, replacing the course files there")
    args = parser.parse_args(argv)
    try:
        if args.list:
            for row in list_stages():
                print(row)
            return 0
        if args.stage is None or args.out is None:
            parser.error("--stage and --out are required (or --list)")
        if not re.fullmatch(r"\d{1,2}", args.stage):
            parser.error(f"--stage takes a stage number such as 01, not {args.stage!r}")
        stage = f"{int(args.stage):02d}"
        regions = write_workspace(stage, args.out, args.force)
    except StudentEditionError as error:
        print(f"student.py: error: {error}", file=sys.stderr)
        return 1
    grader = f"tests/test_{stage}_exercises.py"
    print(f"wrote the student edition of stage {stage} to {args.out}: "
          f"{len(regions)} exercise{'s' if len(regions) != 1 else ''} to write")
    for region in regions:
        print(f"  {region.function or '?'}()  ({region.where}, line {region.begin})")
    print(f"then, in {args.out}: export the notebook with `python tools/export.py` "
          f"(or `python tools/execute.py NOTEBOOK`), and grade with `python -m pytest {grader}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
