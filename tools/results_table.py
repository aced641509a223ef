"""Print the committed results (book/_static/results/*.json) as markdown tables, with provenance:
detection results (from ``evaluate``) and the cost benchmark (from ``benchmark``).

    .venv/bin/python tools/results_table.py [--write-readme]

Every number comes from the JSON files the CLI wrote; nothing here is typed by hand. With
--write-readme the tables replace the README blocks between <!-- results --> ... <!-- /results -->
and <!-- benchmark --> ... <!-- /benchmark -->.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from readme_block import replace_block  # noqa: E402

from pvqae_lib.pipeline import RESULTS_DIR  # noqa: E402   (the one spelling of the results folder)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / RESULTS_DIR
START, END = "<!-- results -->", "<!-- /results -->"
BENCH_START, BENCH_END = "<!-- benchmark -->", "<!-- /benchmark -->"


def fmt(x):
    return "n/a" if x is None else f"{100 * x:.1f}"


def short_commit(sha: str | None) -> str:
    """The first 7 hex digits, keeping a '-dirty' mark (the code had uncommitted changes)."""
    if not sha:
        return "n/a"
    return sha[:7] + ("-dirty" if sha.endswith("-dirty") else "")


def table(results: Path = RESULTS) -> str:
    lines = ["| file | data | model (prior) | image AUROC | pixel AUROC | PRO | train s | commit | machine | command |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for path in sorted(results.glob("*.json")):
        r = json.loads(path.read_text())
        if "image_auroc" not in r:
            continue
        size = r["config"]["model"]["image_size"]
        model = r["model"] + ("-lfq" if r["config"]["model"].get("quantizer") == "lfq" else "")
        scorer = r["config"].get("score", {}).get("scorer", "pvqae")
        prior = ("segmentation head" if scorer == "head" else r["prior"]) + (", standardized" if r.get("standardized") else "")
        lines.append(f"| {path.name} | {r['dataset']} {size} px | {model} ({prior}) | {fmt(r['image_auroc'])} | "
                     f"{fmt(r['pixel_auroc'])} | {fmt(r['pro'])} | {r['train_seconds']} | "
                     f"{short_commit(r.get('train_git_commit'))} | {r['machine']} | `{r['train_command']}` |")
    lines.append("\nAUROC and PRO in %, means over categories; commits and full configurations are in each JSON. "
                 "Train seconds are wall time on the machine named; most runs shared its 2 cores with another run "
                 "(one thread each), so read them as upper bounds.")
    return "\n".join(lines)


def benchmark_table(results: Path = RESULTS) -> str:
    """One markdown table per committed benchmark_*.json: both models at every size, the step ratio."""
    parts = []
    for path in sorted(results.glob("benchmark*.json")):
        b = json.loads(path.read_text())
        ratio = b["step_ratio_pvqae_over_vqvae"]
        lines = [f"`{path.name}`: `{b['command']}` (commit {short_commit(b['git_commit'])}, {b['machine']}, "
                 f"{b['device']}, {b['profile']} profile widths, median of {b['steps']} steps)", "",
                 "| model | px | train images/s | scoring ms/image | peak memory MB | PVQAE step / VQ-VAE step |",
                 "|---|---|---|---|---|---|"]
        for r in b["rows"]:
            rel = f"{ratio[str(r['image_size'])]:.2f}" if r["model"] == "pvqae" else ""
            lines.append(f"| {r['model']} | {r['image_size']} | {r['train_images_per_second']:.2f} | "
                         f"{r['inference_ms_per_image']:.1f} | {r['peak_memory_mb']:.0f} | {rel} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) or "No benchmark JSON committed."


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write-readme", action="store_true")
    args = ap.parse_args()
    text, bench = table(), benchmark_table()
    print(text, bench, sep="\n\n")
    if args.write_readme:
        for start, end, block in ((START, END, text), (BENCH_START, BENCH_END, bench)):
            if not replace_block(ROOT / "README.md", start, end, block):
                print(f"README.md: no {start} ... {end} block, nothing written", file=sys.stderr)
