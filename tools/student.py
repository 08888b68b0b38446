"""Student editions of the course: write one for any set of stages, and grade it.

In the notebooks, the code a student should write sits inside function bodies between two
lines, nbgrader's markers::

    def parse_chunk_size(line: bytes) -> int:
        ### BEGIN SOLUTION
        ...the solution...
        ### END SOLUTION

Each marked region is one exercise, numbered in reading order within its stage (the two-digit
prefix of its notebooks): exercise 01.2 is the second region of stage 01, graded by the tests
``test_exercise_2_*`` of ``tests/test_01_exercises.py`` (one point, unless the test carries
``@pytest.mark.points(N)``).

``make`` copies the course into a new directory (an *edition*) and, for the chosen stages,
replaces every marked region by::

        # YOUR CODE HERE
        raise NotImplementedError("exercise 01.1: parse_chunk_size — write it in notebooks/01_http_parser.ipynb")

clears those notebooks' outputs (they could show the solution) and re-exports the package there,
so their modules hold the stubs while every other stage keeps its solution. The edition also
gets ``student_edition.py`` (which exercises are stripped; an IPython extension that every
notebook of the edition loads in its first cell, so that a cell needing an exercise not
written yet prints ``skipped: needs exercise 01.1 (parse_chunk_size)`` and the notebook runs
on; a pytest plugin that turns a test failing on such a stub into a skip naming it, except the
chosen stages' grading tests, which fail), ``STUDENT.md`` (the commands to run there) and a
``.venv`` made in a second: no install, a ``.pth`` puts the edition first on the path and then
the site-packages of the interpreter running this tool, so the student's ``lowserver`` is the
one imported, by the tests and by the notebooks' kernel alike.

    python tools/student.py list                                  # stages and their exercises
    python tools/student.py make --stage 01 --stage 04 --out DIR  # an edition of two stages
    python tools/student.py make --all --out DIR                  # of every stage with exercises
    python tools/student.py grade DIR [--json]                    # the grading report of DIR

The former spelling still works: ``--list``, and ``--stage 01 --out DIR`` (= ``make``).
Exit codes: 0 done (``grade``: whatever the score), 1 the course cannot be turned into an
edition (the message says why), 2 a usage error (an unknown stage, a directory that is not an
edition, ...).
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import importlib.util
import io
import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import tempfile
import traceback
import venv
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
STUB = ("# YOUR CODE HERE", "raise NotImplementedError()")

# What an edition holds: the course, not its history, caches or the teacher's tool tests
# (they build editions and HTML from the solved course, and would fail on the student's).
COURSE = ("notebooks", "tests", "tools", "lowserver", "benchmarks",
          "conftest.py", "pyproject.toml", "requirements.txt", "README.md", ".gitignore")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", ".pytest_cache",
                                ".hypothesis", "*.egg-info", "*.tmp", "test_student_*.py",
                                "test_html_course.py")
RUNTIME_MODULE = "student_edition"           # <edition>/student_edition.py
GUIDE = "STUDENT.md"
PTH = "_student_edition.pth"
FIRST_CELL = (
    "# Student edition: a cell that needs an exercise you have not written yet prints\n"
    "# \"skipped: needs exercise NN.N (name)\" instead of failing, so the notebook runs to its\n"
    "# end. Keep this cell first.\n"
    f"%load_ext {RUNTIME_MODULE}")
EDITION_TAG = "student-edition"
IGNORE_OUTPUT_TAG = "nbval-ignore-output"

# Anything that looks like a marker but is not exactly one is an error, not a silent leak.
_MARKER_LIKE = re.compile(r"^\s*#+\s*(BEGIN|END)\s*SOLUTION\b", re.IGNORECASE)


class StudentEditionError(Exception):
    """A course the tool refuses to turn into a student edition (the message says why)."""


class UsageError(Exception):
    """A request the tool cannot follow (an unknown stage, not an edition): exit code 2."""


@dataclass
class Region:
    """One marked solution region of a code cell (line numbers are 1-based, in the cell)."""
    where: str                  # "notebooks/01_x.ipynb, cell 21"
    begin: int                  # line of the BEGIN marker
    end: int                    # line of the END marker
    indent: str                 # the BEGIN marker's indentation
    lines: list[str] = field(default_factory=list)   # the solution lines between the markers
    function: str = ""          # the (qualified) function whose body holds the region

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@dataclass
class Exercise:
    """A region as an exercise: stage 01, number 2 is ``exercise 01.2``."""
    stage: str
    number: int
    notebook: str               # "notebooks/01_http_parser.ipynb"
    region: Region

    @property
    def id(self) -> str:
        return f"{self.stage}.{self.number}"

    @property
    def name(self) -> str:
        return self.region.function or "?"

    @property
    def message(self) -> str:
        """What the stub raises: the exercise and where to write it."""
        return f"exercise {self.id}: {self.name} — write it in {self.notebook}"

    @property
    def grader(self) -> str:
        return f"tests/test_{self.stage}_exercises.py"

    @property
    def test_prefix(self) -> str:
        return f"test_exercise_{self.number}"


def stage_of(path: Path) -> str:
    return path.name[:2]


def stage_notebooks(stage: str, notebooks: Path = NOTEBOOKS) -> list[Path]:
    return sorted(notebooks.glob(f"{stage}[_a-z]*.ipynb"))


def all_stages(notebooks: Path = NOTEBOOKS) -> dict[str, list[Path]]:
    """{stage: its notebooks}: 05a_x and 05b_y both belong to stage 05."""
    stages: dict[str, list[Path]] = {}
    for path in sorted(notebooks.glob("[0-9][0-9]*.ipynb")):
        if re.match(r"\d\d[a-z]?_", path.name):
            stages.setdefault(stage_of(path), []).append(path)
    return stages


def _relative(path: Path, root: Path = ROOT) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
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
    """(first line, last line, qualified name) of every function body, innermost last."""
    bodies = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                name = prefix + child.name
                bodies.append((child.body[0].lineno,
                               child.end_lineno or child.body[-1].lineno, name))
                visit(child, name + ".<locals>.")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:
                visit(child, prefix)

    visit(tree, "")
    return sorted(bodies, key=lambda body: (body[0], -body[1]))


def _stub(message: str | None) -> tuple[str, str]:
    return STUB if message is None else (STUB[0], f"raise NotImplementedError({message!r})")


def strip_cell(source: str, where: str,
               messages: list[str] | None = None) -> tuple[str, list[Region]]:
    """The cell with each marked region replaced by the stub, and the regions removed.

    `messages`, one per region, are what each stub's NotImplementedError says (none: a bare
    ``raise NotImplementedError()``)."""
    regions = find_regions(source, where)
    if not regions:
        return source, regions
    if messages is not None and len(messages) != len(regions):
        raise ValueError(f"{where}: {len(regions)} regions, {len(messages)} messages")
    lines = source.splitlines()
    out: list[str] = []
    raise_lines: list[tuple[Region, int]] = []
    cursor = 0
    for index, region in enumerate(regions):
        stub = _stub(None if messages is None else messages[index])
        out.extend(lines[cursor:region.begin - 1])
        out.append(region.indent + stub[0])
        out.append(region.indent + stub[1])
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


def stage_exercises(stage: str, notebooks: Path = NOTEBOOKS) -> list[Exercise]:
    """The exercises of a stage, numbered in reading order (notebook, then cell, then line)."""
    exercises = []
    for path in stage_notebooks(stage, notebooks):
        for region in notebook_regions(path):
            exercises.append(Exercise(stage, len(exercises) + 1, _relative(path), region))
    return exercises


def course_exercises(notebooks: Path = NOTEBOOKS) -> dict[str, list[Exercise]]:
    """{stage: its exercises} for every stage, those without exercises included."""
    return {stage: stage_exercises(stage, notebooks) for stage in all_stages(notebooks)}


def make_student_notebook(path: Path, shown_as: str | None = None,
                          exercises: list[Exercise] | None = None) -> list[Region]:
    """Rewrite the notebook at `path` in place as its student edition; return the regions.

    With `exercises` (this notebook's, in order), each stub raises its exercise's message and
    every code cell is tagged so that nbval does not compare its (cleared) outputs."""
    nb = nbformat.read(path, as_version=4)
    name = shown_as or _relative(path)
    pending = list(exercises) if exercises is not None else None
    regions: list[Region] = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        where = f"{name}, cell {index}"
        messages = None
        if pending is not None:
            count = len(find_regions(cell.source, where))
            messages = [exercise.message for exercise in pending[:count]]
            del pending[:count]
        cell.source, found = strip_cell(cell.source, where, messages)
        regions += found
        cell.outputs = []
        cell.execution_count = None
        cell.metadata.pop("execution", None)
        if exercises is not None:
            _tag(cell, IGNORE_OUTPUT_TAG)
    nbformat.write(nb, path)
    return regions


def _tag(cell, tag: str) -> None:
    tags = cell.metadata.setdefault("tags", [])
    if tag not in tags:
        tags.append(tag)


def add_first_cell(path: Path) -> None:
    """Make the notebook load the edition's IPython extension in a first cell of its own."""
    nb = nbformat.read(path, as_version=4)
    cell = nbformat.v4.new_code_cell(FIRST_CELL)
    cell.metadata["tags"] = [EDITION_TAG, IGNORE_OUTPUT_TAG]
    if "id" in nb.cells[0] if nb.cells else nb.nbformat_minor >= 5:
        cell["id"] = EDITION_TAG                 # a fixed id: the same edition every time
    else:
        cell.pop("id", None)
    nb.cells.insert(0, cell)
    nbformat.write(nb, path)


def _check_destination(out: Path, force: bool) -> None:
    out = out.resolve()
    if out == ROOT:
        raise StudentEditionError("the edition cannot be the course itself")
    for name in COURSE:
        if out.is_relative_to(ROOT / name):
            raise StudentEditionError(f"the edition cannot be inside the course's {name}")
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
    """Run the edition's own exporter, ``out/tools/export.py``, as ``python tools/export.py``
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


# --- the edition's environment --------------------------------------------------------------

def make_environment(out: Path) -> Path:
    """``out/.venv`` in a second: a venv without pip whose ``.pth`` puts the edition first on
    the path, then this interpreter's site-packages (their own ``.pth`` files are not run, so
    the course's editable ``lowserver`` is not installed there). Returns its python."""
    env = out / ".venv"
    if env.exists():
        shutil.rmtree(env)
    venv.EnvBuilder(with_pip=False, symlinks=os.name != "nt").create(env)
    python = env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    purelib = Path(subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    reused = [path for path in dict.fromkeys(site.getsitepackages()
                                             + [sysconfig.get_paths()["purelib"]])
              if Path(path).is_dir() and Path(path).resolve() != purelib.resolve()]
    boot = (f"import os; os.environ.get('STUDENT_EDITION_TRACE') and "
            f"__import__({RUNTIME_MODULE!r})")    # a test's subprocess notes the stubs it runs
    (purelib / PTH).write_text("\n".join([str(out.resolve()), *reused, boot]) + "\n",
                               encoding="utf-8")
    # The notebooks' kernel: this environment's python (Jupyter prefers a venv's own specs).
    kernel = env / "share" / "jupyter" / "kernels" / "python3"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (lowserver student edition)", "language": "python",
        "metadata": {"debugger": True}}, indent=1) + "\n", encoding="utf-8")
    return python


# --- what the edition runs: its IPython extension and pytest plugin -------------------------

RUNTIME = r'''
import ast as _ast
import builtins as _builtins
import os as _os
import re as _re
import time as _time

_ID = _re.compile(r"exercise (\d\d\.\d+): ")

# -- which stripped exercises ran: NotImplementedError, as this edition's code sees it, notes
# the exercise its message names (here in CALLED; in a file too, for processes a test starts:
# STUDENT_EDITION_TRACE, set by the pytest plugin, makes the edition's .venv install it).
_ORIGINAL = getattr(_builtins.NotImplementedError, "_original", _builtins.NotImplementedError)
CALLED = []
_ON_CALL = []          # what to do when a stub raises (the pytest plugin arms its watchdog)


class _NoteTheExercise(_ORIGINAL):
    _original = _ORIGINAL

    def __init__(self, *args):
        super().__init__(*args)
        found = _ID.match(args[0]) if args and isinstance(args[0], str) else None
        if found and found.group(1) in EXERCISES:
            CALLED.append((found.group(1), _time.monotonic()))
            if _ON_CALL:
                _ON_CALL[0]()
            trace = _os.environ.get("STUDENT_EDITION_TRACE")
            if trace:
                with open(trace, "a", encoding="utf-8") as handle:
                    handle.write(found.group(1) + "\n")


_NoteTheExercise.__name__ = _NoteTheExercise.__qualname__ = "NotImplementedError"
_NoteTheExercise.__module__ = "builtins"


def install():
    """Make NotImplementedError note the stripped exercises it is raised for."""
    _builtins.NotImplementedError = _NoteTheExercise


if _os.environ.get("STUDENT_EDITION_TRACE"):
    install()


def stripped_in(error):
    """The id of the stripped exercise whose stub raised somewhere in `error` (its causes,
    contexts and groups included), or None."""
    seen, todo = set(), [error]
    while todo:
        error = todo.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        if isinstance(error, NotImplementedError):
            found = _ID.match(str(error))
            if found and found.group(1) in EXERCISES:
                return found.group(1)
        todo += [error.__cause__, error.__context__, *getattr(error, "exceptions", ())]
    return None


def mentioned_in(text):
    """The id of a stripped exercise whose stub's message (or skip note) is in `text`."""
    for exercise, (name, notebook) in EXERCISES.items():
        if (f"exercise {exercise}: {name}" in text
                or f"needs exercise {exercise} ({name})" in text):
            return exercise
    return None


def needs(exercise):
    return f"needs exercise {exercise} ({EXERCISES[exercise][0]})"


# -- IPython: a cell that needs a stripped exercise says so and is skipped --------------------

_MISSING = {}          # names a skipped cell would have defined -> the exercise it needed
_STASH = []


def _assigned(body):
    names = set()
    for node in body:
        for sub in _ast.walk(node) if not isinstance(node, (_ast.FunctionDef,
                                                            _ast.AsyncFunctionDef,
                                                            _ast.ClassDef)) else [node]:
            if isinstance(sub, (_ast.FunctionDef, _ast.AsyncFunctionDef, _ast.ClassDef)):
                names.add(sub.name)
            elif isinstance(sub, _ast.Name) and isinstance(sub.ctx, _ast.Store):
                names.add(sub.id)
            elif isinstance(sub, _ast.alias):
                names.add((sub.asname or sub.name).split(".")[0])
    return sorted(names)


def _keep(value):
    _STASH.append(value)


def _value():
    return _STASH.pop() if _STASH else None


GRACE = 5.0            # seconds a cell may go on after a stripped exercise raised in it
AFTER_SKIP = 15.0      # seconds an awaiting cell may take once an earlier cell was skipped
_CELL = {}
_SKIPPED = []          # the exercises earlier cells were skipped for (their cleanup did not run)


def _trace_size():
    trace = _os.environ.get("STUDENT_EDITION_TRACE")
    try:
        return _os.path.getsize(trace) if trace else 0
    except OSError:
        return 0


def _cell_called():
    """The stripped exercises raised since the cell began, here or in a process it started."""
    found = [exercise for exercise, _ in CALLED]
    trace = _os.environ.get("STUDENT_EDITION_TRACE")
    if trace and _os.path.exists(trace):
        offset = _CELL.get("offset", 0)
        with open(trace, encoding="utf-8") as handle:
            if _os.path.getsize(trace) >= offset:
                handle.seek(offset)
            found += handle.read().split()
    found = [exercise for exercise in found if exercise in EXERCISES]
    if found and "first" not in _CELL:
        _CELL["first"] = _time.monotonic()
    return found


def _begin():
    """At the start of each cell: forget the last cell's notes; while the cell awaits, check
    every second whether a stripped exercise raised more than GRACE seconds ago (a server
    whose parser is a stub never answers: the cell would wait for ever), and cancel it then."""
    _end()
    del CALLED[:]
    _CELL.clear()
    _CELL["offset"] = _trace_size()
    try:
        import asyncio
        task, loop = asyncio.current_task(), asyncio.get_running_loop()
    except RuntimeError:
        return
    if task is None:
        return

    started = _time.monotonic()

    def check():
        now, called = _time.monotonic(), _cell_called()
        if called and now - _CELL["first"] > GRACE:
            _CELL["cancelled"] = called[0]
        elif _SKIPPED and now - started > AFTER_SKIP:
            _CELL["cancelled"] = _SKIPPED[0]      # waiting on what a skipped cell left behind
        else:
            _CELL["timer"] = loop.call_later(1.0, check)
            return
        task.cancel()

    _CELL["timer"] = loop.call_later(1.0, check)


def _end():
    timer = _CELL.pop("timer", None)
    if timer is not None:
        timer.cancel()


def _skip(error, names, namespace):
    _end()
    exercise = stripped_in(error)
    if exercise is None and isinstance(error, NameError):
        exercise = _MISSING.get(getattr(error, "name", None))
    if exercise is None and _CELL.get("cancelled"):
        import asyncio
        asyncio.current_task().uncancel()
        exercise = _CELL.pop("cancelled")
    elif exercise is None and not isinstance(error, KeyboardInterrupt) and _cell_called():
        exercise = _cell_called()[0]
    if exercise is None:
        raise error
    for name in names:
        if name not in namespace:
            _MISSING.setdefault(name, exercise)
    _SKIPPED.append(exercise)
    print(f"skipped: {needs(exercise)}")


class _Guard(_ast.NodeTransformer):
    """Run a cell inside ``try: ... except BaseException: _skip(...)``, its last expression
    kept aside and shown after, so that its output is the same when nothing is skipped."""

    def visit_Module(self, module):
        body = list(module.body)
        head = []
        if (body and isinstance(body[0], _ast.Expr) and isinstance(body[0].value, _ast.Constant)
                and isinstance(body[0].value.value, str) and len(body) > 1):
            head.append(body.pop(0))                   # a docstring, then __future__ imports
        while body and isinstance(body[0], _ast.ImportFrom) and body[0].module == "__future__":
            head.append(body.pop(0))
        if not body:
            return module
        last = body[-1]
        show = isinstance(last, _ast.Expr)
        if show:
            body[-1] = _ast.Expr(_ast.Call(_ast.Name("_student_edition_keep", _ast.Load()),
                                           [last.value], []))
        handler = _ast.ExceptHandler(
            _ast.Name("BaseException", _ast.Load()), "_student_edition_error",
            [_ast.Expr(_ast.Call(_ast.Name("_student_edition_skip", _ast.Load()), [
                _ast.Name("_student_edition_error", _ast.Load()),
                _ast.Constant(tuple(_assigned(body))),
                _ast.Call(_ast.Name("globals", _ast.Load()), [], [])], []))])
        begin = _ast.Expr(_ast.Call(_ast.Name("_student_edition_begin", _ast.Load()), [], []))
        end = _ast.Expr(_ast.Call(_ast.Name("_student_edition_end", _ast.Load()), [], []))
        new = head + [_ast.Try([begin, *body, end], [handler], [], [])]
        if show:
            new.append(_ast.Expr(_ast.Call(_ast.Name("_student_edition_value", _ast.Load()),
                                           [], [])))
        module.body = new
        return _ast.fix_missing_locations(module)


def load_ipython_extension(ip):
    if any(isinstance(t, _Guard) for t in ip.ast_transformers):
        return
    install()
    if not _os.environ.get("STUDENT_EDITION_TRACE"):     # the processes a cell starts note too
        import atexit
        import tempfile
        handle, trace = tempfile.mkstemp(prefix="student-edition-", suffix=".txt")
        _os.close(handle)
        _os.environ["STUDENT_EDITION_TRACE"] = trace
        atexit.register(lambda: _os.path.exists(trace) and _os.remove(trace))
    ip.user_ns.update(_student_edition_keep=_keep, _student_edition_value=_value,
                      _student_edition_skip=_skip, _student_edition_begin=_begin,
                      _student_edition_end=_end)
    ip.ast_transformers.append(_Guard())


# -- pytest: a test that fails on a stripped exercise is skipped, except the grading tests ----

import json as _json
import os as _os

import pytest as _pytest

_REPORT = _os.environ.get("STUDENT_EDITION_REPORT")
_RESULTS = {}


_TRACES = {}


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): the points an exercise's test is worth")
    install()
    import tempfile
    _TRACES["dir"] = tempfile.mkdtemp(prefix="student-edition-")


def pytest_unconfigure(config):
    import shutil
    shutil.rmtree(_TRACES.pop("dir", ""), ignore_errors=True)


TEST_GRACE = 3.0       # seconds a test may go on after a stripped exercise raised in it


def _cancel_all(loop):
    import asyncio
    for task in asyncio.all_tasks(loop):
        task.cancel()


def _alarm(signum, frame):
    """Every second once a stub raised in a test's call: past TEST_GRACE, cancel what the test
    awaits (a server whose parser is a stub never answers); the test fails, and is skipped."""
    if _IN_CALL and CALLED and _time.monotonic() - CALLED[0][1] > TEST_GRACE:
        import asyncio
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return                                   # not awaiting: nothing to cancel
        loop.call_soon_threadsafe(_cancel_all, loop)


def _arm():
    import signal
    import threading
    if _ARMED or not _IN_CALL or not hasattr(signal, "setitimer"):
        return
    _ARMED.append(True)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGALRM, _alarm)
        signal.setitimer(signal.ITIMER_REAL, TEST_GRACE + 0.5, 1.0)   # again every second
    else:
        _ARMED.append("from a thread")                            # cannot install: leave it


_ARMED = []
_IN_CALL = []


def _disarm():
    if _ARMED:
        import signal
        if _ARMED == [True]:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
        del _ARMED[:]


@_pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """The watchdog watches the test's call only (never pytest's own work around it)."""
    _IN_CALL.append(True)
    try:
        yield
    finally:
        del _IN_CALL[:]
        _disarm()


def pytest_runtest_logstart(nodeid, location):
    del CALLED[:]
    _ON_CALL[:] = [_arm]
    trace = _os.path.join(_TRACES["dir"], f"trace-{_os.getpid()}.txt")
    open(trace, "w").close()
    _os.environ["STUDENT_EDITION_TRACE"] = trace


def _called():
    """The stripped exercises raised during this test, by this process or one it started."""
    found = [exercise for exercise, _ in CALLED]
    trace = _os.environ.get("STUDENT_EDITION_TRACE")
    if trace and _os.path.exists(trace):
        with open(trace, encoding="utf-8") as handle:
            found += handle.read().split()
    return [exercise for exercise in found if exercise in EXERCISES]


def _graded(item):
    path = getattr(item, "path", None)
    return path is not None and path.name in GRADERS


def _text(report):
    parts = [getattr(report, "longreprtext", "") or ""]
    parts += [content for _, content in getattr(report, "sections", [])]
    return "\n".join(parts)


@_pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item, call):
    """A test (not a grading test) that failed on a stripped exercise, or after one raised in
    it, is reported skipped at once: pytest does not even format its traceback."""
    if call.excinfo is None or _graded(item) or _REPORT is not None \
            or call.excinfo.errisinstance(_pytest.skip.Exception):
        return None
    called = _called()
    exercise = stripped_in(call.excinfo.value) or (called[0] if called else None)
    if exercise is None:
        return None
    return _pytest.TestReport(
        item.nodeid, item.location, {name: 1 for name in item.keywords}, "skipped",
        (str(item.path), (item.location[1] or 0) + 1, f"Skipped: {needs(exercise)}"),
        call.when, [], call.duration, call.start, call.stop)


@_pytest.hookimpl(hookwrapper=True, specname="pytest_runtest_makereport")
def pytest_runtest_makereport_student_edition(item, call):
    outcome = yield
    report = outcome.get_result()
    if _REPORT is not None:
        marker = item.get_closest_marker("points")
        entry = _RESULTS.setdefault(item.nodeid, {
            "points": int(marker.args[0]) if marker and marker.args else 1,
            "passed": True, "failure": None})
        if report.failed:
            entry["passed"] = False
            if entry["failure"] is None and call.excinfo is not None:
                entry["failure"] = call.excinfo.exconly().splitlines()[0][:300]
        elif report.skipped and report.when == "call":
            entry["passed"] = False
            entry["failure"] = "skipped"
    if not report.failed or _graded(item):
        return
    called = _called()
    exercise = ((stripped_in(call.excinfo.value) if call.excinfo is not None else None)
                or mentioned_in(_text(report)) or (called[0] if called else None))
    if exercise is not None:
        report.outcome = "skipped"
        report.longrepr = (str(item.path), (item.location[1] or 0) + 1,
                           f"Skipped: {needs(exercise)}")


def pytest_collectreport(report):
    if _REPORT is not None and report.failed:
        _RESULTS[report.nodeid] = {"points": 1, "passed": False,
                                   "failure": "collection failed: " + str(report.longrepr)
                                   .strip().splitlines()[-1][:300]}


def pytest_sessionfinish(session):
    if _REPORT is not None:
        with open(_REPORT, "w", encoding="utf-8") as handle:
            _json.dump(_RESULTS, handle, indent=1, sort_keys=True)
'''


def runtime_source(stages: list[str], exercises: list[Exercise]) -> str:
    """The edition's ``student_edition.py``: what it strips, then RUNTIME."""
    table = {exercise.id: (exercise.name, exercise.notebook) for exercise in exercises}
    graders = sorted({Path(exercise.grader).name for exercise in exercises})
    return (f'"""This directory is a student edition of the lowserver course, written by\n'
            f'``python tools/student.py make``: the exercises below are yours to write (see\n'
            f'{GUIDE}). Notebooks load this module as an IPython extension (their first cell),\n'
            f'pytest as a plugin (conftest.py).\n"""\n'
            f"STAGES = {stages!r}\n"
            f"EXERCISES = {json.dumps(table, indent=1, ensure_ascii=False)}  # id: (name, notebook)\n"
            f"GRADERS = {graders!r}\n" + RUNTIME)


def guide(stages: list[str], exercises: list[Exercise]) -> str:
    graders = " ".join(sorted({exercise.grader for exercise in exercises}))
    rows = "\n".join(f"| {e.id} | `{e.name}` | `{e.notebook}` | `{e.grader}::{e.test_prefix}_*` |"
                     for e in exercises)
    first = exercises[0]
    return f"""# Student edition: stage{'s' if len(stages) > 1 else ''} {', '.join(stages)}

Written by `python tools/student.py make`. In the notebooks of these stages, the body of each
function below is yours to write: until you do, it raises `NotImplementedError` naming the
exercise, the notebooks say `skipped: needs exercise ...` where they need it, and the tests that
need it are skipped with that reason. Every other stage keeps its solution.

| exercise | write | in | graded by |
|---|---|---|---|
{rows}

Run these here, in this directory (`.venv` uses the course's installed packages and imports
this directory's `lowserver`):

```sh
.venv/bin/python -m jupyter lab {first.notebook}    # write the function bodies
.venv/bin/python tools/export.py                        # export the notebooks into lowserver/
.venv/bin/python -m pytest -p no:nbval -o addopts= {graders}   # grade
.venv/bin/python tools/student.py grade .               # the grading report (points)
.venv/bin/python -m pytest -n 2 --dist loadfile         # everything (tests and notebooks)
```

`.venv/bin/python tools/execute.py {first.notebook}` runs a notebook top to bottom, saves its
outputs and exports it. `.venv/bin/python -m pytest {first.grader} -k {first.test_prefix}`
grades one exercise. If `.venv` stops working (the course's environment moved), make a
standalone one: `python3.11 -m venv --clear .venv && .venv/bin/pip install -r requirements.txt -e .`
"""


@dataclass
class Edition:
    out: Path
    stages: list[str]
    exercises: list[Exercise]
    python: Path


def resolve_stages(requested: list[str], every: bool) -> list[str]:
    """The stages to strip, validated: usage errors name the stages that have exercises."""
    exercises = course_exercises()
    valid = [stage for stage, found in exercises.items() if found]
    listing = ", ".join(valid) or "none"
    if every:
        if not valid:
            raise UsageError("no stage has exercises")
        return valid
    if not requested:
        raise UsageError(f"choose --stage NN (one or more) or --all; stages: {listing}")
    stages = []
    for stage in requested:
        if not re.fullmatch(r"\d{1,2}", stage):
            raise UsageError(f"--stage takes a stage number such as 01, not {stage!r}; "
                             f"stages: {listing}")
        stage = f"{int(stage):02d}"
        if stage not in exercises:
            raise UsageError(f"no notebook for stage {stage} (stages: {listing})")
        if not exercises[stage]:
            names = ", ".join(_relative(p) for p in stage_notebooks(stage))
            raise UsageError(f"stage {stage} has no exercises: no {BEGIN!r} ... {END!r} region "
                             f"in {names} (stages: {listing})")
        if stage not in stages:
            stages.append(stage)
    return sorted(stages)


def write_edition(stages: list[str], out: Path, force: bool = False) -> Edition:
    """Write the student edition of `stages` into `out`."""
    out = Path(out)
    exercises = [exercise for stage in stages for exercise in stage_exercises(stage)]
    if not exercises:
        raise UsageError(f"stages {', '.join(stages)} have no exercises")
    _check_destination(out, force)
    copy_course(out)
    stripped = set()
    for stage in stages:
        for path in stage_notebooks(stage):
            own = [exercise for exercise in exercises if exercise.notebook == _relative(path)]
            make_student_notebook(out / "notebooks" / path.name, _relative(path), own)
            stripped.add(path.name)
    for path in sorted((out / "notebooks").glob("*.ipynb")):
        add_first_cell(path)
    (out / f"{RUNTIME_MODULE}.py").write_text(runtime_source(stages, exercises), encoding="utf-8")
    conftest = out / "conftest.py"
    text = conftest.read_text(encoding="utf-8") if conftest.exists() else ""
    conftest.write_text(text + f"\n\n# Student edition: skip what needs an exercise not written yet "
                        f"(see {RUNTIME_MODULE}.py).\npytest_plugins = [{RUNTIME_MODULE!r}]\n",
                        encoding="utf-8")
    (out / GUIDE).write_text(guide(stages, exercises), encoding="utf-8")
    code, printed = export_workspace(out)
    if code != 0:
        raise StudentEditionError(f"exporting the student package in {out} failed:\n{printed}")
    # The stages' modules are regenerated from the student notebooks, so no region survives;
    # check it rather than trust it.
    for path in sorted((out / "lowserver").rglob("*.py")) + sorted((out / "notebooks").glob("*.ipynb")):
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":
            text = "\n".join(cell.source for cell in nbformat.reads(text, as_version=4).cells
                             if cell.cell_type == "code")
        for exercise in exercises:
            region = exercise.region
            if region.text.strip() and region.text in text:
                raise StudentEditionError(
                    f"{path}: still holds the solution of {region.where}, line {region.begin}")
    python = make_environment(out)
    return Edition(out, stages, exercises, python)


def write_workspace(stage: str, out: Path, force: bool = False) -> list[Region]:
    """The edition of one stage (the former API); return the regions it removed."""
    return [exercise.region for exercise in write_edition([stage], out, force).exercises]


def list_stages() -> list[str]:
    rows = []
    for stage, exercises in course_exercises().items():
        count = len(exercises)
        grader = ROOT / "tests" / f"test_{stage}_exercises.py"
        graded = f"graded by tests/{grader.name}" if grader.exists() else "no grading tests"
        names = ", ".join(path.name for path in stage_notebooks(stage))
        rows.append(f"{stage}  {count:2d} exercise{'s' if count != 1 else ' '}  {names}"
                    + (f"  ({graded})" if count else ""))
        for exercise in exercises:
            rows.append(f"    {exercise.id}  {exercise.name}")
    return rows


# --- grading --------------------------------------------------------------------------------

def read_edition(directory: Path) -> tuple[list[str], dict[str, tuple[str, str]]]:
    """(stages, {exercise id: (name, notebook)}) of an edition; a UsageError if it is none."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: no such directory")
    runtime = directory / f"{RUNTIME_MODULE}.py"
    if not runtime.is_file():
        raise UsageError(f"{directory} is not a student edition (no {runtime.name}; "
                         "write one with `python tools/student.py make`)")
    tree = ast.parse(runtime.read_text(encoding="utf-8"))
    values = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id in ("STAGES", "EXERCISES")):
            values[node.targets[0].id] = ast.literal_eval(node.value)
    if set(values) != {"STAGES", "EXERCISES"}:
        raise UsageError(f"{runtime} does not say which exercises the edition strips")
    return list(values["STAGES"]), {key: tuple(value) for key, value in values["EXERCISES"].items()}


def _edition_python(directory: Path) -> tuple[str, dict[str, str]]:
    python = directory / ".venv" / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    if python.exists():
        return str(python), env
    path = os.pathsep.join(filter(None, [str(directory.resolve()), env.get("PYTHONPATH")]))
    return sys.executable, {**env, "PYTHONPATH": path}


def grade(directory: Path, timeout: float = 600) -> dict:
    """Run the edition's grading tests; return the report (see the module's docstring)."""
    directory = Path(directory)
    stages, exercises = read_edition(directory)
    graders = [f"tests/test_{stage}_exercises.py" for stage in stages]
    present = [grader for grader in graders if (directory / grader).is_file()]
    python, env = _edition_python(directory)
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "results.json"
        results: dict = {}
        if present:
            done = subprocess.run(
                [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:nbval",
                 "-o", "addopts=", *present], cwd=directory,
                env={**env, "STUDENT_EDITION_REPORT": str(report)},
                capture_output=True, text=True, timeout=timeout)
            if not report.exists():
                raise StudentEditionError("the grading tests did not run:\n"
                                          + done.stdout[-3000:] + done.stderr[-3000:])
            results = json.loads(report.read_text(encoding="utf-8"))
    rows = []
    for exercise_id, (name, _notebook) in sorted(
            exercises.items(), key=lambda item: (item[0].split(".")[0], int(item[0].split(".")[1]))):
        stage, number = exercise_id.split(".")
        grader = f"tests/test_{stage}_exercises.py"
        prefix = f"test_exercise_{number}"
        tests = [(nodeid, result) for nodeid, result in results.items()
                 if nodeid.startswith(grader + "::")
                 and re.fullmatch(rf"{prefix}(_\w*)?(\[.*\])?", nodeid.split("::")[-1])]
        broken = [result for nodeid, result in results.items()
                  if nodeid == grader and not result["passed"]]        # it did not collect
        max_points = max((result["points"] for _, result in tests), default=1)
        if tests:
            failures = [result["failure"] or "failed" for _, result in tests if not result["passed"]]
            passed = not failures
            failure = failures[0] if failures else None
            test = tests[0][0]
        else:
            passed = False
            failure = (broken[0]["failure"] if broken
                       else f"no test named {prefix}_* in {grader}")
            test = f"{grader}::{prefix}"
        rows.append({"stage": stage, "number": int(number), "test": test, "title": name,
                     "passed": passed, "points": max_points if passed else 0,
                     "max_points": max_points, "failure": failure})
    return {"stages": stages, "exercises": rows,
            "total": {"points": sum(row["points"] for row in rows),
                      "max_points": sum(row["max_points"] for row in rows)}}


def report_table(report: dict) -> str:
    header = ("stage", "exercise", "title", "result", "points")
    rows = [(row["stage"], f"{row['stage']}.{row['number']}", row["title"],
             "passed" if row["passed"] else "failed", f"{row['points']}/{row['max_points']}")
            for row in report["exercises"]]
    total = report["total"]
    footer = ("", "", "total", "", f"{total['points']}/{total['max_points']}")
    widths = [max(len(line[column]) for line in [header, *rows, footer])
              for column in range(len(header))]

    def line(cells) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()

    rule = "  ".join("-" * width for width in widths)
    out = [line(header), rule, *map(line, rows), rule, line(footer)]
    failures = [row for row in report["exercises"] if row["failure"]]
    if failures:
        out.append("")
        out += [f"{row['stage']}.{row['number']} {row['title']}: {row['failure']}"
                for row in failures]
    return "\n".join(out)


# --- the command line -----------------------------------------------------------------------

def _commands(edition: Edition) -> list[str]:
    out = edition.out
    graders = " ".join(sorted({exercise.grader for exercise in edition.exercises}))
    first = edition.exercises[0]
    return [f"  cd {out}",
            f"  .venv/bin/python -m jupyter lab {first.notebook}   # write the functions",
            "  .venv/bin/python tools/export.py                       # export them",
            f"  .venv/bin/python -m pytest -p no:nbval -o addopts= {graders}   # grade",
            "  .venv/bin/python tools/student.py grade .              # the grading report",
            f"(also in {out / GUIDE})"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="student.py", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="{list,make,grade}")
    commands.add_parser("list", help="print the stages and their exercises")
    make = commands.add_parser("make", help="write a student edition")
    make.add_argument("--stage", action="append", default=[],
                      help="a stage to strip (its two-digit prefix, e.g. 01); repeat for more")
    make.add_argument("--all", action="store_true", help="strip every stage with exercises")
    make.add_argument("--out", type=Path, required=True, help="the directory to write it into")
    make.add_argument("--force", action="store_true",
                      help="write into a non-empty directory, replacing the course files there")
    grading = commands.add_parser("grade", help="grade a student edition")
    grading.add_argument("directory", type=Path)
    grading.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _legacy(argv: list[str]) -> list[str]:
    """The former spelling (``--list``; ``--stage 01 --out DIR``) as a command."""
    if argv and argv[0] in ("list", "make", "grade", "-h", "--help"):
        return argv
    if "--list" in argv:
        return ["list"]
    return ["make", *argv]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    args = parser.parse_args(_legacy(argv))
    try:
        if args.command == "list":
            for row in list_stages():
                print(row)
            return 0
        if args.command == "grade":
            report = grade(args.directory)
            print(json.dumps(report, indent=1) if args.json else report_table(report))
            return 0
        stages = resolve_stages(args.stage, args.all)
        edition = write_edition(stages, args.out, args.force)
    except UsageError as error:
        print(f"student.py: error: {error}", file=sys.stderr)
        return 2
    except StudentEditionError as error:
        print(f"student.py: error: {error}", file=sys.stderr)
        return 1
    count = len(edition.exercises)
    print(f"wrote the student edition of stage{'s' if len(stages) > 1 else ''} "
          f"{', '.join(stages)} to {args.out}: {count} exercise{'s' if count != 1 else ''} "
          "to write")
    for exercise in edition.exercises:
        print(f"  {exercise.id}  {exercise.name}()  ({exercise.region.where}, "
              f"line {exercise.region.begin})")
    print("then, there:")
    for line in _commands(edition):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
