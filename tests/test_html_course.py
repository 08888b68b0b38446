"""The offline HTML course (tools/html.py), issue 12 point 4.

Builds the course's pages and a student edition's (stage 01) once, then checks each page with
html.parser: no `src`, no `href` other than an `<a>` link, and no CSS `url()` or `@import`
(in `<style>` or a `style` attribute) that is absolute or protocol-relative; the index lists
every notebook by its title; outputs and notebook 00's diagram are in the pages; the student
pages hold the stubs, not the solutions.
"""
from __future__ import annotations

import importlib.util
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"_html_test_{name}", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


course_html = _load("html")
student = _load("student")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("html") / "course"
    assert course_html.main([str(out), "--student", "--stage", "01"]) == 0
    return out


def notebooks() -> list[Path]:
    return sorted((ROOT / "notebooks").glob("[0-9][0-9]*.ipynb"))


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[str] = []
        self.images: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a" and attrs.get("href"):
            self.anchors.append(attrs["href"])
        if tag == "img":
            self.images.append(attrs.get("src") or "")


def parse(page: Path) -> Links:
    links = Links()
    links.feed(page.read_text(encoding="utf-8"))
    return links


def test_every_page_loads_nothing_from_the_network(site):
    pages = sorted(site.rglob("*.html"))
    assert len(pages) == 2 * (len(notebooks()) + 1)
    for page in pages:
        assert course_html.remote_loads(page.read_text(encoding="utf-8")) == [], page


@pytest.mark.parametrize("page, found", [
    ('<script src="https://cdn.example/require.js"></script>', 1),
    ('<script src="//cdn.example/x.js"></script>', 1),
    ('<link rel="stylesheet" href="https://fonts.example/css">', 1),
    ('<link rel="icon" href="/favicon.ico">', 1),
    ('<img src="file:///etc/x.png">', 1),
    ('<img srcset="a.png 1x, https://x.example/b.png 2x">', 1),
    ('<style>@import "theme.css";</style>', 1),
    ('<style>body { background: url("https://x.example/a.png") }</style>', 1),
    ('<div style="background: url(//x.example/a.png)"></div>', 1),
    ('<svg><use xlink:href="https://x.example/s.svg#a"/></svg>', 1),
    ('<a href="https://www.rfc-editor.org/rfc/rfc9112">RFC</a>', 0),
    ('<img src="data:image/png;base64,AAAA"><a href="01_http_parser.html">next</a>', 0),
    ('<style>marker { fill: url(#head) }</style><link rel="stylesheet" href="local.css">', 0),
])
def test_the_check_finds_what_a_page_would_fetch(page, found):
    assert len(course_html.remote_loads(page)) == found, course_html.remote_loads(page)


def test_the_index_lists_every_notebook_by_its_title(site):
    index = parse(site / "index.html")
    assert index.anchors[:len(notebooks())] == [f"{path.stem}.html" for path in notebooks()]
    text = (site / "index.html").read_text(encoding="utf-8")
    for path in notebooks():
        title = course_html.title_of(nbformat.read(path, as_version=4))
        assert title and course_html.html.escape(title) in text, path.name
        assert (site / f"{path.stem}.html").exists()
    assert "student/index.html" in index.anchors
    assert parse(site / "student" / "index.html").anchors[:len(notebooks())] == [
        f"{path.stem}.html" for path in notebooks()]


def test_pages_hold_the_outputs_and_the_diagram(site):
    overview = parse(site / "00_overview.html")
    assert overview.images and all(src.startswith("data:image/") for src in overview.images)
    page = (site / "01_http_parser.html").read_text(encoding="utf-8")
    nb = nbformat.read(ROOT / "notebooks" / "01_http_parser.ipynb", as_version=4)
    printed = [output["text"].strip().splitlines()[0] for cell in nb.cells
               if cell.cell_type == "code" for output in cell.get("outputs", [])
               if output.get("output_type") == "stream" and output["text"].strip()]
    assert printed
    assert course_html.html.escape(printed[0], quote=False) in page
    links = parse(site / "02_request_response.html").anchors
    assert not [href for href in links if href.endswith(".ipynb")]


def test_student_pages_hold_the_stubs_not_the_solutions(site):
    page = (site / "student" / "01_http_parser.html").read_text(encoding="utf-8")
    text = re.sub(r"<[^>]+>", "", page)
    import html as stdlib_html
    text = stdlib_html.unescape(text)
    for exercise in student.stage_exercises("01"):
        assert exercise.message in text, exercise.id
        for line in exercise.region.lines:
            if len(line.strip()) > 30:
                assert line.strip() not in text, (exercise.id, line)
    solved = stdlib_html.unescape(re.sub(r"<[^>]+>", "", (site / "01_http_parser.html")
                                         .read_text(encoding="utf-8")))
    assert any(len(line.strip()) > 30 and line.strip() in solved
               for exercise in student.stage_exercises("01") for line in exercise.region.lines)
