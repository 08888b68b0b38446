"""Every stage 01-06 hands out at least three graded exercises, presented the same way (issue 12).

Checked from the notebooks: the marked regions (one per exercise, numbered in reading order by
tools/student.py), and the notebook's closing *Exercises* section, which lists the exercises
in that order, each with the function (or method) to write, and gives the command that grades
them (``tests/test_NN_exercises.py``), whose tests ``test_exercise_N_*`` exist.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from test_student_edition import ROOT, student

STAGES = ["01", "02", "03", "04", "05", "06"]
ITEM = re.compile(r"^(\d+)\.\s+(.*?)(?=^\d+\.\s|\Z)", re.MULTILINE | re.DOTALL)
# An item says what its function raises on bad input, or that it raises nothing.
RAISES = re.compile(r"(?i:\braise[sd]?\b|\bexceptions?\b)|\b[A-Z]\w*(Error|Exception|Exit)\b")


def exercises_section(stage: str) -> tuple[Path, int, str]:
    """(notebook, cell index, text) of the stage's Exercises section."""
    found = []
    for path in student.stage_notebooks(stage):
        nb = nbformat.read(path, as_version=4)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "markdown" and re.match(r"#+ Exercises\b", cell.source):
                found.append((path, index, cell.source, nb))
    assert found, f"stage {stage}: no '## Exercises' section"
    path, index, text, _ = found[-1]
    return path, index, text


def sections_after_exercises(stage: str) -> list[str]:
    """The headings of the sections that follow the stage's Exercises section."""
    path, index, _ = exercises_section(stage)
    nb = nbformat.read(path, as_version=4)
    later = [line for cell in nb.cells[index + 1:] if cell.cell_type == "markdown"
             for line in cell.source.splitlines() if re.match(r"#{1,2} ", line)]
    if path != student.stage_notebooks(stage)[-1]:
        later.append(f"(the notebooks after {path.name})")
    return later


def items(text: str) -> list[tuple[int, str]]:
    return [(int(number), body) for number, body in ITEM.findall(text)]


@pytest.mark.parametrize("stage", STAGES)
def test_stage_has_at_least_three_graded_exercises(stage):
    exercises = student.stage_exercises(stage)
    assert len(exercises) >= 3, [exercise.name for exercise in exercises]
    grader = ROOT / "tests" / f"test_{stage}_exercises.py"
    assert grader.exists()
    text = grader.read_text(encoding="utf-8")
    for exercise in exercises:
        assert re.search(rf"^(async )?def test_exercise_{exercise.number}(_\w+)?\(", text,
                         re.MULTILINE), f"no test_exercise_{exercise.number}_* for {exercise.id}"


@pytest.mark.parametrize("stage", STAGES)
def test_exercises_section_lists_each_exercise_in_reading_order_with_its_grader(stage):
    _, _, text = exercises_section(stage)
    exercises = student.stage_exercises(stage)
    listed = items(text)
    assert [number for number, _ in listed] == list(range(1, len(exercises) + 1)), text
    for (number, body), exercise in zip(listed, exercises):
        name = exercise.name.split(".")[-1]
        assert re.search(rf"`[\w.]*\b{re.escape(name)}\(", body), (exercise.id, body[:120])
    assert f"tests/test_{stage}_exercises.py" in text
    assert "pytest" in text


def missing_exceptions(stage: str) -> list[str]:
    _, _, text = exercises_section(stage)
    return [f"{stage}.{number}" for number, body in items(text) if not RAISES.search(body)]


# Known gaps, reported in issue 12 (point 3) for the notebooks' owners: stages whose Exercises
# items do not all say what their function raises on bad input (or that it raises nothing),
# and whose Exercises section is not the notebook's last. Not strict: a fixed notebook passes.
GAPS_EXCEPTION: set[str] = set()
GAPS_AT_END: set[str] = set()


def _known(gaps: set[str], what: str) -> list:
    return [pytest.param(stage, marks=pytest.mark.xfail(reason=f"stage {stage}: {what}",
                                                        strict=False))
            if stage in gaps else stage for stage in STAGES]


@pytest.mark.parametrize("stage", _known(GAPS_EXCEPTION, "an Exercises item names no exception"))
def test_each_exercise_says_what_it_raises(stage):
    assert missing_exceptions(stage) == []


@pytest.mark.parametrize("stage", _known(GAPS_AT_END, "a section follows Exercises"))
def test_exercises_close_the_stage(stage):
    assert sections_after_exercises(stage) == []
