"""The student edition round trip (tools/student.py).

A student workspace for a stage must hold no solution text from that stage, still import, and
make that stage's grading tests fail (with NotImplementedError), while the solved course
passes them; every other stage keeps its solution untouched.

Part one builds a tiny synthetic course in a temporary directory, so the tool's behaviour is
pinned down independently of the real notebooks. Part two runs the tool on the real course,
for every stage that has marked regions and a ``tests/test_NN_exercises.py``: as stages land,
they are graded the same way with no change here.

Cost: a workspace is written once per stage (module-scoped fixtures), by the tool's own
``main()`` in this process, and the exporter runs in this process too (``--check`` included);
only the mini-course's workspace is written by the command line itself, in a subprocess. What
needs a fresh interpreter (a workspace's ``lowserver`` cannot share this process with the
course's) gets one: an import check and a grading run per workspace, and a single grading run
of every stage on the solved course. Each is this interpreter with the workspace first on
``PYTHONPATH`` (no venv, no install); the import check asserts that ``lowserver`` came from
the workspace.
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


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """This interpreter on `args`, in `cwd`, with `cwd` first on the path: the `lowserver` it
    imports is cwd's (a workspace's), not the course's editable install."""
    path = os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, *args], cwd=cwd, env={**ENV, "PYTHONPATH": path},
                          capture_output=True, text=True, timeout=300)


def run_pytest(cwd: Path, report: Path,
               *test_files: str) -> tuple[int, dict[str, dict[str, str | None]]]:
    """Run test files in one pytest, without nbval or caches (``-o addopts=`` drops --nbval,
    so the nbval plugin, slow to load, is left out too); return (exit code,
    {test file: {test: failure or None}})."""
    done = run("-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:nbval", "-o", "addopts=",
               "-o", "junit_family=xunit2", f"--junitxml={report}", *test_files, cwd=cwd)
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


def imported_from(modules: list[str], cwd: Path) -> dict[str, Path]:
    """Where a fresh interpreter in `cwd` imports each of `modules` from."""
    done = run("-c", "import importlib, sys\n"
                     "for name in sys.argv[1:]:\n"
                     "    print(importlib.import_module(name).__file__)", *modules, cwd=cwd)
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
    assert "add()" in done.stdout and "bump()" in done.stdout
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
            "    raise NotImplementedError()\n") in module
    assert ('            raise ValueError("by must be >= 0")\n'
            "        # YOUR CODE HERE\n"
            "        raise NotImplementedError()\n") in module
    assert module.startswith("# AUTOGENERATED from notebooks/01_mini.ipynb")


def test_mini_stage_outputs_are_cleared_and_other_stages_untouched(mini):
    course, out = mini
    nb = nbformat.read(out / "notebooks" / "01_mini.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert nb.cells[0].source.startswith("# 01 · mini")          # markdown kept as written
    for name in ("notebooks/02_other.ipynb", "notebooks/03_plain.ipynb", "lowserver/other.py",
                 "lowserver/plain.py", "lowserver/__init__.py", "tests/test_01_exercises.py"):
        assert (out / name).read_bytes() == (course / name).read_bytes(), name
    assert "return x * 2  # stage 02 keeps this" in (out / "lowserver" / "other.py").read_text()


def test_mini_student_copy_imports_and_is_consistent(mini):
    _, out = mini
    assert imported_from(["lowserver", "lowserver.mini"], out) == {
        "lowserver": (out / "lowserver" / "__init__.py").resolve(),
        "lowserver.mini": (out / "lowserver" / "mini.py").resolve()}
    assert exporter(out, "--check") == (0, "")


def test_mini_grading_fails_for_the_student_and_passes_when_solved(mini, tmp_path):
    course, out = mini
    grader = "tests/test_01_exercises.py"
    code, outcomes = run_pytest(out, tmp_path / "student.xml", grader)
    assert code == 1
    assert set(outcomes[grader]) == {"test_exercise_1_add", "test_exercise_2_bump"}
    assert all(failure and "NotImplementedError" in failure
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
    assert rows[1].split()[:3] == ["02", "1", "exercise"]
    assert "no grading tests" in rows[1]
    assert rows[2].split()[:3] == ["03", "0", "exercises"]


def test_mini_refusals(mini, tmp_path, capsys):
    course, out = mini
    tool = _load("student", course / "tools", alias="mini")    # in-process: its ROOT is `course`

    def refused(*args: str) -> str:
        assert tool.main(list(args)) == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        return captured.err

    # A stage without markers, and a stage that does not exist: nothing is written.
    for stage, message in (("03", "stage 03 has no exercises"), ("09", "no notebook for stage 09")):
        target = tmp_path / f"stage{stage}"
        assert message in refused("--stage", stage, "--out", str(target))
        assert not target.exists()
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
    assert "raise NotImplementedError()" in (target / "lowserver" / "mini.py").read_text()
    # Never into the course itself or one of its directories.
    for inside in (course, course / "notebooks" / "x"):
        assert "cannot be" in refused("--stage", "01", "--out", str(inside), "--force")
    solved = (course / "lowserver" / "mini.py").read_text()
    assert all(line in solved for line in MINI_SOLUTION_LINES)   # the course is untouched
    # Bad arguments are usage errors.
    for args in (["--stage", "x1", "--out", str(tmp_path / "y")], ["--stage", "01"]):
        with pytest.raises(SystemExit) as usage:
            tool.main(args)
        assert usage.value.code == 2


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


# --- part two: the real course --------------------------------------------------------------

def graded_stages() -> list[str]:
    """Stages with marked regions and a grading test file."""
    return [stage for stage, paths in student.all_stages().items()
            if (ROOT / "tests" / f"test_{stage}_exercises.py").exists()
            and any(student.notebook_regions(path) for path in paths)]


def test_every_stage_with_exercises_is_graded_and_every_grader_has_exercises():
    for stage, paths in student.all_stages().items():
        regions = [region for path in paths for region in student.notebook_regions(path)]
        grader = ROOT / "tests" / f"test_{stage}_exercises.py"
        if regions:
            assert grader.exists(), f"stage {stage} has exercises but no tests/{grader.name}"
        if grader.exists():
            assert regions, f"tests/{grader.name} grades stage {stage}, which has no exercises"
            assert "def test_exercise_" in grader.read_text(encoding="utf-8")
    assert "01" in graded_stages()


def stage_modules(stage: str) -> list[str]:
    return sorted({name for path in student.stage_notebooks(stage)
                   for name in export.modules_of(path)})


@pytest.fixture(scope="module", params=graded_stages())
def workspace(request, tmp_path_factory) -> tuple[str, Path]:
    """(stage, its student workspace), written once per stage by the tool's main(), in this
    process (the command line itself runs as a subprocess on the mini-course)."""
    stage = request.param
    out = tmp_path_factory.mktemp(f"student{stage}") / "workspace"
    code, printed = student_main(student, "--stage", stage, "--out", str(out))
    assert code == 0, printed
    assert f"wrote the student edition of stage {stage} to {out}" in printed
    return stage, out


@pytest.fixture(scope="module")
def solved_grading(tmp_path_factory) -> tuple[int, dict[str, dict[str, str | None]]]:
    """Every stage's grading tests on the solved course, in one pytest run."""
    graders = [f"tests/test_{stage}_exercises.py" for stage in graded_stages()]
    return run_pytest(ROOT, tmp_path_factory.mktemp("solved") / "solved.xml", *graders)


def test_course_student_copy_holds_no_solution_text(workspace):
    stage, out = workspace
    targets = [(path, out / "notebooks" / path.name) for path in student.stage_notebooks(stage)]
    targets += [(export.module_path(name), export.module_path(name, out / "lowserver"))
                for name in stage_modules(stage)]
    regions = [region for path in student.stage_notebooks(stage)
               for region in student.notebook_regions(path)]
    assert regions
    # the lines a solution may share with the rest of the stage's code (the modules carry no
    # markers: the exporter drops them, so the notebooks tell what lies outside the regions)
    shared_in_stage = set().union(*(lines_outside_regions(notebook_text(path))
                                    for path in student.stage_notebooks(stage)))
    for solved_path, student_path in targets:
        solved = (notebook_text(solved_path) if solved_path.suffix == ".ipynb"
                  else solved_path.read_text(encoding="utf-8"))
        given = (notebook_text(student_path) if student_path.suffix == ".ipynb"
                 else student_path.read_text(encoding="utf-8"))
        assert "BEGIN SOLUTION" not in given and "END SOLUTION" not in given, student_path
        shared = (lines_outside_regions(solved) if solved_path.suffix == ".ipynb"
                  else shared_in_stage)       # lines a solution may share with the rest
        present = code_lines(given)
        for region in regions:
            assert region.text not in given, (student_path, region.where)
            distinctive = code_lines(region.text) - shared
            if region.text not in solved:
                continue                    # a region of another module or notebook of the stage
            assert distinctive, f"{region.where}: no line of the solution is its own"
            leaked = distinctive & present
            assert not leaked, f"{student_path} still holds {sorted(leaked)} of {region.where}"


def test_course_stage_outputs_cleared_and_other_stages_untouched(workspace):
    stage, out = workspace
    for path in student.stage_notebooks(stage):
        nb = nbformat.read(out / "notebooks" / path.name, as_version=4)
        assert all(not cell.get("outputs") for cell in nb.cells if cell.cell_type == "code")
    own = {export.module_path(name, out / "lowserver") for name in stage_modules(stage)}
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        if path.name[:2] != stage:
            assert (out / "notebooks" / path.name).read_bytes() == path.read_bytes(), path.name
    for path in sorted((ROOT / "lowserver").glob("*.py")):
        copy = out / "lowserver" / path.name
        if copy not in own:
            assert copy.read_bytes() == path.read_bytes(), path.name
    for name in ("tests", "tools"):
        for path in sorted((ROOT / name).glob("*.py")):
            assert (out / name / path.name).read_bytes() == path.read_bytes(), path


def test_course_student_copy_imports_and_is_consistent(workspace):
    stage, out = workspace
    names = stage_modules(stage)
    located = imported_from(["lowserver"] + [f"lowserver.{name}" for name in names], out)
    assert located.pop("lowserver") == (out / "lowserver" / "__init__.py").resolve()
    assert located == {f"lowserver.{name}": export.module_path(name, out / "lowserver").resolve()
                       for name in names}
    code, printed = exporter(out, "--check")
    assert code == 0, printed


def test_course_grading_fails_for_the_student_and_passes_when_solved(workspace, solved_grading,
                                                                     tmp_path):
    stage, out = workspace
    grader = f"tests/test_{stage}_exercises.py"
    code, outcomes = run_pytest(out, tmp_path / "student.xml", grader)
    exercises = {name: failure for name, failure in outcomes[grader].items()
                 if name.startswith("test_exercise_")}
    assert code == 1 and exercises, outcomes
    for name, failure in exercises.items():
        assert failure is not None, f"{name} passes on the student stub"
        assert "NotImplementedError" in failure, f"{name} fails for another reason:\n{failure}"
    code, outcomes = solved_grading
    solved = outcomes[grader]
    assert set(solved) >= set(exercises)
    assert all(failure is None for failure in solved.values()), solved
    assert code == 0, {file: failed for file, tests in outcomes.items()
                       if (failed := [name for name, failure in tests.items() if failure])}
