"""The student edition round trip (tools/student.py), part one on a tiny synthetic course.

A student edition must hold no solution text from its stages, still import, and make those
stages' grading tests fail (with a NotImplementedError naming the exercise), while the solved
course passes them; every other stage keeps its solution untouched. The mini-course pins the
tool's behaviour down independently of the real notebooks; tests/test_student_course.py runs
it on the real course (one stage, two stages, the grading report).

Cost: the mini-course's edition is written once, by the command line, in a subprocess; what
needs a fresh interpreter (an edition's `lowserver` cannot share this process with the
course's) runs in the edition's own `.venv` (made by the tool in a second, no install).
"""
from __future__ import annotations

import contextlib
import importlib.util
import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / "tools"


def _load(name: str, tools: Path = TOOLS, alias: str = "course"):
    spec = importlib.util.spec_from_file_location(f"_{alias}_tools_{name}", tools / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


student = _load("student")
export = _load("export")

ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}


def edition_python(root: Path) -> Path | None:
    python = root / ".venv" / "bin" / "python"
    return python if python.exists() else None


def run(*args: str, cwd: Path, python: Path | None = None) -> subprocess.CompletedProcess:
    """`python` (this interpreter by default, with `cwd` first on the path: the `lowserver` it
    imports is cwd's, not the course's editable install) on `args`, in `cwd`."""
    path = os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")]))
    env = {**ENV, "PYTHONPATH": path} if python is None else ENV
    return subprocess.run([str(python or sys.executable), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def run_pytest(cwd: Path, report: Path,
               *test_files: str) -> tuple[int, dict[str, dict[str, str | None]]]:
    """Run test files in one pytest, without nbval or caches (``-o addopts=`` drops --nbval,
    so the nbval plugin, slow to load, is left out too); return (exit code,
    {test file: {test: failure or None}})."""
    done = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:nbval", "-o", "addopts=",
               "-o", "junit_family=xunit2", f"--junitxml={report}", *test_files, cwd=cwd,
               python=edition_python(cwd))
    assert report.exists(), done.stdout + done.stderr
    outcomes: dict[str, dict[str, str | None]] = {name: {} for name in test_files}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        owner = [name for name in test_files
                 if (case.get("classname") + ".").startswith(
                     name.removesuffix(".py").replace("/", ".") + ".")]
        assert len(owner) == 1, (case.get("classname"), test_files)
        outcomes[owner[0]][case.get("name")] = (
            None if problem is None else (problem.get("message") or "") + (problem.text or ""))
    return done.returncode, outcomes


def imported_from(modules: list[str], cwd: Path, python: Path | None = None) -> dict[str, Path]:
    """Where a fresh interpreter (`python`) in `cwd` imports each of `modules` from."""
    done = run("-c", "import importlib, sys\n"
                     "for name in sys.argv[1:]:\n"
                     "    print(importlib.import_module(name).__file__)", *modules, cwd=cwd,
               python=python)
    assert done.returncode == 0, done.stderr
    return dict(zip(modules, (Path(line).resolve() for line in done.stdout.splitlines())))


_EXPORTERS = itertools.count()


def exporter(root: Path, *argv: str) -> tuple[int, str]:
    """``python tools/export.py ARGV`` in `root`, run in this process: the exporter is loaded
    from `root`, so its ROOT is `root`. Returns its exit code and what it printed."""
    tool = _load("export", root / "tools", alias=f"exporter{next(_EXPORTERS)}")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = tool.main(list(argv))
    return code, printed.getvalue()


def student_main(tool, *argv: str) -> tuple[int, str]:
    """``python tools/student.py ARGV``, run in this process by the loaded `tool`."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
        code = tool.main(list(argv))
    return code, printed.getvalue()


def code_lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip()}


def lines_outside_regions(text: str) -> set[str]:
    """The stripped lines of `text` that are not inside a marked region (markers excluded)."""
    outside, inside = set(), False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped == student.BEGIN:
            inside = True
        elif stripped == student.END:
            inside = False
        elif not inside and stripped:
            outside.add(stripped)
    return outside


def notebook_text(path: Path) -> str:
    """Every code cell's source and every output's text, as one string."""
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue                                  # prose may name the markers
        parts.append(cell.source)
        for output in cell.get("outputs", []):
            parts.append(json.dumps(output, ensure_ascii=False))
    return "\n".join(parts)


# --- part one: a synthetic mini-course ------------------------------------------------------

MINI_EXERCISE = '''\
#| export
"""A tiny module to hand out."""
from __future__ import annotations


def add(a: int, b: int) -> int:
    """The sum of a and b."""
    ### BEGIN SOLUTION
    secret_total = a + b  # the solution of exercise 1
    return secret_total
    ### END SOLUTION


class Counter:
    def __init__(self) -> None:
        self.count = 0

    def bump(self, by: int) -> int:
        if by < 0:
            raise ValueError("by must be >= 0")
        ### BEGIN SOLUTION
        self.count += by  # the solution of exercise 2
        return self.count
        ### END SOLUTION'''

MINI_OTHER = '''\
#| export
def double(x: int) -> int:
    ### BEGIN SOLUTION
    return x * 2  # stage 02 keeps this
    ### END SOLUTION'''

MINI_SOLUTION_LINES = ["secret_total = a + b  # the solution of exercise 1",
                       "return secret_total",
                       "self.count += by  # the solution of exercise 2",
                       "return self.count"]

MINI_GRADER = '''\
from lowserver.mini import Counter, add


def test_exercise_1_add():
    assert add(2, 3) == 5


def test_exercise_2_bump():
    counter = Counter()
    assert counter.bump(2) == 2
    assert counter.bump(3) == 5
'''


def _notebook(path: Path, cells: list) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nbformat.write(nb, path)


def make_mini_course(root: Path) -> Path:
    (root / "tools").mkdir(parents=True)
    shutil.copy2(TOOLS / "export.py", root / "tools" / "export.py")
    shutil.copy2(TOOLS / "student.py", root / "tools" / "student.py")
    (root / "notebooks").mkdir()
    demo = new_code_cell("print(add(2, 3), secret_peek)", execution_count=3,
                         outputs=[new_output("stream", name="stdout",
                                             text="5 secret_total = a + b\n")])
    _notebook(root / "notebooks" / "01_mini.ipynb", [
        new_markdown_cell("# 01 · mini\n\nWrite the code between `### BEGIN SOLUTION` and "
                          "`### END SOLUTION`."),
        new_code_cell("#| default_exp mini"),
        new_code_cell(MINI_EXERCISE, execution_count=1),
        demo,
    ])
    _notebook(root / "notebooks" / "02_other.ipynb", [
        new_code_cell("#| default_exp other"),
        new_code_cell(MINI_OTHER, execution_count=1,
                      outputs=[new_output("stream", name="stdout", text="kept\n")]),
    ])
    _notebook(root / "notebooks" / "03_plain.ipynb", [
        new_code_cell("#| default_exp plain"),
        new_code_cell("#| export\nPLAIN = 1"),
    ])
    (root / "lowserver").mkdir()
    (root / "lowserver" / "__init__.py").write_text('"""Hand-written."""\n')
    # the course's installed metadata names this pytest plugin, which an edition's .venv sees
    (root / "lowserver" / "pytest_plugin.py").write_text('"""Hand-written, empty."""\n')
    (root / "tests").mkdir()
    (root / "tests" / "test_01_exercises.py").write_text(MINI_GRADER)
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\naddopts = \"\"\n")
    code, printed = exporter(root)
    assert code == 0, printed
    return root


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> tuple[Path, Path]:
    """(solved mini-course, its stage-01 student workspace), written by the command line."""
    course = make_mini_course(tmp_path_factory.mktemp("mini") / "course")
    out = course.parent / "workspace"
    done = run("tools/student.py", "--stage", "01", "--out", str(out), cwd=course)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 exercises" in done.stdout
    assert "01.1  add()" in done.stdout and "01.2  Counter.bump()" in done.stdout
    assert "tools/export.py" in done.stdout and "tests/test_01_exercises.py" in done.stdout
    return course, out


def test_mini_student_copy_holds_no_solution_text(mini):
    course, out = mini
    for path in (out / "notebooks" / "01_mini.ipynb", out / "lowserver" / "mini.py"):
        text = path.read_text(encoding="utf-8")
        for line in MINI_SOLUTION_LINES:
            assert line not in text, (path, line)
        assert "secret_total" not in text, path      # nor in the demo's (cleared) output
    assert "BEGIN SOLUTION" not in notebook_text(out / "notebooks" / "01_mini.ipynb")
    module = (out / "lowserver" / "mini.py").read_text()
    assert "BEGIN SOLUTION" not in module and "END SOLUTION" not in module
    # The solved course still has them all (so the assertions above can fail).
    solved = (course / "lowserver" / "mini.py").read_text()
    assert all(line in solved for line in MINI_SOLUTION_LINES)


def test_mini_stubs_sit_at_the_markers_indentation(mini):
    _, out = mini
    module = (out / "lowserver" / "mini.py").read_text()
    assert ('    """The sum of a and b."""\n'
            "    # YOUR CODE HERE\n"
            "    raise NotImplementedError('exercise 01.1: add — write it in "
            "notebooks/01_mini.ipynb')\n") in module
    assert ('            raise ValueError("by must be >= 0")\n'
            "        # YOUR CODE HERE\n"
            "        raise NotImplementedError('exercise 01.2: Counter.bump — write it in "
            "notebooks/01_mini.ipynb')\n") in module
    assert module.startswith("# AUTOGENERATED from notebooks/01_mini.ipynb")


def test_mini_stage_outputs_are_cleared_and_other_stages_untouched(mini):
    course, out = mini
    nb = nbformat.read(out / "notebooks" / "01_mini.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert nb.cells[0].source == student.FIRST_CELL               # loads the edition's guard
    assert nb.cells[1].source.startswith("# 01 · mini")          # markdown kept as written
    assert all(student.IGNORE_OUTPUT_TAG in cell.metadata["tags"] for cell in code)
    for name in ("notebooks/02_other.ipynb", "notebooks/03_plain.ipynb"):
        given, solved = (nbformat.read(root / name, as_version=4) for root in (out, course))
        assert given.cells[0].source == student.FIRST_CELL
        assert given.cells[1:] == solved.cells, name              # only the first cell added
    for name in ("lowserver/other.py", "lowserver/plain.py", "lowserver/__init__.py",
                 "tests/test_01_exercises.py"):
        assert (out / name).read_bytes() == (course / name).read_bytes(), name
    assert "return x * 2  # stage 02 keeps this" in (out / "lowserver" / "other.py").read_text()


def test_mini_student_copy_imports_and_is_consistent(mini):
    _, out = mini
    python = edition_python(out)
    assert python is not None
    for cwd in (out, out / "notebooks"):                     # a kernel runs in notebooks/
        assert imported_from(["lowserver", "lowserver.mini"], cwd, python) == {
            "lowserver": (out / "lowserver" / "__init__.py").resolve(),
            "lowserver.mini": (out / "lowserver" / "mini.py").resolve()}
    assert exporter(out, "--check") == (0, "")


def test_mini_grading_fails_for_the_student_and_passes_when_solved(mini, tmp_path):
    course, out = mini
    grader = "tests/test_01_exercises.py"
    code, outcomes = run_pytest(out, tmp_path / "student.xml", grader)
    assert code == 1
    assert set(outcomes[grader]) == {"test_exercise_1_add", "test_exercise_2_bump"}
    assert all(failure and "NotImplementedError: exercise 01." in failure
               for failure in outcomes[grader].values())
    code, outcomes = run_pytest(course, tmp_path / "solved.xml", grader)
    assert code == 0
    assert outcomes[grader] == {"test_exercise_1_add": None, "test_exercise_2_bump": None}


def test_mini_list(mini, capsys):
    course, _ = mini
    tool = _load("student", course / "tools", alias="mini")    # in-process: its ROOT is `course`
    assert tool.main(["--list"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    rows = captured.out.splitlines()
    assert rows[0].split()[:3] == ["01", "2", "exercises"]
    assert "graded by tests/test_01_exercises.py" in rows[0]
    assert rows[1].split() == ["01.1", "add"] and rows[2].split() == ["01.2", "Counter.bump"]
    assert rows[3].split()[:3] == ["02", "1", "exercise"]
    assert "no grading tests" in rows[3]
    assert rows[5].split()[:3] == ["03", "0", "exercises"]
    assert tool.main(["list"]) == 0 and capsys.readouterr().out == captured.out


def test_mini_refusals(mini, tmp_path, capsys):
    course, out = mini
    tool = _load("student", course / "tools", alias="mini")    # in-process: its ROOT is `course`

    def refused(*args: str, code: int = 1) -> str:
        assert tool.main(list(args)) == code
        captured = capsys.readouterr()
        assert captured.out == ""
        return captured.err

    # A stage without markers, and a stage that does not exist: usage errors that list the
    # stages there are; nothing is written.
    for stage, message in (("03", "stage 03 has no exercises"), ("09", "no notebook for stage 09")):
        target = tmp_path / f"stage{stage}"
        error = refused("make", "--stage", "01", "--stage", stage, "--out", str(target), code=2)
        assert message in error and "stages: 01, 02" in error
        assert not target.exists()
    assert "stages: 01, 02" in refused("make", "--stage", "x1", "--out", str(tmp_path / "y"),
                                       code=2)
    assert "--all" in refused("make", "--out", str(tmp_path / "y"), code=2)
    # A non-empty directory, unless --force (which replaces the course files, keeps the rest).
    target = tmp_path / "busy"
    target.mkdir()
    (target / "mine.txt").write_text("my notes")
    error = refused("--stage", "01", "--out", str(target))
    assert "not empty" in error and "--force" in error
    assert sorted(p.name for p in target.iterdir()) == ["mine.txt"]
    (target / "lowserver").mkdir()
    (target / "lowserver" / "leftover.py").write_text("# not part of the course\n")
    assert tool.main(["--stage", "1", "--out", str(target), "--force"]) == 0
    assert "stage 01" in capsys.readouterr().out
    assert (target / "mine.txt").read_text() == "my notes"
    assert not (target / "lowserver" / "leftover.py").exists()
    assert "raise NotImplementedError('exercise 01.1: add" in (target / "lowserver" / "mini.py").read_text()
    # Never into the course itself or one of its directories.
    for inside in (course, course / "notebooks" / "x"):
        assert "cannot be" in refused("--stage", "01", "--out", str(inside), "--force")
    solved = (course / "lowserver" / "mini.py").read_text()
    assert all(line in solved for line in MINI_SOLUTION_LINES)   # the course is untouched
    # Bad arguments are usage errors.
    for args in (["--stage", "01"], ["make", "--stage", "01"], ["grade"], ["nonsense"]):
        with pytest.raises(SystemExit) as usage:
            tool.main(args)
        assert usage.value.code == 2
    capsys.readouterr()


@pytest.mark.parametrize("source, message", [
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n",
     "line 2: '### BEGIN SOLUTION' is never closed"),
    ("def f():\n    return 1\n    ### END SOLUTION\n",
     "line 3: '### END SOLUTION' without a '### BEGIN SOLUTION'"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    return 1\n"
     "    ### END SOLUTION\n", "line 3: '### BEGIN SOLUTION' inside the region opened at line 2"),
    ("def f():\n    ## BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n",
     "line 2: malformed marker '## BEGIN SOLUTION'"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### end solution\n",
     "line 4: malformed marker '### end solution'"),
    ("### BEGIN SOLUTION\nX = 1\n### END SOLUTION\n",
     "line 1: the marked region is not inside a function body"),
    ("def f(x):\n    ### BEGIN SOLUTION\n    if x:\n        return 1\n"
     "    ### END SOLUTION\n    else:\n        return 2\n",
     "breaks the syntax"),
])
def test_bad_markers_are_refused_with_their_place(source, message):
    with pytest.raises(student.StudentEditionError) as error:
        student.strip_cell(source, "notebooks/01_x.ipynb, cell 4")
    assert str(error.value).startswith("notebooks/01_x.ipynb, cell 4")
    assert message in str(error.value)


def test_bad_markers_in_a_notebook_stop_the_tool_before_writing(tmp_path, capsys):
    course = make_mini_course(tmp_path / "course")
    path = course / "notebooks" / "01_mini.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells[2].source = nb.cells[2].source.replace("        ### END SOLUTION", "")
    nbformat.write(nb, path)
    tool = _load("student", course / "tools", alias="broken")  # in-process: ROOT is `course`
    assert tool.main(["--stage", "01", "--out", str(tmp_path / "out")]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "notebooks/01_mini.ipynb, cell 2, line 21" in captured.err
    assert "never closed" in captured.err
    assert not (tmp_path / "out").exists()


def test_strip_cell_keeps_everything_outside_the_regions():
    source = ("#| export\ndef f(x):\n    \"\"\"Doc.\"\"\"\n    ### BEGIN SOLUTION\n"
              "    y = x + 1\n    return y\n    ### END SOLUTION\n\n\nasync def g():\n"
              "    ### BEGIN SOLUTION\n    await h()\n    ### END SOLUTION\n    # after")
    stripped, regions = student.strip_cell(source, "here")
    assert stripped == ("#| export\ndef f(x):\n    \"\"\"Doc.\"\"\"\n    # YOUR CODE HERE\n"
                        "    raise NotImplementedError()\n\n\nasync def g():\n"
                        "    # YOUR CODE HERE\n    raise NotImplementedError()\n    # after")
    assert [(r.begin, r.end, r.function, r.lines) for r in regions] == [
        (4, 7, "f", ["    y = x + 1", "    return y"]),
        (11, 13, "g", ["    await h()"]),
    ]
    assert student.strip_cell("x = 1\n%timeit x", "magic") == ("x = 1\n%timeit x", [])
    assert student.strip_cell("def f():\n    ### BEGIN SOLUTION\n    return 1\n"
                              "    ### END SOLUTION\n", "here")[0] == (
        "def f():\n    # YOUR CODE HERE\n    raise NotImplementedError()\n")


    named, _ = student.strip_cell(source, "here", ["exercise 01.1: f", "exercise 01.2: g"])
    assert "    raise NotImplementedError('exercise 01.1: f')\n" in named
    assert "    raise NotImplementedError('exercise 01.2: g')\n" in named


def test_qualified_names_of_methods_and_nested_functions():
    source = ("class A:\n    def m(self):\n        ### BEGIN SOLUTION\n        return 1\n"
              "        ### END SOLUTION\n\n\ndef outer():\n    def inner():\n"
              "        ### BEGIN SOLUTION\n        return 2\n        ### END SOLUTION\n"
              "    return inner\n")
    assert [region.function for region in student.strip_cell(source, "here")[1]] == [
        "A.m", "outer.<locals>.inner"]


def test_stages_are_the_two_digit_prefix(tmp_path):
    for name in ("00_intro", "05a_frames", "05b_deflate", "10_more", "xx_notes", "5_bad"):
        (tmp_path / f"{name}.ipynb").write_text("{}")
    assert {stage: [path.name for path in paths]
            for stage, paths in student.all_stages(tmp_path).items()} == {
        "00": ["00_intro.ipynb"], "05": ["05a_frames.ipynb", "05b_deflate.ipynb"],
        "10": ["10_more.ipynb"]}
    assert [p.name for p in student.stage_notebooks("05", tmp_path)] == [
        "05a_frames.ipynb", "05b_deflate.ipynb"]


POINTS_GRADER = MINI_GRADER.replace("def test_exercise_2_bump", "@pytest.mark.points(2)\ndef test_exercise_2_bump").replace(
    "from lowserver.mini", "import pytest\n\nfrom lowserver.mini")


def test_mini_grade_counts_points_and_refuses_what_is_no_edition(tmp_path, capsys):
    course = make_mini_course(tmp_path / "course")
    (course / "tests" / "test_01_exercises.py").write_text(POINTS_GRADER)
    tool = _load("student", course / "tools", alias="points")
    out = tmp_path / "edition"
    assert tool.main(["make", "--stage", "01", "--out", str(out)]) == 0
    capsys.readouterr()
    # solve exercise 2 (worth 2 points) in the module: the grade follows
    module = out / "lowserver" / "mini.py"
    module.write_text(module.read_text().replace(
        "        raise NotImplementedError('exercise 01.2: Counter.bump — write it in "
        "notebooks/01_mini.ipynb')", "        self.count += by\n        return self.count"))
    assert tool.main(["grade", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report == {
        "stages": ["01"],
        "exercises": [
            {"stage": "01", "number": 1, "test": "tests/test_01_exercises.py::test_exercise_1_add",
             "title": "add", "passed": False, "points": 0, "max_points": 1,
             "failure": "NotImplementedError: exercise 01.1: add — write it in "
                        "notebooks/01_mini.ipynb"},
            {"stage": "01", "number": 2,
             "test": "tests/test_01_exercises.py::test_exercise_2_bump", "title": "Counter.bump",
             "passed": True, "points": 2, "max_points": 2, "failure": None}],
        "total": {"points": 2, "max_points": 3}}
    assert tool.main(["grade", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["stage", "exercise", "title", "result", "points"]
    assert table[2].split() == ["01", "01.1", "add", "failed", "0/1"]
    assert table[3].split() == ["01", "01.2", "Counter.bump", "passed", "2/2"]
    assert table[5].split() == ["total", "2/3"]
    # usage errors: no such directory, a directory that is not an edition
    for directory in (tmp_path / "missing", course):
        assert tool.main(["grade", str(directory)]) == 2
        error = capsys.readouterr().err
        assert "no such directory" in error or "not a student edition" in error
