"""Print the committed results (book/_static/results/*.json) as a markdown table, with provenance.

    .venv/bin/python tools/results_table.py [--write-readme]

Every number comes from the JSON files the CLI wrote; nothing here is typed by hand.
"""
import argparse
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- results -->", "<!-- /results -->"


def fmt(x):
    return "n/a" if x is None else f"{100 * x:.1f}"


def table() -> str:
    lines = ["| file | data | model (prior) | image AUROC | pixel AUROC | PRO | train s | machine | command |",
             "|---|---|---|---|---|---|---|---|---|"]
    for path in sorted((ROOT / "book/_static/results").glob("*.json")):
        r = json.loads(path.read_text())
        if "image_auroc" not in r:
            continue
        size = r["config"]["model"]["image_size"]
        lines.append(f"| {path.name} | {r['dataset']} {size} px | {r['model']} ({r['prior']}) | {fmt(r['image_auroc'])} | "
                     f"{fmt(r['pixel_auroc'])} | {fmt(r['pro'])} | {r['train_seconds']} | {r['machine']} | "
                     f"`{r['train_command']}` |")
    lines.append("\nAUROC and PRO in %, means over categories; commits and full configurations are in each JSON. "
                 "Train seconds were measured on a 2-core CPU shared with other jobs (load 3–8), so they are upper bounds.")
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    text = table()
    print(text)
    if args.write_readme:
        readme = ROOT / "README.md"
        s = readme.read_text()
        if START in s and END in s:
            head, rest = s.split(START, 1)
            readme.write_text(head + START + "\n" + text + "\n" + END + rest.split(END, 1)[1])
