"""Write what is generated from the committed results: the index ``book/_static/results/index.csv``,
the book's results page ``book/results.md``, the README's headline block and the tables of
``docs/status.md``.

    .venv/bin/python tools/results_pages.py           # or: make results
    .venv/bin/python tools/results_pages.py --check   # write nothing; exit 1 when a file is out of date

A repository script, not part of the package: the installed library only reads the results
(:mod:`pvqae_lib.runs.results`: the index, its queries and the seed statistics the chapters use), and
never the repository's pages. This script renders them: ``results_page`` -> ``book/results.md``,
``headline_table`` (rows chosen by ``HEADLINE``) -> the README's marked headline block,
``benchmark_table`` and ``feature_table`` -> docs/status.md. ``replace_block`` writes a marked
block of a markdown file (tools/time_chapters.py uses it too). It renders the files of the checkout
it sits in, with that checkout's library.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:            # this checkout's library, whatever else is installed
    sys.path.insert(0, str(ROOT))

from pvqae_lib.config import TrainConfig  # noqa: E402
from pvqae_lib.paths import RESULTS_DIR  # noqa: E402
from pvqae_lib.runs.results import (  # noqa: E402
    IDENTITY,
    INDEX_FILE,
    LITE0,
    LITE0_RUNS,
    PAPER_SCORE,
    PROFILE_TRAINING,
    PVQAE_S_RECON,
    QUICK_PIXEL,
    VQ64,
    ResultsError,
    bank,
    build_index,
    index_csv,
    lite0,
    one_configuration,
    seed_stats,
    seed_table,
    short_commit,
    where,
)

RESULTS = ROOT / RESULTS_DIR
TRAIN_DEFAULTS = TrainConfig()                 # the full table names only what a run changed from them
# what it writes, relative to the checkout (the index is RESULTS_DIR / INDEX_FILE)
PAGE_FILE, README_FILE = "book/results.md", "README.md"
STATUS_FILE = "docs/status.md"                 # holds the benchmark and feature blocks
PAGE = ROOT / PAGE_FILE
HEADLINE_MARKERS = ("<!-- headline -->", "<!-- /headline -->")
BENCHMARK_MARKERS = ("<!-- benchmark -->", "<!-- /benchmark -->")


def percent(x) -> str:
    """A fraction as a percentage with one decimal; 'n/a' for a missing value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f}"


def cell(text) -> str:
    """Text safe inside a markdown table cell (no raw '|', no line breaks)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def scoring(row) -> str:
    """How the run was scored: the segmentation head, or S with its prior (and its power when not 1,
    the code bank's level when not the router's, the code distance as S_recon); ', standardized'."""
    head = row["score.scorer"] == "head"
    text = "segmentation head" if head else f"S, prior {row['prior']}"
    power = row.get("score.prior_power")
    if not head and isinstance(power, float) and not pd.isna(power) and power != 1:
        text += f" ^{power:g}"
    route = row.get("score.route")
    if isinstance(route, str) and route != "router":
        text += ", mean of levels" if route == "mean" else f", {route} level"
    if not head and row.get("score.feature_score") == "code":
        text += ", code distance"
    standardized = row["standardized"]
    return text + (", standardized" if not pd.isna(standardized) and bool(standardized) else "")


def model_name(row) -> str:
    name = row["model.model"] + ("-lfq" if row["model.quantizer"] == "lfq" else "")
    if row.get("model.feature_model") == "bank":
        name = "pvqae code bank" if row["model.model"] == "pvqae" else f"memory bank ({row['model.bank_memory']})"
    if row["model.backbone"] != "pixel":
        name += f" on {row['model.backbone']}"
    return name


SUMMARY_COLUMNS = ("dataset", "model", "scoring", "px", "epochs", "seeds", "image AUROC", "pixel AUROC")


def summary_table(ev: pd.DataFrame) -> str:
    """One row per dataset and model: the model's best configuration there (the highest mean image
    AUROC over its seeds; the configuration is every IDENTITY column), mean ± std over the seeds, best
    first within each dataset, the synthetic data first."""
    best = {}
    for _, group in ev.groupby([c for c in IDENTITY if c in ev.columns], dropna=False, sort=False):
        r = group.iloc[0]
        key = (r["dataset"], model_name(r))
        mean = group["image_auroc"].astype(float).mean()
        if key not in best or mean > best[key][0]:
            best[key] = (mean, group)
    order = sorted(best.items(), key=lambda kv: (kv[0][0] != "synthetic", kv[0][0], -kv[1][0]))
    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|---" * len(SUMMARY_COLUMNS) + "|"]
    for (dataset, model), (_, group) in order:
        r = group.iloc[0]
        lines.append("| " + " | ".join(cell(x) for x in (
            DATASET_TITLES.get(dataset, dataset).split(" (")[0], model, scoring(r), int(r["image_size"]),
            int(r["train.epochs"]), len(group), mean_std(group["image_auroc"]), mean_std(group["pixel_auroc"]))) + " |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------- headline


@dataclass(frozen=True)
class Headline:
    """One row of the README's headline table: a pandas query over the index that must match the
    evaluations of ONE configuration (IDENTITY columns equal); its seeds are averaged."""
    label: str
    query: str
    paper: tuple[float, float] | None = None     # the paper's (image, pixel) AUROC for this setting


# The PVQAE paper (Cheng, Qu & Lee, arXiv 2501.09187) on MTSD: image / pixel AUROC.
PAPER_MTSD = (0.992, 0.965)

# The README's headline rows, in order (at most MAX_HEADLINE_ROWS). Add one with one line, e.g.
#   Headline("MTSD: PVQAE on EfficientNet-Lite0", where("dataset == 'mtsd'", "`model.backbone` == 'lite0'",
#            "`model.model` == 'pvqae'", PAPER_SCORE, "prior == 'universal'"), paper=PAPER_MTSD),
# A selector that matches nothing is skipped; one that matches two configurations is an error.
BANK_ROUTED = ("`score.route` == 'router'", "prior == 'none'", "`score.prior_power` == 1")
HEADLINE = [      # the working model first (chapter 8b), then the paper's settings
    Headline("MTSD, EfficientNet-Lite0 pyramid (book's extension): PVQAE codebooks as a memory bank, routed",
             bank("pvqae", *BANK_ROUTED, "not standardized"), paper=PAPER_MTSD),
    Headline("MTSD, EfficientNet-Lite0 pyramid: PVQAE codebooks as a memory bank, standardized",
             bank("pvqae", *BANK_ROUTED, "standardized")),
    Headline("MTSD, EfficientNet-Lite0 pyramid: memory bank of every coarse patch (no VQ), standardized",
             bank("membank", "`model.bank_memory` == 'all'", "standardized")),
    Headline("MTSD, EfficientNet-Lite0 pyramid: PatchCore (1 % coreset)",
             lite0("patchcore", "not standardized")),
    Headline("MTSD, EfficientNet-Lite0 pyramid: PatchCore, standardized",
             lite0("patchcore", "standardized")),
    Headline("MTSD, EfficientNet-Lite0 pyramid: PVQAE with a decoder, S_recon (no prior)",
             lite0("pvqae", "prior == 'none'", "not standardized")),
    Headline("MTSD, EfficientNet-Lite0 pyramid: PVQAE with a decoder, S with universal prior (the paper's score)",
             lite0("pvqae", "prior == 'universal'", "not standardized"), paper=PAPER_MTSD),
    Headline("MTSD, quick (10 epochs): pixel PVQAE, S with universal prior (the paper's setting)",
             where("dataset == 'mtsd'", QUICK_PIXEL, PROFILE_TRAINING, PAPER_SCORE, VQ64,
                   "`model.model` == 'pvqae'", "`train.epochs` == 10", "prior == 'universal'"), paper=PAPER_MTSD),
    Headline("Synthetic, quick (10 epochs): pixel PVQAE, S with universal prior",
             where("dataset == 'synthetic'", QUICK_PIXEL, PROFILE_TRAINING, PAPER_SCORE, VQ64,
                   "`model.model` == 'pvqae'", "`train.epochs` == 10", "prior == 'universal'")),
    Headline("Synthetic, quick (10 epochs): LFQUIAD (LFQ, restored anomalies with Eq. 2's SSIM term, head)",
             where("dataset == 'synthetic'", QUICK_PIXEL, "`model.quantizer` == 'lfq'", "`train.epochs` == 10",
                   "`score.scorer` == 'head'", "`train.restore_anomalies`", "`train.ssim_weight` > 0")),
]
MAX_HEADLINE_ROWS = 10


def select(index: pd.DataFrame, selector: Headline) -> pd.DataFrame:
    """The evaluate rows a selector matches; ValueError when they are not one configuration or
    repeat a seed."""
    rows = index[index["kind"] == "evaluate"].query(selector.query)
    return rows if rows.empty else one_configuration(rows, f"headline {selector.label!r}")


def mean_std(values: pd.Series) -> str:
    """'m' for one value, 'm ± s' (sample std) for several, in %."""
    values = values.dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return percent(values.iloc[0])
    return f"{percent(values.mean())} ± {100 * values.std(ddof=1):.1f}"


def headline_rows(index: pd.DataFrame, selectors=None) -> list[dict]:
    """One dict per selector that matches something; ValueError past MAX_HEADLINE_ROWS."""
    out = []
    for selector in HEADLINE if selectors is None else selectors:
        rows = select(index, selector)
        if rows.empty:
            continue
        seeds = sorted(int(s) for s in rows["train.seed"])
        out.append({"label": selector.label, "seeds": seeds, "files": list(rows["file"]),
                    "image": mean_std(rows["image_auroc"]), "pixel": mean_std(rows["pixel_auroc"]),
                    "pro": mean_std(rows["pro"]),
                    "paper": "n/a" if selector.paper is None else " / ".join(percent(x) for x in selector.paper)})
    if len(out) > MAX_HEADLINE_ROWS:
        raise ValueError(f"{len(out)} headline rows match, at most {MAX_HEADLINE_ROWS} fit the README: drop a selector")
    return out


def headline_table(index: pd.DataFrame, selectors=None) -> str:
    """The README's headline table (markdown): each selector's configuration, mean ± std over its
    seeds, and the paper's image / pixel AUROC where the paper reports that setting."""
    lines = ["| setting | seeds | image AUROC | pixel AUROC | PRO | paper (image / pixel) |",
             "|---|---|---|---|---|---|"]
    for r in headline_rows(index, selectors):
        seeds = ", ".join(map(str, r["seeds"]))
        lines.append(f"| {cell(r['label'])} | {seeds} | {r['image']} | {r['pixel']} | {r['pro']} | {r['paper']} |")
    lines.append("")
    lines.append("In %, means over categories; mean ± sample std over seeds where there are several. Generated by "
                 "`tools/results_pages.py` from `book/_static/results/index.csv` (rows chosen by "
                 "`HEADLINE` there); every run, with its configuration and commit, is in "
                 "`book/results.md`, and its commands in its JSON file.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- results page


DATASET_TITLES = {"synthetic": "Synthetic data (the embedded default)", "mtsd": "MTSD (magnetic tiles)",
                  "mvtec": "MVTec AD", "btad": "BTAD", "folder": "Your own folder"}


def training(row) -> str:
    """How the model was trained: image size and epochs, then what differs from the training
    defaults (``TrainConfig``: λmax, its schedule, feature noise), and LFQUIAD's restoration of
    synthetic anomalies (``train.restore_anomalies``) with the mean squared error alone or with
    Eq. 2's SSIM term (``train.ssim_weight`` > 0)."""
    parts = [f"{int(row['image_size'])} px, {int(row['train.epochs'])} epochs"]
    if row["train.lambda_max"] != TRAIN_DEFAULTS.lambda_max:
        parts.append(f"λmax {row['train.lambda_max']:g}")
    if row["train.schedule"] != TRAIN_DEFAULTS.schedule:
        parts.append(f"{row['train.schedule']} λ")
    noise = row["train.feature_noise"]
    if not pd.isna(noise) and noise != TRAIN_DEFAULTS.feature_noise:
        parts.append(f"feature noise {noise:g}")
    restore = row["train.restore_anomalies"]
    if not pd.isna(restore) and restore:
        weight = row["train.ssim_weight"]
        parts.append(f"restore, Eq. 2 (SSIM {weight:g})" if weight > 0 else "restore, MSE")
    return "; ".join(parts)


def seconds(x) -> str:
    """Seconds as a whole number; '' for a missing value."""
    return "" if x is None or pd.isna(x) else f"{x:.0f}"


def common_prefix(names) -> str:
    """The longest prefix ending in '_' that every name shares and that leaves each name something
    before its '.json' ('' for fewer than two names)."""
    names = list(names)
    if len(names) < 2:
        return ""
    prefix = os.path.commonprefix(names)
    prefix = prefix[:prefix.rfind("_") + 1]
    stems = [name.removesuffix(".json") for name in names]
    while prefix and any(len(stem) <= len(prefix) for stem in stems):
        prefix = prefix[:prefix[:-1].rfind("_") + 1]
    return prefix


def short_name(file: str, prefix: str) -> str:
    """``file`` without ``prefix`` and its '.json'."""
    return (file[len(prefix):] if file.startswith(prefix) else file).removesuffix(".json")


FULL_COLUMNS = ("run", "model: scoring", "training", "seed", "image AUROC", "pixel AUROC", "PRO", "commit")


# Settings the training column names where a run's differs from the usual one among the runs of its
# model and scoring in a table (all of them are in the index): (column, its text from a value).
VARYING = (("model.codebook_size", lambda v: f"K {v}"), ("model.width", lambda v: f"width {v}"),
           ("model.tau", lambda v: f"τ {v:g}"), ("model.vq_level", lambda v: f"VQ at level {v}"),
           ("train.augment", lambda v: "augmented" if v else "no augmentation"),
           ("head.enabled", lambda v: "with a head" if v else "no head"))


def varying(rows: pd.DataFrame) -> list[str]:
    """For each row, its VARYING settings that differ from the most common value among the rows of
    its model and scoring ('_model')."""
    out = pd.Series("", index=rows.index)
    for _, group in rows.groupby("_model", sort=False):
        usual = {c: group[c].astype(str).mode().iloc[0] for c, _ in VARYING}
        for i, r in group.iterrows():
            out[i] = "; ".join(text(r[c]) for c, text in VARYING if not pd.isna(r[c]) and str(r[c]) != usual[c])
    return list(out)


def full_table(rows: pd.DataFrame) -> str:
    """Every evaluation of ``rows`` (one dataset's) as a markdown table of FULL_COLUMNS, sorted by
    model (with its scoring), then its training (image size, epochs, the rest, and the VARYING
    settings that tell its runs apart) and seed, so that the seeds of one configuration sit
    together: the file's name (less the prefix all the files share and '.json', named in the line
    above the table), the model and its scoring, the training, the seed, the metrics and the
    commit. The commands and the rest of the configuration stay in the JSON files and the index."""
    rows = rows.assign(_model=[f"{model_name(r)}: {scoring(r)}" for _, r in rows.iterrows()],
                       _training=[training(r) for _, r in rows.iterrows()])
    rows = rows.assign(_training=[t + (f"; {v}" if v else "") for t, v in zip(rows["_training"], varying(rows))],
                       # the configuration's other settings, so that configurations the columns show alike
                       # still keep their seeds together
                       _rest=["|".join(map(str, v)) for v in rows[[c for c in IDENTITY if c in rows.columns]]
                              .itertuples(index=False)])
    rows = rows.sort_values(["_model", "image_size", "train.epochs", "_training", "_rest", "train.seed", "file"],
                            kind="stable")
    prefix = common_prefix(rows["file"])
    files = (f"Run `x` is the file `{prefix}x.json`." if prefix else "Run `x` is the file `x.json`.")
    lines = [files, "", "| " + " | ".join(FULL_COLUMNS) + " |", "|---" * len(FULL_COLUMNS) + "|"]
    for _, r in rows.iterrows():
        lines.append("| " + " | ".join(cell(x) for x in (
            short_name(r["file"], prefix), r["_model"], r["_training"], int(r["train.seed"]),
            percent(r["image_auroc"]), percent(r["pixel_auroc"]), percent(r["pro"]),
            short_commit(r["train_git_commit"]))) + " |")
    return "\n".join(lines)


def results_page(index: pd.DataFrame) -> str:
    """The book's results page (MyST markdown): every committed evaluation, grouped by dataset,
    then the other results files."""
    ev = index[index["kind"] == "evaluate"]
    parts = ["# Results index", "",
             "% Generated by `tools/results_pages.py` (make results) from book/_static/results/*.json: "
             "do not edit.", "",
             f"Every committed evaluation ({len(ev)} of the {len(index)} files in `book/_static/results/`), "
             "as `pvqae_lib.runs.results.load_index()` reads it from `book/_static/results/index.csv`: first a "
             "summary, "
             "then every run (unfold a dataset's list), one row each, by dataset, sorted by model (with "
             "its scoring), training and seed, so "
             "that the seeds of one configuration sit together. The first column names the run's JSON file (the "
             "line above each table gives the part of the name the table leaves out). AUROC and PRO in %, means "
             "over categories. *training*: image size and epochs, then what differs from the training defaults "
             f"(λmax {TRAIN_DEFAULTS.lambda_max:g} on a {TRAIN_DEFAULTS.schedule} schedule); `restore, MSE` is "
             "LFQUIAD's training on images with synthetic anomalies, rebuilt with the mean squared error alone, "
             "`restore, Eq. 2 (SSIM 0.5)` adds Eq. 2's SSIM term with that weight. *commit* is the commit of the "
             "code that trained the run. The train and evaluate commands, the training time, the full "
             "configuration and the machine of each run are not shown here: they are in its JSON file and in the "
             "index.",
             "", "## Summary: each model's best configuration", "",
             "One row per dataset and model: the configuration (scoring, image size, epochs and every other "
             "setting) with the highest mean image AUROC over its seeds, mean ± sample std over them, in %; best "
             "first. A row with one seed has no spread: its rank is not a finding.", "",
             summary_table(ev), ""]
    for dataset in sorted(ev["dataset"].unique(), key=lambda d: (d != "synthetic", d)):
        rows = ev[ev["dataset"] == dataset]
        machines = sorted(set(rows["machine"].dropna()))
        parts += [f"## {DATASET_TITLES.get(dataset, dataset)}", "",
                  f"{len(rows)} evaluations, trained and scored on: {'; '.join(machines)}.", "",
                  f"````{{dropdown}} Every run ({len(rows)})", full_table(rows), "````", ""]
    other = index[index["kind"] != "evaluate"]
    if len(other):
        parts += ["## Other results", "",
                  "Benchmark and few-shot results keep their own tables, and their commands, in their JSON files "
                  "(chapter 8 reads the benchmark, chapter 10 the few-shot results).", "",
                  f"````{{dropdown}} Every file ({len(other)})",
                  "| file | kind | dataset | seconds | commit |", "|---|---|---|---|---|"]
        for _, r in other.iterrows():
            dataset = r["dataset"] if isinstance(r["dataset"], str) else ""
            parts.append(f"| {cell(r['file'])} | {r['kind']} | {dataset} | {seconds(r['seconds'])} | "
                         f"{short_commit(r['git_commit'])} |")
        parts += ["````", ""]
    return "\n".join(parts)


# ------------------------------------------------------------------------------- benchmark


def benchmark_table(results: Path | str = RESULTS) -> str:
    """One markdown table per committed benchmark_*.json: both models at every size, the step ratio; and
    the feature backbones' rows (PVQAE, PatchCore) where the file has them."""
    parts = []
    for path in sorted(Path(results).glob("benchmark*.json")):
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
        if b.get("feature_rows"):            # feature backbones (benchmark --backbones): PVQAE and PatchCore
            na = lambda x, spec: "" if x is None else format(x, spec)   # noqa: E731
            lines += ["", "| backbone | model | px | extraction images/s | train images/s (cached features) | "
                      "coreset fit ms/image | scoring ms/image (extraction + model) | peak memory MB |",
                      "|---|---|---|---|---|---|---|---|"]
            for r in b["feature_rows"]:
                fit = r["fit_seconds_per_image"]
                lines.append(f"| {r['backbone']} | {r['model']} | {r['image_size']} | "
                             f"{r['extract_images_per_second']:.1f} | "
                             f"{na(r['train_images_per_second'], '.1f')} | "
                             f"{na(None if fit is None else fit * 1000, '.1f')} | "
                             f"{r['inference_ms_per_image']:.1f} | {r['peak_memory_mb']:.0f} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) or "No benchmark JSON committed."


# ------------------------------------------------------------------------------ README blocks


def replace_block(readme: Path, start: str, end: str, text: str) -> bool:
    """Put ``text`` between the markers ``start`` and ``end`` of ``readme``; False (file untouched)
    when the file or either marker is missing, or the markers are out of order."""
    readme = Path(readme)
    if not readme.is_file():
        return False
    content = readme.read_text()
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.S)
    if not pattern.search(content):
        return False
    readme.write_text(pattern.sub(lambda _: f"{start}\n{text}\n{end}", content, count=1))
    return True


# ------------------------------------------------------------------------------ the command


FEATURE_MARKERS = ("<!-- features -->", "<!-- /features -->")
# The MTSD runs on the EfficientNet-Lite0 pyramid (chapter 8b): {label: query over the index for its
# seeds (one configuration each, see results.seed_stats)}. An ablation varies one column from LITE0_RUNS.
FEATURE_GROUPS = {
    "PVQAE code bank, routed (no prior)": bank("pvqae", *BANK_ROUTED, "not standardized"),
    "PVQAE code bank, standardized": bank("pvqae", *BANK_ROUTED, "standardized"),
    "PVQAE code bank x S_prior (the paper's product)":
        bank("pvqae", "`score.route` == 'router'", "prior == 'universal'", "`score.prior_power` == 1"),
    "PVQAE code bank x S_prior^0.5": bank("pvqae", "prior == 'universal'", "`score.prior_power` == 0.5"),
    "PVQAE code bank, coarse level only": bank("pvqae", "`score.route` == 'coarse'"),
    "PVQAE code bank, middle level only": bank("pvqae", "`score.route` == 'middle'"),
    "PVQAE code bank, fine level only": bank("pvqae", "`score.route` == 'fine'"),
    "PVQAE code bank, mean of the levels": bank("pvqae", "`score.route` == 'mean'"),
    "memory bank of every coarse patch (no VQ)": bank("membank", "`model.bank_memory` == 'all'", "not standardized"),
    "memory bank of every coarse patch, standardized": bank("membank", "`model.bank_memory` == 'all'", "standardized"),
    "PVQAE, S = S_prior x S_recon (the paper's score)":
        lite0("pvqae", "prior == 'universal'", "not standardized"),
    "PVQAE, S_recon (no prior)": where(LITE0, PVQAE_S_RECON),
    "PVQAE, S_recon, standardized": lite0("pvqae", "prior == 'none'", "standardized"),
    "VQ-VAE (one level)": lite0("vqvae", "not standardized"),
    "VQ-VAE, standardized": lite0("vqvae", "standardized"),
    "plain autoencoder": lite0("ae", "not standardized"),
    "plain autoencoder, standardized": lite0("ae", "standardized"),
    "PatchCore": lite0("patchcore", "not standardized"),
    "PatchCore, standardized": lite0("patchcore", "standardized"),
    "PVQAE S_recon, constant λ": where(LITE0_RUNS, PVQAE_S_RECON, "`train.schedule` == 'constant'"),
    "PVQAE S_recon, cosine λ": where(LITE0_RUNS, PVQAE_S_RECON, "`train.schedule` == 'cosine'"),
    "PVQAE S_recon, λmax 0": where(LITE0_RUNS, PVQAE_S_RECON, "`train.lambda_max` == 0"),
    "PVQAE S_recon, λmax 2.5": where(LITE0_RUNS, PVQAE_S_RECON, "`train.lambda_max` == 2.5"),
    "PVQAE S_recon, LFQ": where(LITE0_RUNS, PVQAE_S_RECON, "`model.quantizer` == 'lfq'"),
    "PVQAE S_recon, feature noise 0.2": where(LITE0_RUNS, PVQAE_S_RECON, "`train.feature_noise` == 0.2"),
    "PVQAE, code distance as S_recon": where(LITE0_RUNS, PVQAE_S_RECON, "`score.feature_score` == 'code'"),
}


def feature_table(index: pd.DataFrame) -> str:
    """docs/status.md's table of the feature-pyramid runs: mean ± std over seeds (FEATURE_GROUPS)."""
    stats = seed_stats(FEATURE_GROUPS, index)
    if stats.empty:
        return "No feature-pyramid runs are committed."
    table = seed_table(stats)
    lines = ["| MTSD, EfficientNet-Lite0 pyramid | " + " | ".join(table.columns) + " |",
             "|---" * (len(table.columns) + 1) + "|"]
    lines += [f"| {cell(label)} | " + " | ".join(str(v) for v in row) + " |" for label, row in table.iterrows()]
    lines += ["", "In %; mean ± sample std over seeds; `training time (s)` is the mean training time on the shared "
              "2-core CPU. "
              "Generated by `tools/results_pages.py` (FEATURE_GROUPS there: one query over the results index "
              "per row)."]
    return "\n".join(lines)


def generated(root: Path | str = ROOT) -> tuple[list, list]:
    """What the script writes in the checkout ``root``: [(file, whole text)] for the index and the
    results page, and [(file, (start, end), block text)] for the marked blocks (README headline,
    docs/status.md benchmark and feature tables)."""
    root = Path(root)
    results_dir = root / RESULTS_DIR
    index = build_index(results_dir)
    files = [(results_dir / INDEX_FILE, index_csv(index)), (root / PAGE_FILE, results_page(index) + "\n")]
    blocks = [(root / README_FILE, HEADLINE_MARKERS, headline_table(index)),
              (root / STATUS_FILE, BENCHMARK_MARKERS, benchmark_table(results_dir)),
              (root / STATUS_FILE, FEATURE_MARKERS, feature_table(index))]
    return files, blocks


def stale(root: Path | str = ROOT) -> list[str]:
    """The generated files (and marked blocks) of ``root`` that differ from what the script would write now."""
    root = Path(root)
    files, blocks = generated(root)
    out = [str(p.relative_to(root)) for p, text in files if not p.is_file() or p.read_text() != text]
    for path, (start, end), text in blocks:
        if not path.is_file() or f"{start}\n{text}\n{end}" not in path.read_text():
            out.append(f"{path.relative_to(root)} {start}")
    return out


def write(root: Path | str = ROOT) -> None:
    """Write the index, the results page and the marked blocks of the checkout ``root``."""
    root = Path(root)
    files, blocks = generated(root)
    for path, text in files:
        path.write_text(text)
        print(f"wrote {path.relative_to(root)}")
    for path, (start, end), text in blocks:
        if replace_block(path, start, end, text):
            print(f"wrote the {start} block of {path.relative_to(root)}")
        else:
            print(f"{path.relative_to(root)}: no {start} ... {end} block, nothing written", file=sys.stderr)


def main(argv=None, root: Path | str = ROOT) -> int:
    """Write (or with ``--check`` only compare) the index, the results page and the marked blocks;
    exit 2 with one line naming the file when a result cannot be read."""
    ap = argparse.ArgumentParser(prog="tools/results_pages.py",
                                 description="Regenerate book/_static/results/index.csv, book/results.md, the "
                                             "README's headline block and docs/status.md's benchmark and feature "
                                             "blocks from the committed JSON files.")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a generated file is stale")
    args = ap.parse_args(argv)
    try:
        if args.check:
            out = stale(root)
            print("out of date: " + ", ".join(out) if out else "every generated results file is current")
            return 1 if out else 0
        write(root)
    except ResultsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
