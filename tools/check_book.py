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
"""
from __future__ import annotations

import argparse
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
    return failures, notes


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "_build" / "html", help="the built HTML folder")
    args = parser.parse_args(argv)
    failures, notes = check(args.html.resolve())
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
