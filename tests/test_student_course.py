"""Student editions of the real course (tools/student.py make / grade), issue 12.

One edition of stage 01 and one of stages 01 and 04 together, each written once (module-scoped
fixtures, by the tool's main() in this process: a few seconds each), then checked:

- no solution text anywhere in them: notebooks (sources and outputs), lowserver/, tests,
  tools, benchmarks, and no .git;
- the edition's own python (its .venv, made without an install) imports the edition's
  `lowserver`, from the tests and from a notebook kernel;
- the stripped notebooks run to their end, saying which cells they skipped and why;
- in the two-stage edition, one pytest run of the chosen stages' grading tests and a selection
  of the rest (the unit tests of the stages, tests that depend on them, their notebooks under
  nbval): the grading tests fail with the NotImplementedError of their exercise, tests that
  depend on a stripped exercise skip with a reason naming it, every other test passes;
- the grading report of an edition with one exercise solved.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from test_student_edition import (ROOT, code_lines, lines_outside_regions, notebook_text,
                                  student, student_main)

ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
ENV.pop("STUDENT_EDITION_TRACE", None)

# Run in the two-stage edition besides the grading tests: the stages' own unit tests, tests
# of later stages that use them (requests are parsed by stage 01, bodies streamed by 04), and
# the notebooks of the two stages and of one that uses them, under nbval.
SELECTION = ["tests/test_01_http_parser.py", "tests/test_04_streams.py",
             "tests/test_02_request.py", "tests/test_03_exceptions.py",
             "tests/test_05_websocket.py", "tests/test_06_server.py",
             "notebooks/01_http_parser.ipynb", "notebooks/04_streaming.ipynb",
             "notebooks/02_request_response.ipynb"]
WHERE_TEST = '''\
from pathlib import Path

import lowserver


def test_lowserver_is_the_editions():
    here = Path(__file__).resolve().parent.parent
    assert Path(lowserver.__file__).resolve().is_relative_to(here), lowserver.__file__
'''


def python_of(edition: Path) -> str:
    return str(edition / ".venv" / "bin" / "python")


def in_edition(edition: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([python_of(edition), *args], cwd=edition, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def make(tmp_path_factory, name: str, *stages: str) -> tuple[Path, float, str]:
    out = tmp_path_factory.mktemp(name) / "edition"
    argv = ["make", *[arg for stage in stages for arg in ("--stage", stage)], "--out", str(out)]
    started = time.monotonic()
    code, printed = student_main(student, *argv)
    elapsed = time.monotonic() - started
    assert code == 0, printed
    return out, elapsed, printed


@pytest.fixture(scope="module")
def one(tmp_path_factory):
    return make(tmp_path_factory, "one", "01")


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    return make(tmp_path_factory, "two", "01", "04")


def exercises_of(*stages: str) -> list:
    return [exercise for stage in stages for exercise in student.stage_exercises(stage)]


def test_make_takes_seconds_and_says_what_to_run(one, two):
    for (out, elapsed, printed), stages in ((one, ["01"]), (two, ["01", "04"])):
        assert elapsed < 60, elapsed                     # a few seconds; bounded loosely
        exercises = exercises_of(*stages)
        assert f"{len(exercises)} exercises to write" in printed
        for exercise in exercises:
            assert f"{exercise.id}  {exercise.name}()" in printed
        guide = (out / student.GUIDE).read_text(encoding="utf-8")
        for command in (".venv/bin/python tools/export.py",
                        ".venv/bin/python tools/student.py grade .",
                        *[f"tests/test_{stage}_exercises.py" for stage in stages]):
            assert command in guide and command in printed, command
        assert f"| {exercises[0].id} | `{exercises[0].name}` |" in guide


def test_unknown_and_empty_stages_are_usage_errors_listing_the_valid_ones(tmp_path):
    valid = [stage for stage, found in student.course_exercises().items() if found]
    assert {"01", "02", "03", "04", "05", "06"} <= set(valid)
    no_exercises = [stage for stage, found in student.course_exercises().items() if not found]
    for stage in ["42", *no_exercises[:1]]:
        code, printed = student_main(student, "make", "--stage", stage, "--out",
                                     str(tmp_path / stage))
        assert code == 2, printed
        assert f"stages: {', '.join(valid)}" in printed
        assert not (tmp_path / stage).exists()


def test_list_prints_every_stage_and_its_exercises():
    code, printed = student_main(student, "list")
    assert code == 0
    for stage, exercises in student.course_exercises().items():
        assert re.search(rf"^{stage}\s+{len(exercises)} exercise", printed, re.MULTILINE), stage
        for exercise in exercises:
            assert re.search(rf"^\s+{re.escape(exercise.id)}\s+{re.escape(exercise.name)}$",
                             printed, re.MULTILINE)


def test_make_all_strips_every_stage_with_exercises(tmp_path):
    code, printed = student_main(student, "make", "--all", "--out", str(tmp_path / "all"))
    assert code == 0, printed
    stages = [stage for stage, found in student.course_exercises().items() if found]
    exercises = exercises_of(*stages)
    assert f"{len(exercises)} exercises to write" in printed
    runtime = (tmp_path / "all" / "student_edition.py").read_text(encoding="utf-8")
    assert f"STAGES = {stages!r}" in runtime
    assert_no_solution_text(tmp_path / "all", stages)


def edition_files(edition: Path):
    for path in sorted(edition.rglob("*")):
        if path.is_file() and not path.is_symlink() and "__pycache__" not in path.parts:
            yield path


def assert_no_solution_text(edition: Path, stages: list[str], cleared: bool = True) -> None:
    exercises = exercises_of(*stages)
    assert exercises
    assert not (edition / ".git").exists()
    # what a solution line may share with the rest of the course: lines outside every region
    # of every notebook, and the files the edition copies as they are
    shared = set().union(*(lines_outside_regions(notebook_text(path))
                           for path in sorted((ROOT / "notebooks").glob("*.ipynb"))))
    for folder in ("tests", "tools", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            shared |= code_lines(path.read_text(encoding="utf-8"))
    texts = {}
    for path in edition_files(edition):
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        texts[path] = notebook_text(path) if path.suffix == ".ipynb" else text
    for exercise in exercises:
        region = exercise.region
        # (a short solution may share every line with code shown elsewhere, frame_chunk's
        # with 04's chunked writer: then only the whole region is looked for)
        distinctive = code_lines(region.text) - shared
        for path, text in texts.items():
            assert region.text not in text, (path, region.where)
            leaked = distinctive & code_lines(text)
            assert not leaked, f"{path} holds {sorted(leaked)} of exercise {exercise.id}"
    for stage in stages:
        for path in student.stage_notebooks(stage):
            nb = nbformat.read(edition / "notebooks" / path.name, as_version=4)
            if cleared:
                assert all(not cell.get("outputs") for cell in nb.cells
                           if cell.cell_type == "code")
            assert "SOLUTION" not in notebook_text(edition / "notebooks" / path.name)


def test_one_stage_holds_no_solution_text_anywhere(one):
    assert_no_solution_text(one[0], ["01"])


def test_two_stages_hold_no_solution_text_anywhere(two):
    assert_no_solution_text(two[0], ["01", "04"])


def test_stubs_name_their_exercise_and_other_stages_keep_their_solution(two):
    out = two[0]
    for exercise in exercises_of("01", "04"):
        assert exercise.message == (f"exercise {exercise.id}: {exercise.name} — write it in "
                                    f"{exercise.notebook}")
        nb = notebook_text(out / exercise.notebook)
        assert f"raise NotImplementedError({exercise.message!r})" in nb
    for stage in ("02", "03", "05", "06"):
        for path in student.stage_notebooks(stage):
            given = nbformat.read(out / "notebooks" / path.name, as_version=4)
            solved = nbformat.read(path, as_version=4)
            assert given.cells[0].source == student.FIRST_CELL
            assert given.cells[1:] == solved.cells, path.name


def test_the_edition_imports_its_own_lowserver_from_tests_and_kernels(one, tmp_path):
    out = one[0]
    for cwd in (out, out / "notebooks"):
        done = subprocess.run([python_of(out), "-c", "import lowserver; print(lowserver.__file__)"],
                              cwd=cwd, env=ENV, capture_output=True, text=True, timeout=120)
        assert Path(done.stdout.strip()) == (out / "lowserver" / "__init__.py").resolve(), done
    (out / "tests" / "test_zz_where.py").write_text(WHERE_TEST)
    try:
        done = in_edition(out, "-m", "pytest", "-q", "-p", "no:nbval", "-o", "addopts=",
                          "-p", "no:cacheprovider", "tests/test_zz_where.py")
    finally:
        (out / "tests" / "test_zz_where.py").unlink()
    assert done.returncode == 0, done.stdout + done.stderr
    # a kernel, the way the student's Jupyter starts one (the edition's kernelspec), running
    # the stripped notebook to its end and then telling where lowserver came from
    where = new_notebook(cells=[new_code_cell(student.FIRST_CELL), new_code_cell(
        "import sys, lowserver\nprint(lowserver.__file__)\nprint(sys.executable)")])
    where.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}
    nbformat.write(where, out / "notebooks" / "zz_where.ipynb")
    try:
        done = in_edition(out, "tools/execute.py", "notebooks/01_http_parser.ipynb",
                          "notebooks/zz_where.ipynb")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        printed = nbformat.read(out / "notebooks" / "zz_where.ipynb", as_version=4).cells[1]
    finally:
        (out / "notebooks" / "zz_where.ipynb").unlink()
    file, executable = printed.outputs[0]["text"].split()
    assert Path(file) == (out / "lowserver" / "__init__.py").resolve()
    assert Path(executable).parent == out / ".venv" / "bin"
    nb = nbformat.read(out / "notebooks" / "01_http_parser.ipynb", as_version=4)
    said = "".join(output.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for output in cell.outputs)
    assert not [output for cell in nb.cells if cell.cell_type == "code"
                for output in cell.outputs if output.output_type == "error"]
    for exercise in exercises_of("01"):
        assert f"skipped: needs exercise {exercise.id} ({exercise.name})" in said, exercise.id
    assert nb.cells[-1].cell_type == "markdown" or nb.cells[-1].execution_count  # ran to the end
    # the executed notebook holds outputs, not solutions
    assert_no_solution_text(out, ["01"], cleared=False)


def junit(report: Path) -> dict[str, tuple[str, str]]:
    """{file::test: (outcome, message)} from a junit report."""
    outcomes = {}
    for case in ElementTree.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        for kind in ("failure", "error", "skipped"):
            found = case.find(kind)
            if found is not None:
                outcomes[name] = (kind, (found.get("message") or "") + (found.text or ""))
                break
        else:
            outcomes[name] = ("passed", "")
    return outcomes


def test_grading_tests_fail_dependent_tests_skip_naming_the_exercise_the_rest_passes(two,
                                                                                     tmp_path):
    out = two[0]
    graders = ["tests/test_01_exercises.py", "tests/test_04_exercises.py"]
    report = tmp_path / "report.xml"
    done = in_edition(out, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o",
                      "junit_family=xunit2", f"--junitxml={report}", *graders, *SELECTION,
                      timeout=900)
    assert report.exists(), done.stdout[-3000:] + done.stderr[-3000:]
    outcomes = junit(report)
    exercises = {exercise.id: exercise for exercise in exercises_of("01", "04")}
    graded = {name: result for name, result in outcomes.items()
              if name.startswith(("tests.test_01_exercises::", "tests.test_04_exercises::"))}
    assert len(graded) >= len(exercises)
    for name, (outcome, message) in graded.items():
        assert outcome == "failure", (name, outcome)
        stage = name.split("_")[1]
        number = re.search(r"::test_exercise_(\d+)", name).group(1)
        assert f"NotImplementedError: exercise {stage}.{number}: " in message, (name, message)
    skipped = {name: message for name, (outcome, message) in outcomes.items()
               if outcome == "skipped"}
    reason = re.compile(r"needs exercise (\d\d\.\d+) \(([\w.<>]+)\)")
    for name, message in skipped.items():
        found = reason.search(message)
        assert found, (name, message)
        assert found.group(1) in exercises and found.group(2) == exercises[found.group(1)].name
    assert len(skipped) > 20                  # the parser's tests need its framing rules
    others = {name: result for name, result in outcomes.items()
              if name not in graded and name not in skipped}
    broken = {name: result for name, result in others.items() if result[0] != "passed"}
    assert not broken, broken
    assert len(others) > 300, len(others)
    assert done.returncode == 1               # only the grading tests failed


def solve(edition: Path, exercise) -> None:
    """Write the solution of `exercise` back where its stub stands, in the edition's notebook."""
    path = edition / exercise.notebook
    nb = nbformat.read(path, as_version=4)
    stub = exercise.region.indent + f"raise NotImplementedError({exercise.message!r})"
    cells = [cell for cell in nb.cells if cell.cell_type == "code" and stub in cell.source]
    assert len(cells) == 1, exercise.id
    cells[0].source = cells[0].source.replace(
        exercise.region.indent + student.STUB[0] + "\n" + stub, exercise.region.text)
    nbformat.write(nb, path)


def test_grading_report_of_an_edition_with_one_exercise_solved(tmp_path_factory):
    out, _, _ = make(tmp_path_factory, "graded", "01")
    exercises = exercises_of("01")
    solved = exercises[1]
    solve(out, solved)
    done = in_edition(out, "tools/export.py")
    assert done.returncode == 0, done.stdout + done.stderr
    tool = [sys.executable, str(ROOT / "tools" / "student.py")]
    done = subprocess.run([*tool, "grade", str(out), "--json"], env=ENV, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert set(report) == {"stages", "exercises", "total"}
    assert report["stages"] == ["01"]
    rows = report["exercises"]
    assert [(row["stage"], row["number"], row["title"]) for row in rows] == [
        ("01", exercise.number, exercise.name) for exercise in exercises]
    for row, exercise in zip(rows, exercises):
        assert set(row) == {"stage", "number", "test", "title", "passed", "points",
                            "max_points", "failure"}
        assert row["test"].startswith(f"tests/test_01_exercises.py::test_exercise_{exercise.number}_")
        assert row["max_points"] == 1
        if exercise is solved:
            assert (row["passed"], row["points"], row["failure"]) == (True, 1, None)
        else:
            assert (row["passed"], row["points"]) == (False, 0)
            assert row["failure"].startswith(f"NotImplementedError: exercise 01.{exercise.number}: ")
    assert report["total"] == {"points": 1, "max_points": len(exercises)}
    done = subprocess.run([*tool, "grade", str(out)], env=ENV, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["stage", "exercise", "title", "result", "points"]
    assert lines[3].split() == ["01", "01.2", solved.name, "passed", "1/1"]
    assert [line.split()[-2:] for line in lines[2:2 + len(exercises)]] == [
        ["passed" if exercise is solved else "failed", "1/1" if exercise is solved else "0/1"]
        for exercise in exercises]
    assert lines[3 + len(exercises)].split() == ["total", f"1/{len(exercises)}"]
    print(done.stdout)                      # the report, for the record (-s shows it)
    for bad in (out / "missing", ROOT / "tests"):
        done = subprocess.run([*tool, "grade", str(bad)], env=ENV, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2, done.stderr
