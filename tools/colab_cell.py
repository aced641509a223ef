"""Write the Colab set-up cell at the top of every chapter (``make colab-cells``; a test checks it is current).

The cell clones the book's repository on Colab, so the committed results and trained models come
with it (a ``pip install`` of the library alone would leave the chapters without them), installs the
library from that clone (keeping Colab's torch: the requirement is ``torch>=2.1`` with no upper
bound), fetches MTSD with the library's verified downloader into /content/data and points
``$PVQAE_MTSD`` (read by ``pv.paths.mtsd_root``) at it, so the real-tile sections run, and runs the
chapter from its folder. Anywhere else it does nothing (tests/test_colab_cell.py runs it both in a
simulated Colab and off it). The
repository's URL and branch are read from ``_config.yml``, the one place that holds them.

    python tools/colab_cell.py          # rewrite the cells that differ
    python tools/colab_cell.py --check  # exit 1 naming the chapters whose cell is missing or stale
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TAG = "colab-setup"
# The inline installer the chapters carried before this cell existed (removed where found).
OLD_INSTALL = re.compile(r'if "google\.colab" in sys\.modules:  # on Colab only: install the book\'s library\n'
                         r'    import subprocess\n    subprocess\.run\(\[.*?\],\n\s*check=True\)\n\n?', re.S)


def repository() -> tuple[str, str]:
    """(url, branch) of ``repository:`` in _config.yml (read as text: no YAML library needed)."""
    text = (ROOT / "_config.yml").read_text()
    block = re.search(r"^repository:\n((?:[ \t]+.*\n)+)", text, re.M)
    if block is None:
        raise SystemExit("_config.yml has no repository: block")
    fields = dict(re.findall(r"^\s+(\w+):\s*(\S+)", block.group(1), re.M))
    return fields["url"], fields.get("branch", "main")


def cell_source() -> str:
    url, branch = repository()
    return (
        "# Colab only: clone the book's repository (its committed results and models come with\n"
        "# it), install its library, fetch MTSD for the real-tile sections and run from the\n"
        "# chapter's folder. Elsewhere this cell does nothing.\n"
        "# (Written by tools/colab_cell.py from _config.yml, the one place that holds the URL.)\n"
        "import os\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    repo, home = "{url}", "/content/pvqae-book"\n'
        "    if not os.path.isdir(home):\n"
        f'        subprocess.run(["git", "clone", "--depth", "1", "--branch", "{branch}",\n'
        "                        repo, home], check=True)\n"
        "        # torch>=2.1 with no upper bound: pip keeps the torch Colab installed\n"
        '        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", home],\n'
        "                       check=True)\n"
        "    sys.path.insert(0, home)\n"
        '    os.chdir(f"{home}/book")\n'
        "    import pvqae_lib as pv\n"
        "\n"
        "    # MTSD by the library's verified downloader (size, archive test, safe unpacking);\n"
        "    # a second run finds it unpacked and returns at once\n"
        '    os.environ["PVQAE_MTSD"] = str(pv.data.download("mtsd", "/content/data"))'
    )


def chapters() -> list[Path]:
    return sorted(ROOT.glob("book/[0-9]*.ipynb"))


def updated(nb: dict) -> dict:
    """The notebook with the set-up cell first among its code cells and the old installer removed."""
    cells = [c for c in nb["cells"] if TAG not in c.get("metadata", {}).get("tags", [])]
    setup = {"cell_type": "code", "execution_count": None, "id": "colab-setup",
             "metadata": {"tags": [TAG, "hide-input"]}, "outputs": [], "source": cell_source().splitlines(True)}
    for c in cells:
        if c["cell_type"] == "code":
            src = OLD_INSTALL.sub("", "".join(c["source"]))
            if src.startswith("import sys\n") and "sys." not in src[len("import sys\n"):]:
                src = src[len("import sys\n"):].lstrip("\n")     # only the old installer used it
            c["source"] = src.splitlines(True)
    first_code = next(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    cells.insert(first_code, setup)
    return {**nb, "cells": cells}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a chapter's cell is stale")
    args = ap.parse_args(argv)
    stale = []
    for path in chapters():
        nb = json.loads(path.read_text())
        new = updated(nb)
        if new != nb:
            stale.append(path.name)
            if not args.check:
                path.write_text(json.dumps(new, indent=1, ensure_ascii=False) + "\n")
    if args.check:
        print("stale Colab cell: " + ", ".join(stale) if stale else "every chapter's Colab cell is current")
        return 1 if stale else 0
    print(f"rewrote {len(stale)} chapter(s)" + (": " + ", ".join(stale) if stale else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
