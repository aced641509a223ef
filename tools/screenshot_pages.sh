#!/usr/bin/env bash
# Screenshot every page of the built book (intro, chapters, bibliography) with headless Chromium,
# into _build/screens/<page>.png, to look at what a reader sees: math typeset (not raw TeX),
# figures legible, widgets drawn. Run after `make book`. Needs Debian's chromium
# (apt-get install -y chromium). Usage: tools/screenshot_pages.sh [WIDTHxHEIGHT]   (default 1280x1600)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-1280x1600}
html=_build/html
out=_build/screens
[[ -d $html/book ]] || { echo "screenshot_pages: no $html/book; run make book first" >&2; exit 1; }
command -v chromium >/dev/null || { echo "screenshot_pages: chromium missing (apt-get install -y chromium)" >&2; exit 1; }
mkdir -p "$out"
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
pages=$(.venv/bin/python -c 'import sys; sys.path.insert(0, "tools"); import check_book; print(" ".join(check_book.toc_files(check_book.ROOT / "_toc.yml")))')
for page in $pages; do
    file="$html/$page.html"
    [[ -f $file ]] || { echo "missing $file" >&2; continue; }
    png="$out/$(basename "$page").png"
    # --virtual-time-budget lets the deferred MathJax and the widget manager finish before the shot.
    chromium --headless --no-sandbox --disable-gpu --disable-background-networking \
        --disable-component-update --disable-sync --no-first-run --user-data-dir="$profile" \
        --hide-scrollbars --virtual-time-budget=10000 --window-size="${size/x/,}" \
        --screenshot="$png" "file://$PWD/$file" 2>/dev/null
    echo "$png"
done
