"""Measure the built pages as a reader's browser lays them out: height and cut code blocks at 1280 px.

    .venv/bin/python tools/page_metrics.py [--html _build/html] [--width 1280] [PAGE ...]

For each page of _toc.yml (or the pages named, e.g. ``book/02_vq_vae_basics``) headless Chromium
loads the built HTML and reports the document's height and the code blocks of the page body
(``article pre``) whose text is wider than the block (cut at the right, or a scroll bar), and the
display equations wider than the column or running into their number. A page taller than
MAX_HEIGHT px, or with such an equation, fails (exit 1); cut blocks are listed (library listings folded with
hide-cell are among them: the library's own lines may be 120 columns). Needs Debian's chromium;
run after ``make book``. The measurement happens in a copy of the page beside it, removed after.
"""
from __future__ import annotations

import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
from check_book import toc_files  # noqa: E402

MAX_HEIGHT = 12_000   # px at 1280 px width (issue #31)
PROBE = """<script>window.addEventListener("load", () => setTimeout(() => {
  const cut = [];
  document.querySelectorAll("article pre").forEach(p => {
    if (p.scrollWidth > p.clientWidth + 1) {
      const lines = p.textContent.split("\\n");
      cut.push({columns: Math.max(...lines.map(l => l.length)), start: lines[0].slice(0, 40)});
    }
  });
  const math = [];
  document.querySelectorAll("article div.math").forEach(d => {
    const c = d.querySelector("mjx-container"), no = d.querySelector(".eqno");
    const m = c && c.querySelector(":scope > svg, :scope > mjx-math");
    if (!m) return;
    const r = m.getBoundingClientRect();
    if (c.scrollWidth > c.clientWidth + 1 || r.right > d.getBoundingClientRect().right + 1
        || (no && r.right > no.getBoundingClientRect().left - 2)) {
      math.push(d.id || d.textContent.slice(0, 40));
    }
  });
  document.body.setAttribute("data-metrics", JSON.stringify(
    {height: document.documentElement.scrollHeight, cut: cut, math: math}));
}, 3000))</script></body>"""
METRICS = re.compile(r'data-metrics="([^"]*)"')


def parse(dom: str) -> dict | None:
    """The metrics the probe wrote into the dumped DOM (None if it did not run)."""
    found = METRICS.search(dom)
    if found is None:
        return None
    return json.loads(html.unescape(found.group(1)))


def measure(page: Path, width: int = 1280, chromium: str = "chromium") -> dict | None:
    probe = page.with_name(page.stem + ".__metrics.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", PROBE, 1), encoding="utf-8")
    profile = tempfile.mkdtemp()
    try:
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              f"--user-data-dir={profile}", "--virtual-time-budget=15000",
                              f"--window-size={width},1600", "--dump-dom", probe.as_uri()],
                             capture_output=True, text=True, timeout=120).stdout
    finally:
        os.remove(probe)
        shutil.rmtree(profile, ignore_errors=True)
    return parse(dom)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--html", type=Path, default=ROOT / "_build" / "html")
    ap.add_argument("--width", type=int, default=1280)
    ap.add_argument("pages", nargs="*", help="pages as in _toc.yml (default: all)")
    args = ap.parse_args(argv)
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("page_metrics: chromium is missing (apt-get install -y chromium)", file=sys.stderr)
        return 2
    failures = 0
    for name in args.pages or toc_files(ROOT / "_toc.yml"):
        page = args.html / f"{name}.html"
        if not page.is_file():
            print(f"{name}: no page {page}")
            failures += 1
            continue
        metrics = measure(page, args.width, chromium)
        if metrics is None:
            print(f"{name}: not measured (the page did not load)")
            failures += 1
            continue
        tall = metrics["height"] > MAX_HEIGHT
        wide_math = metrics.get("math", [])
        failures += tall or bool(wide_math)
        cut = ", ".join(f"{c['columns']} col. '{c['start'].strip()}'" for c in metrics["cut"])
        print(f"{name}: {metrics['height']} px{' (over ' + str(MAX_HEIGHT) + ')' if tall else ''}; "
              f"{len(metrics['cut'])} cut code block(s){': ' + cut if cut else ''}"
              f"{'; equations too wide: ' + ', '.join(wide_math) if wide_math else ''}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
