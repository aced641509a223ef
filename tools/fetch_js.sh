#!/usr/bin/env bash
# Fetch the JavaScript the built book needs to render offline, from npm, into
# book/_vendor/_static/offline/ (book/_vendor/ is gitignored). _config.yml lists book/_vendor in
# html_extra_path, so Sphinx copies it over the output root and the files land in
# _build/html/_static/offline/, which is where Sphinx resolves the relative mathjax_path and
# nb_ipywidgets_js entries (both are taken relative to _static/):
#   offline/mathjax/tex-svg.js          MathJax 3 (TeX input, SVG output) and the extensions it autoloads
#   offline/jupyter-widgets/embed.js    @jupyter-widgets/html-manager's standalone embed bundle (no
#                                       require.js needed), with the font files it references
# Why not html_static_path: Jupyter Book injects every .js file of every html_static_path folder
# into every page as soon as a top-level _static/ folder exists; html_extra_path is never scanned.
# `npm pack` downloads only the two package tarballs (no dependency tree, no node_modules).
# A second run with the same versions does nothing, so `make book` stays fast and works offline
# once the files are present.
set -euo pipefail

MATHJAX_VERSION=3.2.2
HTML_MANAGER_VERSION=1.0.15   # ipywidgets 8.1.x asks for html-manager ^1.0.1

cd "$(dirname "$0")/.."
dest=book/_vendor/_static/offline
stamp="$dest/.versions"
want="mathjax@$MATHJAX_VERSION @jupyter-widgets/html-manager@$HTML_MANAGER_VERSION"

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -f "$dest/mathjax/tex-svg.js" \
      && -f "$dest/jupyter-widgets/embed.js" ]]; then
    echo "fetch_js: $want already in $dest"
    exit 0
fi
command -v npm >/dev/null || { echo "fetch_js: npm is required (apt-get install npm)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetch_js: npm pack $want"
(cd "$work" && npm pack --silent "mathjax@$MATHJAX_VERSION" \
    "@jupyter-widgets/html-manager@$HTML_MANAGER_VERSION" >/dev/null 2>npm.log) \
    || { cat "$work/npm.log" >&2; echo "fetch_js: npm pack failed" >&2; exit 1; }
mkdir -p "$work/mathjax" "$work/html-manager"
tar xzf "$work/mathjax-$MATHJAX_VERSION.tgz" -C "$work/mathjax" --strip-components=1
tar xzf "$work/jupyter-widgets-html-manager-$HTML_MANAGER_VERSION.tgz" -C "$work/html-manager" \
    --strip-components=1

rm -rf "$dest"
mkdir -p "$dest/mathjax" "$dest/jupyter-widgets"
# MathJax: the combined TeX+SVG component plus what it loads on demand (TeX extensions such as
# \boldsymbol, the menu, accessibility and speech). The CommonHTML output and its web fonts are
# not needed: the SVG output carries its own glyphs.
es5="$work/mathjax/es5"
cp "$es5/tex-svg.js" "$dest/mathjax/"
cp -r "$es5/input" "$es5/ui" "$es5/a11y" "$es5/sre" "$dest/mathjax/"
cp "$work/mathjax/LICENSE" "$dest/mathjax/"
# html-manager: the embed bundle and the fonts/images its CSS refers to (no source maps).
find "$work/html-manager/dist" -maxdepth 1 -type f ! -name '*.map' ! -name '*amd*' \
    -exec cp {} "$dest/jupyter-widgets/" \;
cp "$work/html-manager/LICENSE" "$dest/jupyter-widgets/" 2>/dev/null || true
echo "$want" > "$stamp"
echo "fetch_js: wrote $(du -sh "$dest" | cut -f1) to $dest"
