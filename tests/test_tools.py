"""Tests for the pure functions of the repository scripts in tools/ (not a package: loaded from their files).

tools/time_chapters.py: the markdown table of chapter times, the README block it rewrites and the
chapter list read from _toc.yml; tools/check_book.py's page checks and book/_ext/chapter_figures.py's
per-chapter figure numbers. (tools/results_pages.py, the results page and tables, is tested in
tests/test_results.py.) No notebook is executed and the real README.md is never written.
"""
import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]


def load_module(name, path):
    spec = importlib.util.spec_from_file_location(f"_test_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tc():
    return load_tool("time_chapters")


# --------------------------------------------------------------------------- time_chapters.table


@pytest.fixture
def fixed_machine(tc, monkeypatch):
    monkeypatch.setattr(tc, "machine", lambda: "THE MACHINE")


def body(text):
    """The table rows after the two header lines, as a list of lines."""
    lines = text.splitlines()
    assert lines[2:4] == ["| chapter | seconds | |", "| --- | ---: | --- |"]
    return lines[4:]


def test_table_header_names_profile_and_machine(tc, fixed_machine):
    text = tc.table([("01_intro", 1.0, None)], "quick")
    assert text.splitlines()[:2] == ["Measured by tools/time_chapters.py (quick profile) on THE MACHINE.", ""]
    assert "(full profile)" in tc.table([("01_intro", 1.0, None)], "full").splitlines()[0]


def test_table_marks_chapters_over_three_minutes(tc, fixed_machine):
    assert tc.LIMIT_CHAPTER == 180
    rows = [("01_fast", 12.34, None), ("02_limit", 180.0, None), ("03_slow", 180.06, None)]
    assert body(tc.table(rows, "quick")) == [
        "| 01_fast | 12.3 |  |",
        "| 02_limit | 180.0 |  |",                                  # at the limit is within budget
        "| 03_slow | 180.1 | over the 3 min budget |",
        "| **total** | **372.4** |  |",
    ]


def test_table_reports_failures_before_the_budget(tc, fixed_machine):
    rows = [("01_broken", 3.0, "CellExecutionError: boom"), ("02_slow_and_broken", 500.0, "TimeoutError: cell")]
    lines = body(tc.table(rows, "quick"))
    assert lines[0] == "| 01_broken | 3.0 | FAILED: CellExecutionError: boom |"
    assert lines[1] == "| 02_slow_and_broken | 500.0 | FAILED: TimeoutError: cell |"
    assert "over the 3 min budget" not in "\n".join(lines)


def test_warm_up_row_is_never_over_the_chapter_budget(tc, fixed_machine):
    rows = [(tc.WARM_ROW, 900.0, None), ("01_slow", 200.0, None)]
    lines = body(tc.table(rows, "quick"))
    assert lines[0] == f"| {tc.WARM_ROW} | 900.0 |  |"
    assert lines[1] == "| 01_slow | 200.0 | over the 3 min budget |"
    # ... but it is part of the book's total, and its failure is still reported
    assert lines[2] == "| **total** | **1100.0** |  |"
    failed = body(tc.table([(tc.WARM_ROW, 900.0, "exit status 1")], "quick"))
    assert failed[0] == f"| {tc.WARM_ROW} | 900.0 | FAILED: exit status 1 |"


def test_total_row_and_book_budget(tc, fixed_machine):
    assert tc.LIMIT_BOOK == 20 * 60
    within = body(tc.table([("a", 600.0, None), ("b", 600.0, None)], "quick"))
    assert within[-1] == "| **total** | **1200.0** |  |"
    over = body(tc.table([("a", 600.0, None), ("b", 600.25, "X: y")], "quick"))
    assert over[-1] == "| **total** | **1200.2** | over the 20 min budget |"
    assert body(tc.table([], "quick")) == ["| **total** | **0.0** |  |"]


# ---------------------------------------------------------------------- time_chapters.write_readme

README = """# Title

Intro text.

<!-- chapter-times -->
| old | table |
<!-- /chapter-times -->

## After
Closing text.
"""


def test_write_readme_replaces_only_the_marked_block(tc, tmp_path):
    assert (tc.START, tc.END) == ("<!-- chapter-times -->", "<!-- /chapter-times -->")
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert tc.write_readme("| new | table |\n| 1 | 2 |", readme) is True
    assert readme.read_text() == README.replace("| old | table |", "| new | table |\n| 1 | 2 |")
    # again: the block is replaced, not appended to
    assert tc.write_readme("second", readme) is True
    assert readme.read_text() == README.replace("| old | table |", "second")


def test_write_readme_text_is_literal(tc, tmp_path):
    """Backslashes and group references in the table are not regex replacement syntax."""
    readme = tmp_path / "README.md"
    readme.write_text(README)
    text = r"C:\new \1 \g<0> $1"
    assert tc.write_readme(text, readme) is True
    assert readme.read_text() == README.replace("| old | table |", text)


@pytest.mark.parametrize("content", [
    "# Title\n\nno markers at all\n",
    "# Title\n<!-- chapter-times -->\nonly the start marker\n",
    "# Title\nonly the end marker\n<!-- /chapter-times -->\n",
    "# Title\n<!-- /chapter-times -->\nin the wrong order\n<!-- chapter-times -->\n",
])
def test_write_readme_without_both_markers_writes_nothing(tc, tmp_path, content):
    readme = tmp_path / "README.md"
    readme.write_text(content)
    assert tc.write_readme("table", readme) is False
    assert readme.read_text() == content


def test_write_readme_missing_file(tc, tmp_path):
    readme = tmp_path / "README.md"
    assert tc.write_readme("table", readme) is False
    assert not readme.exists()


# ----------------------------------------------------------------- time_chapters.chapters_from_toc


def toc_book(tc, tmp_path, monkeypatch, files, toc_body=""):
    """A repository in tmp_path (tc.ROOT points there) with book/<files> and a _toc.yml rooted at
    book/intro plus ``toc_body``; returns (book folder, toc path)."""
    monkeypatch.setattr(tc, "ROOT", tmp_path)
    book = tmp_path / "book"
    book.mkdir()
    for name in files:
        (book / name).write_text("{}")
    toc = tmp_path / "_toc.yml"
    toc.write_text("format: jb-book\nroot: book/intro\n" + toc_body)
    return book, toc


def test_chapters_from_toc_in_toc_order_existing_notebooks_only(tc, tmp_path, monkeypatch):
    book, toc = toc_book(tc, tmp_path, monkeypatch, ("01_first.ipynb", "02_second.ipynb", "notes.md"),
                         "chapters:\n"
                         "  - file: book/02_second\n"
                         "  - title: a part without a file\n"
                         "  - file: book/01_first\n"
                         "  - file: book/03_missing\n"
                         "  - file: book/notes\n")
    assert tc.chapters_from_toc(toc) == [book / "02_second.ipynb", book / "01_first.ipynb"]


def test_chapters_from_toc_follows_parts_and_sections(tc, tmp_path, monkeypatch):
    """The same reader as check_book: chapters inside parts and sections are found, in order."""
    book, toc = toc_book(tc, tmp_path, monkeypatch, ("01_a.ipynb", "02_b.ipynb", "03_c.ipynb"),
                         "parts:\n"
                         "  - caption: One\n    chapters:\n      - file: book/02_b\n"
                         "        sections:\n          - file: book/03_c\n"
                         "  - caption: Two\n    chapters:\n      - file: book/01_a\n")
    assert tc.chapters_from_toc(toc) == [book / "02_b.ipynb", book / "03_c.ipynb", book / "01_a.ipynb"]


def test_chapters_from_toc_without_chapters(tc, tmp_path, monkeypatch):
    _, toc = toc_book(tc, tmp_path, monkeypatch, ())
    assert tc.chapters_from_toc(toc) == []


def test_chapters_from_the_repository_toc(tc):
    chapters = tc.chapters_from_toc()
    assert chapters, "no chapter notebook found from _toc.yml"
    assert all(p.suffix == ".ipynb" and p.is_file() and p.parent == tc.ROOT / "book" for p in chapters)
    assert len(set(chapters)) == len(chapters)


def test_check_book_counts_a_figure_not_drawn_for_want_of_data():
    cb = load_tool("check_book")
    note = ('<figure class="align-default" id="fig-x"><div class="output text_markdown"><p><em>MTSD is not on '
            'this machine, so this figure was not drawn (chapter 1 says how to get the data).</em></p></div>'
            '<figcaption>Figure 1</figcaption></figure>')
    other = '<figure class="align-default" id="fig-y"><img src="../_images/a.png"/></figure>'
    assert len(cb.NOT_DRAWN.findall(note + other)) == 1
    assert len(cb.NOT_DRAWN.findall(other + other)) == 0        # a figure with a picture is not a note


def test_figures_are_numbered_per_chapter():
    """book/_ext/chapter_figures.py renumbers Sphinx's book-wide figure numbers from 1 per chapter,
    in document order, with the chapter label of the file name (7b stays 7b)."""
    cf = load_module("chapter_figures", ROOT / "book" / "_ext" / "chapter_figures.py")
    assert [cf.chapter_label(d) for d in ("book/03_routing", "book/07b_evaluation",
                                          "book/10_synthetic_anomalies", "book/intro")] == ["3", "7b", "10", None]
    book_wide = {"book/07b_evaluation": {"figure": {"b": (12,), "a": (11,)}, "table": {"t": (4,)}},
                 "book/intro": {"figure": {"x": (1,)}}}
    assert cf.per_chapter(book_wide) == {"book/07b_evaluation": {"figure": {"a": ("7b", 1), "b": ("7b", 2)},
                                                                  "table": {"t": ("7b", 1)}},
                                         "book/intro": {"figure": {"x": (1,)}}}


def test_check_book_fails_figures_numbered_across_the_book(tmp_path):
    cb = load_tool("check_book")
    (tmp_path / "book").mkdir()
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/03_x\n")
    (tmp_path / "book" / "03_x.ipynb").write_text(json.dumps({"cells": [], "metadata": {}}))
    html = tmp_path / "html" / "book"
    html.mkdir(parents=True)
    (html / "intro.html").write_text("<article>intro</article>")
    figure = '<span class="caption-number">Fig. {} </span><img src="_images/a.png">'
    (html / "03_x.html").write_text("<article>" + figure.format("3.1") + figure.format("3.2") + "</article>")
    assert cb.check(tmp_path / "html", tmp_path)[0] == []
    (html / "03_x.html").write_text("<article>" + figure.format("9") + figure.format("10") + "</article>")
    assert cb.check(tmp_path / "html", tmp_path)[0] == ["book/03_x: figures not numbered per chapter (3.n): 9, 10"]


def _notebook(tmp_path, *cells):
    """A notebook of code cells given as (source, tags)."""
    path = tmp_path / "01_x.ipynb"
    path.write_text(json.dumps({"metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {"tags": list(tags)}, "outputs": [], "source": source}
        for source, tags in cells]}))
    return path


def test_source_check_finds_long_lines_shown_plotting_and_prose_cells(tmp_path):
    cb = load_tool("check_book")
    long = "x = 1  # " + "y" * 90 + "\n"
    plotting = "fig, ax = plt.subplots(1, 2)\nax[0].imshow(img)\nax[1].plot(curve)\nax[1].set_title('t')\n"
    prose = 'a = table.loc["x", "y"]\npv.book.say(f"It is {a:.1f}.")\npv.book.check(a > 0, "positive")\n'
    findings = cb.source_findings(_notebook(tmp_path, (long, []), (plotting, []), (prose, ["remove-input"])))
    assert findings == ["code cell 1: 1 line(s) over 88 columns (line 1)",
                        "code cell 2: plotting code shown (tag it hide-input)",
                        "code cell 3: exists only to write prose (Markdown with glued numbers)"]
    # folded code may plot but not be cut when unfolded; removed code may be long; a removed cell may
    # write what it likes; a cell that shows something else besides its sentence is not a prose cell
    assert cb.source_findings(_notebook(tmp_path, (plotting, ["hide-input"]), (long, ["remove-input"]),
                                        (prose, ["remove-cell"]), (prose + "display(table)\n", []))) == []
    assert cb.source_findings(_notebook(tmp_path, (long, ["hide-input"]))) == [
        "code cell 1: 1 line(s) over 88 columns (line 1)"]
    assert not cb.writes_only_prose("model = train()\nprint(model)\n")
    assert not cb.is_plotting("model = train()\nresult = evaluate(model)\nax.plot(result)\n")


def test_source_check_of_the_repository_chapters():
    """Every chapter passes the source rules, except those still listed as pending (which must exist,
    so that the list is emptied rather than left stale)."""
    cb = load_tool("check_book")
    failures, _ = cb.check_sources()
    assert failures == []
    names = {p.stem for p in (ROOT / "book").glob("*.ipynb")}
    assert set(cb.SOURCE_CHECK_PENDING) <= names


def test_concept_figures_are_current():
    """tools/concept_figures.py draws the same SVGs as the committed ones (deterministic output)."""
    cf = load_tool("concept_figures")
    assert cf.stale() == [], "run: python tools/concept_figures.py"


def test_page_metrics_reads_what_its_probe_wrote():
    pm = load_tool("page_metrics")
    metrics = {"height": 11975, "cut": [{"columns": 103, "start": "def f(x) -> int:"}]}
    dom = '<body data-metrics="' + json.dumps(metrics).replace("&", "&amp;").replace('"', "&quot;").replace(
        ">", "&gt;") + '"><article></article></body>'
    assert pm.parse(dom) == metrics
    assert pm.parse("<body></body>") is None
    assert "</body>" in pm.PROBE and "scrollHeight" in pm.PROBE


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_page_metrics_finds_cut_code_and_equations_that_run_into_their_number(tmp_path):
    """The probe in a real headless Chromium: a 600 px equation in a 400 px column and a code line wider
    than its block are reported; an equation that fits beside its number is not."""
    pm = load_tool("page_metrics")
    math = ('<div class="math" id="equation-{name}"><span class="eqno" style="float:right">(1)</span>'
            '<mjx-container style="display:block;overflow-x:auto"><svg width="{width}" height="20">'
            '</svg></mjx-container></div>')
    page = tmp_path / "page.html"
    page.write_text('<html><body><article style="width:400px">' + math.format(name="wide", width=600)
                    + math.format(name="fits", width=100)
                    + '<pre style="width:100px;overflow:auto">' + "x" * 80 + "</pre></article></body></html>")
    metrics = pm.measure(page, chromium=shutil.which("chromium"))
    assert metrics["math"] == ["equation-wide"]
    assert [c["columns"] for c in metrics["cut"]] == [80]
    assert not (tmp_path / "page.__metrics.html").exists()


# --------------------------------------------------------------------------- warm_cache
def test_warm_cache_fills_the_cores_on_a_cpu_and_trains_in_turn_on_a_gpu():
    wc = load_tool("warm_cache")
    assert wc.default_jobs("cpu", 2, 1) == 2          # make warm on the 2-core CI: both cores
    assert wc.default_jobs("cpu", 2, 2) == 1          # two threads per process already fill them
    assert wc.default_jobs("cpu", 16, 4) == 4
    assert wc.default_jobs("cpu", None, 1) == 1       # os.cpu_count() may be None
    assert wc.default_jobs("cuda", 16, 1) == 1        # one GPU: the models take turns
    with pytest.raises(SystemExit):
        wc.main(["--jobs", "0"])


def test_warm_cache_trains_every_shared_model_and_every_sweep_once():
    wc = load_tool("warm_cache")
    import pvqae_lib as pv
    work = wc.work_list()
    assert [(m, o) for _, m, o in work[:len(pv.book.BOOK_MODELS)]] == [tuple(x) for x in pv.book.BOOK_MODELS]
    assert [o for _, m, o in work if m == "sweep"] == list(pv.widgets.lam.sweep_settings())
    assert len({label for label, _, _ in work}) == len(work)
