"""Tests for the pure functions of the repository scripts in tools/ (not a package: loaded from their files).

tools/time_chapters.py: the markdown table of chapter times, the README block it rewrites and the
chapter list read from _toc.yml; tools/results_table.py: the percentage format and the results table.
No notebook is executed and the real README.md is never written.
"""
import json

import pytest
from conftest import load_tool


@pytest.fixture(scope="module")
def tc():
    return load_tool("time_chapters")


@pytest.fixture(scope="module")
def rt():
    return load_tool("results_table")


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


# ------------------------------------------------------------------------------- results_table


@pytest.mark.parametrize("value,text", [(None, "n/a"), (0.5, "50.0"), (0.98765, "98.8"), (1, "100.0"),
                                        (0.0, "0.0")])
def test_results_fmt_is_a_percentage(rt, value, text):
    assert rt.fmt(value) == text


def result(dataset, size, model, prior, image, pixel, pro, seconds="12.5", quantizer="vq",
           commit="0123456789abcdef-dirty"):
    return {"dataset": dataset, "config": {"model": {"image_size": size, "quantizer": quantizer}}, "model": model,
            "prior": prior, "image_auroc": image, "pixel_auroc": pixel, "pro": pro, "train_seconds": seconds,
            "train_git_commit": commit, "machine": "2 cores", "train_command": f"python -m pvqae_lib train --model {model}"}


def test_results_table_rows_from_the_json_files(rt, tmp_path):
    folder = tmp_path / "book" / "_static" / "results"
    folder.mkdir(parents=True)
    (folder / "b_vq.json").write_text(json.dumps(result("mtsd", 64, "vqvae", "none", 0.5, None, 0.25,
                                                        commit="fedcba9876543210")))
    (folder / "a_pv.json").write_text(json.dumps(result("synthetic", 32, "pvqae", "universal", 0.9123, 0.8, 0.7,
                                                        quantizer="lfq")))
    (folder / "fewshot.json").write_text(json.dumps({"dataset": "mtsd", "rows": []}))   # no image_auroc: skipped
    (folder / "notes.txt").write_text("not a result")
    lines = rt.table(folder).splitlines()
    assert lines[0].startswith("| file | data | model (prior) | image AUROC | pixel AUROC | PRO |")
    assert lines[2:4] == [
        "| a_pv.json | synthetic 32 px | pvqae-lfq (universal) | 91.2 | 80.0 | 70.0 | 12.5 | 0123456-dirty | 2 cores | "
        "`python -m pvqae_lib train --model pvqae` |",
        "| b_vq.json | mtsd 64 px | vqvae (none) | 50.0 | n/a | 25.0 | 12.5 | fedcba9 | 2 cores | "
        "`python -m pvqae_lib train --model vqvae` |",
    ]
    assert lines[4] == ""
    assert lines[5].startswith("AUROC and PRO in %")
    assert len(lines) == 6


def test_results_table_names_the_head_scorer(rt, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    r = result("synthetic", 64, "pvqae", "none", 0.9, 0.8, 0.7, quantizer="lfq")
    r["config"]["score"] = {"scorer": "head"}
    (folder / "h.json").write_text(json.dumps(r))
    assert "| pvqae-lfq (segmentation head) | 90.0 |" in rt.table(folder).splitlines()[2]


def test_results_table_rows_are_sorted_by_file_name(rt, tmp_path):
    folder = tmp_path / "book" / "_static" / "results"
    folder.mkdir(parents=True)
    names = ["m_3.json", "z_1.json", "a_9.json", "q_2.json", "c_7.json", "k_5.json"]
    for i, name in enumerate(names):
        (folder / name).write_text(json.dumps(result("synthetic", 32, "pvqae", "universal", i / 10, 0.5, 0.5)))
    rows = rt.table(folder).splitlines()[2:2 + len(names)]
    assert [row.split(" | ")[0] for row in rows] == [f"| {name}" for name in sorted(names)]


def test_results_table_without_results_is_the_header_and_note(rt, tmp_path):
    lines = rt.table(tmp_path).splitlines()
    assert len(lines) == 4 and lines[1].startswith("|---|") and lines[2] == ""


def test_benchmark_table_rows_and_ratio(rt, tmp_path):
    rows = [{"model": m, "image_size": s, "train_images_per_second": ips, "inference_ms_per_image": ms,
             "peak_memory_mb": mb} for m, s, ips, ms, mb in
            (("pvqae", 64, 50.0, 20.0, 500.4), ("vqvae", 64, 60.0, 4.0, 400.6), ("pvqae", 128, 15.0, 300.0, 900.0),
             ("vqvae", 128, 18.0, 12.345, 700.0))]
    (tmp_path / "benchmark_x.json").write_text(json.dumps(
        {"rows": rows, "step_ratio_pvqae_over_vqvae": {"64": 1.2, "128": 1.234}, "command": "python -m pvqae_lib benchmark",
         "git_commit": "abcdef0123", "machine": "2 cores", "device": "cpu", "profile": "quick", "steps": 10}))
    (tmp_path / "synthetic.json").write_text(json.dumps(result("synthetic", 32, "pvqae", "universal", 0.9, 0.8, 0.7)))
    lines = rt.benchmark_table(tmp_path).splitlines()
    assert lines[0].startswith("`benchmark_x.json`: `python -m pvqae_lib benchmark` (commit abcdef0,")
    assert lines[4:] == ["| pvqae | 64 | 50.00 | 20.0 | 500 | 1.20 |", "| vqvae | 64 | 60.00 | 4.0 | 401 |  |",
                         "| pvqae | 128 | 15.00 | 300.0 | 900 | 1.23 |", "| vqvae | 128 | 18.00 | 12.3 | 700 |  |"]
    assert rt.benchmark_table(tmp_path / "nothing") == "No benchmark JSON committed."

