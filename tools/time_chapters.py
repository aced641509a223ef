"""Execute every chapter notebook on a fresh kernel and print how long each one takes.

    .venv/bin/python tools/time_chapters.py                  # all chapters in _toc.yml, quick profile
    .venv/bin/python tools/time_chapters.py book/01_*.ipynb  # only these
    .venv/bin/python tools/time_chapters.py --write-readme   # also update README.md
    .venv/bin/python tools/time_chapters.py --fresh-cache    # train the shared models first, timed

With --fresh-cache the shared models are trained into a new, empty cache by tools/warm_cache.py
(timed, its own row in the table) before the chapters run, so the total is the whole book's cost
from nothing; without it the chapters use whatever cache $PVQAE_CACHE (or the default) holds.

Each notebook runs with nbclient in its own kernel, from the notebook's folder (as the book build
does), with PVQAE_PROFILE=quick unless --profile says otherwise. The output is a markdown table of
seconds per chapter and the total, with the machine it was measured on (the time budget: each chapter at
most 3 min and the book at most 20 min on a 2-core CPU). With --write-readme the table replaces the
block between the markers <!-- chapter-times --> and <!-- /chapter-times --> in README.md, if both
markers are there. A failing chapter is reported in the table and makes the exit status 1.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

sys.path.insert(0, str(Path(__file__).resolve().parent))
from check_book import toc_files  # noqa: E402
from results_pages import replace_block  # noqa: E402

from pvqae_lib.runs.folder import machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- chapter-times -->", "<!-- /chapter-times -->"
WARM_ROW = "shared models (tools/warm_cache.py, fresh cache)"
LIMIT_CHAPTER, LIMIT_BOOK = 180, 20 * 60  # seconds, quick profile on a 2-core CPU (the time budget)


def chapters_from_toc(toc_path: Path = ROOT / "_toc.yml") -> list[Path]:
    """The notebooks listed in _toc.yml, in reading order (check_book reads the same list)."""
    return [ROOT / f"{f}.ipynb" for f in toc_files(toc_path) if (ROOT / f"{f}.ipynb").is_file()]


def run(path: Path, timeout: int) -> tuple[float, str | None]:
    """Execute one notebook on a fresh kernel; return (seconds, error message or None)."""
    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    try:
        client.execute()
    except Exception as e:  # CellExecutionError, timeouts, dead kernels: report and go on
        first = str(e).strip().splitlines()
        return time.perf_counter() - start, f"{type(e).__name__}: {first[-1] if first else ''}"[:200]
    return time.perf_counter() - start, None


def warm(timeout: int) -> tuple[float, str | None]:
    """Train the shared models with tools/warm_cache.py (as ``make warm``); (seconds, error or None)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "warm_cache.py")], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)
    seconds = time.perf_counter() - start
    sys.stderr.write(done.stdout)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return seconds, last[:200]
    return seconds, None


def table(rows: list[tuple[str, float, str | None]], profile: str) -> str:
    total = sum(seconds for _, seconds, _ in rows)
    lines = [f"Measured by tools/time_chapters.py ({profile} profile) on {machine()}.", "",
             "| chapter | seconds | |", "| --- | ---: | --- |"]
    for name, seconds, error in rows:
        over = seconds > LIMIT_CHAPTER and name != WARM_ROW
        note = f"FAILED: {error}" if error else ("over the 3 min budget" if over else "")
        lines.append(f"| {name} | {seconds:.1f} | {note} |")
    note = "over the 20 min budget" if total > LIMIT_BOOK else ""
    lines.append(f"| **total** | **{total:.1f}** | {note} |")
    return "\n".join(lines)


def write_readme(text: str, readme: Path = ROOT / "README.md") -> bool:
    """Replace the marked block of README.md with ``text``; False when the markers are missing."""
    return replace_block(readme, START, END, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every chapter in _toc.yml")
    parser.add_argument("--profile", default="quick", choices=["quick", "full"])
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell (as the build)")
    parser.add_argument("--write-readme", action="store_true",
                        help=f"replace the block between {START} and {END} in README.md")
    parser.add_argument("--fresh-cache", action="store_true",
                        help="train the shared models into a new empty cache first, and time it")
    args = parser.parse_args(argv)

    os.environ["PVQAE_PROFILE"] = args.profile  # inherited by every kernel started below
    notebooks = [p.resolve() for p in args.notebooks] or chapters_from_toc()
    rows = []
    if args.fresh_cache:
        os.environ["PVQAE_CACHE"] = tempfile.mkdtemp(prefix="pvqae_times_")
        print(f"training the shared models into {os.environ['PVQAE_CACHE']} ...", file=sys.stderr, flush=True)
        rows.append((WARM_ROW, *warm(timeout=LIMIT_BOOK * 3)))
    for path in notebooks:
        print(f"running {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ...",
              file=sys.stderr, flush=True)
        seconds, error = run(path, args.timeout)
        rows.append((path.stem, seconds, error))
    text = table(rows, args.profile)
    print(text)
    if args.write_readme:
        if write_readme(text):
            print(f"README.md: table written between {START} and {END}", file=sys.stderr)
        else:
            print(f"README.md: no {START} ... {END} block, nothing written", file=sys.stderr)
    return 1 if any(error for _, _, error in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
