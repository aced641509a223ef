"""Renew the table of ``train``'s config flags in docs/command_line.md from the library.

    .venv/bin/python tools/settings_table.py           # write the block between the markers
    .venv/bin/python tools/settings_table.py --check   # write nothing; exit 1 when it is out of date

The table is :func:`pvqae_lib.flags.settings_table` (the package makes it, and never writes the
repository); this script puts it between ``BEGIN`` and ``END`` of docs/command_line.md of the
checkout it sits in. tests/test_cli_flags.py checks that the committed table is current.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:            # this checkout's library, whatever else is installed
    sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_pages import replace_block  # noqa: E402

from pvqae_lib.flags import settings_table  # noqa: E402

DOC = ROOT / "docs" / "command_line.md"
BEGIN, END = "<!-- train settings: begin (tools/settings_table.py) -->", "<!-- train settings: end -->"


def current(path: Path | str = DOC) -> bool:
    """Whether ``path`` holds today's table between the markers."""
    path = Path(path)
    return path.is_file() and f"{BEGIN}\n{settings_table()}\n{END}" in path.read_text()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tools/settings_table.py",
                                 description="Renew the table of train's config flags in docs/command_line.md.")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when the table is out of date")
    ap.add_argument("--doc", type=Path, default=DOC,
                    help="the markdown file holding the markers (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.check:
        ok = current(args.doc)
        print("the settings table is current" if ok else f"out of date: {args.doc}")
        return 0 if ok else 1
    if not replace_block(args.doc, BEGIN, END, settings_table()):
        print(f"{args.doc}: no {BEGIN} ... {END} block, nothing written", file=sys.stderr)
        return 1
    print(f"wrote the settings table of {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
