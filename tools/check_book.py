"""Check a built book (_build/html) after `jupyter-book build .`; exit 1 with a list of failures.

    .venv/bin/python tools/check_book.py [--html _build/html]

For every chapter notebook in _toc.yml, its page _build/html/<file>.html must
  1. exist;
  2. show no error: no "Traceback" anywhere, no myst-nb traceback output (class "output traceback")
     and no stderr output (class "output stderr": warnings, plain-tqdm progress bars, logging);
  3. show at least MIN_FIGURES figures: <img> tags of the page body that point to the built images
     (_images/) or embed them (data:image/...), plus inline <svg> outputs of cells.
A notebook whose metadata has {"pvqae": {"placeholder": true}} is a placeholder chapter: it is
exempt from rule 3 (and listed as such); remove the flag when the chapter is written.
  4. number its figures per chapter: every caption number reads "Fig. <chapter>.<n>" with the
     chapter's label from its file name (book/_ext/chapter_figures.py assigns them).
Every other page of _toc.yml (intro, bibliography) must exist and show no traceback, and the
bibliography page must list at least one entry.

The chapters' sources (no build needed; also run alone by ``--sources``):
  5. no line of a code cell whose code a reader can see, at once or by unfolding it (every cell
     but remove-cell / remove-input ones), is longer than MAX_COLUMNS: the page cuts it (the book's
     CSS sets code at a size where 88 columns fit the text column at 1280 px);
  6. a code cell shown unfolded (not tagged remove-cell, remove-input, hide-input or hide-cell) is
     not mostly plotting code: plotting cells carry hide-input (the figure shows, the matplotlib
     code folds);
  7. the cell does not exist only to write prose: a cell whose only effect is ``pv.book.say(...)``
     belongs in Markdown, with its numbers glued (``pv.book.glue`` in a remove-cell cell). This rule
     looks at every cell whose output a reader sees (remove-input hides the code, not the prose).
Chapters listed in SOURCE_CHECK_PENDING are being rewritten (issue #31): their findings are reported
as notes, not failures. Empty the list as each chapter is converted.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "book" / "_ext"))
from chapter_figures import chapter_label  # noqa: E402  (the book's extension: one definition)

MIN_FIGURES = 2
TRACEBACK_MARKERS = {
    # any "Traceback", except the token name in the Pygments CSS that IPython's Code display embeds
    "a Python traceback": re.compile(r"(?<!Generic\.)\bTraceback\b"),
    "an error output cell": re.compile(r'class="[^"]*\boutput traceback\b'),
    "a stderr output cell": re.compile(r'class="[^"]*\boutput stderr\b'),
}
# Page body only: the theme's logos and launch-button icons sit outside <article>.
ARTICLE = re.compile(r"<article[^>]*>(.*)</article>", re.S)
FIGURE_IMG = re.compile(r'<img\b[^>]*\bsrc="(?:[^"]*_images/|data:image/)[^"]*"', re.I)
INLINE_SVG = re.compile(r'<div class="output text_html"><svg\b|<div class="output image_svg', re.I)
# A numbered figure whose data is not on the building machine (MTSD beside a clean clone) holds this
# note instead of a picture (chapters 3, 4, 8, 8b); it counts as a figure of the page, and is reported.
NOT_DRAWN = re.compile(r"<figure\b(?:(?!</figure>).)*?this figure was not drawn", re.S | re.I)
CAPTION_NUMBER = re.compile(r'<span class="caption-number">[^<0-9]*([0-9][0-9a-z.]*?)\.?\s*</span>')
BIB_ENTRY = re.compile(r'role="doc-biblioentry"')  # one per entry (sphinxcontrib-bibtex 2.x)


MAX_COLUMNS = 88
HIDDEN_INPUT_TAGS = {"remove-cell", "remove-input", "hide-input", "hide-cell"}
HIDDEN_OUTPUT_TAGS = {"remove-cell", "remove-output"}
REMOVED_INPUT_TAGS = {"remove-cell", "remove-input"}
# A plotting line: a call on a figure or axes object, or of pyplot.
PLOTTING_LINE = re.compile(
    r"^\s*(?:\w+\s*=\s*)?(?:plt|fig|ax|axs|axes|ax\d|cbar|cax)\b\s*[.\[]"
    r"|\.(?:plot|imshow|bar|barh|hist|scatter|legend|set_\w+|tick_params|colorbar|annotate|axhline|axvline"
    r"|fill_between|subplots|tight_layout|suptitle|grid|text|errorbar|contour|contourf|axis)\(")
PLOTTING_MIN_LINES, PLOTTING_SHARE = 3, 0.5
PROSE_CALLS = {"say"}                     # pv.book.say(...): a sentence written by code
HARMLESS_CALLS = {"say", "check", "glue"}  # calls that show nothing else
# Chapters not yet rewritten for issue #31 (prose in Markdown with glued numbers, code lines wrapped,
# plotting hidden): their source findings are reported, not failed. Remove each as it is converted.
SOURCE_CHECK_PENDING: tuple = ()   # every chapter is converted


def _called_name(call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def writes_only_prose(source: str) -> bool:
    """Does this code exist only to write prose: it calls ``say`` and nothing else that shows or
    does something (assignments feeding the sentence, ``check`` and ``glue`` calls aside)?"""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)]
    said = any(_called_name(c) in PROSE_CALLS for c in calls)
    if not said:
        return False
    for node in tree.body:
        if isinstance(node, (ast.Import, ast.ImportFrom, ast.Assign, ast.AnnAssign, ast.AugAssign,
                             ast.For, ast.If, ast.Pass, ast.FunctionDef)):
            continue
        if (isinstance(node, ast.Expr) and isinstance(node.value, ast.Call)
                and _called_name(node.value) in HARMLESS_CALLS):
            continue
        return False
    # statements nested in loops and branches: only harmless calls as expressions
    return all(_called_name(n.value) in HARMLESS_CALLS for n in ast.walk(tree)
               if isinstance(n, ast.Expr) and isinstance(n.value, ast.Call))


def is_plotting(source: str) -> bool:
    code = [line for line in source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    plotting = [line for line in code if PLOTTING_LINE.search(line)]
    return len(plotting) >= PLOTTING_MIN_LINES and len(plotting) >= PLOTTING_SHARE * len(code)


def source_findings(notebook: Path) -> list[str]:
    """Rules 5-7 for one chapter notebook: one line per finding (cell number = its place among the
    code cells, from 1)."""
    findings = []
    code_cells = [c for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code"]
    for number, cell in enumerate(code_cells, 1):
        tags = set(cell.get("metadata", {}).get("tags", []))
        source = "".join(cell["source"])
        if not tags & HIDDEN_OUTPUT_TAGS and writes_only_prose(source):
            findings.append(f"code cell {number}: exists only to write prose (Markdown with glued numbers)")
        if tags & REMOVED_INPUT_TAGS:
            continue
        long = [i for i, line in enumerate(source.splitlines(), 1) if len(line) > MAX_COLUMNS]
        if long:
            findings.append(f"code cell {number}: {len(long)} line(s) over {MAX_COLUMNS} columns "
                            f"(line {', '.join(map(str, long[:4]))})")
        if tags & HIDDEN_INPUT_TAGS:
            continue
        if is_plotting(source):
            findings.append(f"code cell {number}: plotting code shown (tag it hide-input)")
    return findings


def check_sources(root: Path = ROOT) -> tuple[list[str], list[str]]:
    """Rules 5-7 for every chapter of _toc.yml: (failures, notes)."""
    failures, notes = [], []
    for file in toc_files(root / "_toc.yml"):
        notebook = root / f"{file}.ipynb"
        if not notebook.is_file():
            continue
        findings = source_findings(notebook)
        pending = Path(file).name in SOURCE_CHECK_PENDING
        for finding in findings:
            (notes if pending else failures).append(f"{file}: {finding}" + (" (pending)" if pending else ""))
    return failures, notes


def toc_files(toc_path: Path) -> list[str]:
    """Every file of _toc.yml (root first), as paths without suffix, relative to the book root."""
    toc = yaml.safe_load(toc_path.read_text())
    files = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                files.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))

    walk(toc.get("chapters"))
    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    return files


def is_placeholder(notebook: Path) -> bool:
    meta = json.loads(notebook.read_text()).get("metadata", {})
    return bool(meta.get("pvqae", {}).get("placeholder"))


def count_figures(html: str) -> int:
    match = ARTICLE.search(html)
    body = match.group(1) if match else html
    return len(FIGURE_IMG.findall(body)) + len(INLINE_SVG.findall(body))


def check(html_dir: Path, root: Path = ROOT) -> tuple[list[str], list[str]]:
    """Return (failures, notes)."""
    failures, notes = [], []
    if not html_dir.is_dir():
        return [f"{html_dir} does not exist: build the book first (make book)"], notes
    for file in toc_files(root / "_toc.yml"):
        page = html_dir / f"{file}.html"
        notebook = root / f"{file}.ipynb"
        if not page.is_file():
            failures.append(f"{file}: page {page.relative_to(root) if page.is_relative_to(root) else page} is missing")
            continue
        html = page.read_text(encoding="utf-8", errors="replace")
        for what, pattern in TRACEBACK_MARKERS.items():
            hits = len(pattern.findall(html))
            if hits:
                failures.append(f"{file}: page shows {what} ({hits}x)")
        if notebook.is_file():
            figures = count_figures(html)
            if is_placeholder(notebook):
                notes.append(f"{file}: placeholder chapter ({figures} figures), figure check skipped")
            else:
                not_drawn = len(NOT_DRAWN.findall(html))
                absent = f" and {not_drawn} not drawn for want of data" if not_drawn else ""
                if figures + not_drawn < MIN_FIGURES:
                    failures.append(f"{file}: {figures} figure(s){absent}, at least {MIN_FIGURES} expected")
                else:
                    notes.append(f"{file}: ok, {figures} figures{absent}")
            label = chapter_label(file)
            numbers = CAPTION_NUMBER.findall(html)
            wrong = [n for n in numbers if label and n.split(".")[0] != label]
            if wrong:
                failures.append(f"{file}: figures not numbered per chapter ({label}.n): "
                                + ", ".join(wrong[:5]))
        if Path(file).name == "bibliography":
            entries = len(BIB_ENTRY.findall(html))
            if entries == 0:
                failures.append(f"{file}: the bibliography lists no entries")
            else:
                notes.append(f"{file}: ok, {entries} entries")
    source_failures, source_notes = check_sources(root)
    return failures + source_failures, notes + source_notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built HTML folder")
    parser.add_argument("--sources", action="store_true", help="check the chapters' sources only (rules 5-7)")
    args = parser.parse_args(argv)
    failures, notes = check_sources() if args.sources else check(args.html.resolve())
    for note in notes:
        print(f"  {note}")
    if failures:
        print(f"check_book: {len(failures)} failure(s):", file=sys.stderr)
        for failure in failures:
            print(f"  FAIL {failure}", file=sys.stderr)
        return 1
    print("check_book: all pages ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
