"""The course as static HTML pages that work offline: a USB stick, a classroom without internet.

    python tools/html.py OUT                              # OUT/index.html + one page per notebook
    python tools/html.py OUT --student --stage 01 [...]   # also OUT/student/: a student edition's

Pages are nbconvert's ``lab`` template with everything it would fetch from a CDN left out
(require.js, MathJax, mermaid.js: no notebook here needs them); its stylesheet is inlined, code
is highlighted by Pygments' inline CSS, and images (outputs and markdown attachments, such as
notebook 00's diagram) are embedded as ``data:`` URIs. So a page loads nothing at all: every
``src``/``href`` is a ``data:`` URI, a relative link or a link the reader follows (``<a>``),
and no CSS ``url()`` or ``@import`` points elsewhere. Links between notebooks
(``01_http_parser.ipynb``) point to their pages.

The student pages come from a student edition written by ``tools/student.py`` into a temporary
directory (the chosen stages without their solutions and without their outputs).
"""
from __future__ import annotations

import os
import sys

if __name__ == "html":
    # Imported as the standard library's `html` (something put tools/ first on sys.path, as
    # tools/execute.py does): put the standard library's in its place, so that whoever asked
    # gets `html.escape` and `html.parser`, and this module's code below imports it too.
    import importlib.machinery
    import importlib.util
    _here = os.path.dirname(os.path.abspath(__file__))
    _spec = importlib.machinery.PathFinder.find_spec(
        "html", [p for p in sys.path if os.path.abspath(p or os.curdir) != _here])
    sys.modules["html"] = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(sys.modules["html"])

# Run as `python tools/html.py`, this file's directory comes first on the path, where this
# file would hide the standard library's `html` (which nbconvert imports too).
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    del sys.path[0]

import argparse  # noqa: E402
import html  # noqa: E402
import importlib.util
import re  # noqa: E402
import tempfile  # noqa: E402
from html.parser import HTMLParser  # noqa: E402
from pathlib import Path  # noqa: E402

import nbformat  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"

# A template that is the lab template minus the blocks that load scripts from the network.
TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block body_header -%}
{{ super() }}
<nav class="course-nav"><a href="index.html">Contents</a></nav>
{%- endblock body_header -%}
"""

STYLE = """
body { max-width: 64rem; margin: 0 auto; padding: 1rem; font-family: system-ui, sans-serif; }
nav.course-nav { margin: 0.5rem 0 1rem; }
ol.course-toc li { margin: 0.3rem 0; }
pre.mermaid-source { background: #f5f5f5; padding: 0.5rem; }
"""


def _load_student():
    spec = importlib.util.spec_from_file_location("_html_student_tool",
                                                  Path(__file__).with_name("student.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def title_of(nb) -> str:
    """The notebook's first markdown heading (its title), without the # marks."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("#"):
                    return line.lstrip("#").strip()
    return ""


def _exporter():
    from nbconvert import HTMLExporter
    from jinja2 import DictLoader

    exporter = HTMLExporter(template_name="lab", embed_images=True,
                            extra_loaders=[DictLoader({"offline.html.j2": TEMPLATE})])
    exporter.template_file = "offline.html.j2"
    return exporter


_NOTEBOOK_LINK = re.compile(r'href="(?!https?:|//)([^"#]*?)\.ipynb(#[^"]*)?"')
_MERMAID = re.compile(r'<div class="jp-Mermaid">.*?</div>', re.DOTALL)


def render(path: Path, exporter=None) -> tuple[str, str]:
    """(title, the page) of one notebook."""
    nb = nbformat.read(path, as_version=4)
    exporter = exporter or _exporter()
    body, _ = exporter.from_notebook_node(nb, resources={"metadata": {"name": path.stem}})
    body = _NOTEBOOK_LINK.sub(lambda m: f'href="{m.group(1)}.html{m.group(2) or ""}"', body)
    body = body.replace("</head>", f"<style>{STYLE}</style>\n</head>", 1)
    return title_of(nb) or path.stem, body


def index_page(title: str, entries: list[tuple[str, str]], extra: str = "") -> str:
    items = "\n".join(f'<li><a href="{html.escape(href)}">{html.escape(name)}</a></li>'
                      for href, name in entries)
    return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n<ol class=\"course-toc\">\n{items}\n</ol>\n{extra}"
            "</body>\n</html>\n")


def build(out: Path, notebooks: Path = NOTEBOOKS, title: str = "lowserver: the course",
          extra: str = "") -> list[Path]:
    """Write every notebook of `notebooks` as a page in `out`, and `out/index.html`."""
    out.mkdir(parents=True, exist_ok=True)
    exporter = _exporter()
    entries, written = [], []
    for path in sorted(notebooks.glob("[0-9][0-9]*.ipynb")):
        name, page = render(path, exporter)
        target = out / f"{path.stem}.html"
        target.write_text(page, encoding="utf-8")
        entries.append((target.name, name))
        written.append(target)
    index = out / "index.html"
    index.write_text(index_page(title, entries, extra), encoding="utf-8")
    return [index, *written]


def build_course(out: Path, student_stages: list[str] | None = None) -> list[Path]:
    """The course's pages in `out`, and a student edition's in `out/student` if asked."""
    extra = ""
    if student_stages:
        extra = ('<p><a href="student/index.html">Student edition (stages '
                 f'{html.escape(", ".join(student_stages))})</a></p>\n')
    written = build(out, extra=extra)
    if student_stages:
        student = _load_student()
        with tempfile.TemporaryDirectory() as scratch:
            edition = student.write_edition(student_stages, Path(scratch) / "edition")
            written += build(out / "student", edition.out / "notebooks",
                             title=f"lowserver: student edition, stages {', '.join(student_stages)}",
                             extra='<p><a href="../index.html">The course</a></p>\n')
    return written


# --- the check: nothing a page loads is fetched from elsewhere ------------------------------

_CSS_URL = re.compile(r"url\(\s*(['\"]?)([^)'\"]*)\1\s*\)|@import\s+(?:url\()?\s*['\"]?([^'\");\s]+)",
                      re.IGNORECASE)


def _remote(reference: str) -> bool:
    """A reference that would be fetched from the network (or the file system's root)."""
    reference = reference.strip()
    lowered = reference.lower()
    if lowered.startswith(("data:", "#", "about:")) or not reference:
        return False
    return bool(re.match(r"^[a-z][a-z0-9+.-]*:", lowered)) or reference.startswith(("/", "\\"))


class _Collector(HTMLParser):
    """The references of a page a browser would load: (tag, attribute, value)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.loads: list[tuple[str, str, str]] = []
        self.styles: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if value is None:
                continue
            if name in ("src", "srcset", "data", "poster", "background", "xlink:href") or (
                    name == "href" and tag != "a"):
                self.loads.append((tag, name, value))
            elif name == "style":
                self.styles.append(value)
        self._in_style = tag == "style"

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "style":
            self._in_style = False

    def handle_data(self, data):
        if self._in_style:
            self.styles.append(data)


def remote_loads(page: str) -> list[str]:
    """Everything in `page` that would be loaded from the network: empty when offline-safe."""
    collector = _Collector()
    collector.feed(page)
    collector.close()
    found = [f"<{tag} {name}={value[:80]!r}>" for tag, name, value in collector.loads
             if any(_remote(part.split()[0]) for part in value.split(",") if part.strip())
             or _remote(value)]
    for css in collector.styles:
        for match in _CSS_URL.finditer(css):
            reference = match.group(2) if match.group(2) is not None else match.group(3)
            if match.group(0).lower().startswith("@import") or _remote(reference or ""):
                found.append(f"css {match.group(0)[:80]!r}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="html.py", description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="the directory to write the pages into")
    parser.add_argument("--student", action="store_true",
                        help="also write a student edition's pages into OUT/student")
    parser.add_argument("--stage", action="append", default=[],
                        help="a stage of the student edition (with --student); repeat for more")
    args = parser.parse_args(argv)
    if args.stage and not args.student:
        parser.error("--stage goes with --student")
    stages = None
    if args.student:
        student = _load_student()
        try:
            stages = student.resolve_stages(args.stage, not args.stage)
        except student.UsageError as error:
            print(f"html.py: error: {error}", file=sys.stderr)
            return 2
    written = build_course(args.out, stages)
    size = sum(path.stat().st_size for path in written)
    print(f"wrote {len(written)} pages ({size / 1e6:.1f} MB) to {args.out}; "
          f"open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
