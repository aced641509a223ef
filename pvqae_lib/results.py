"""The committed results as data: one generated index, and everything shown from it.

Every JSON file the command line committed to ``book/_static/results/`` becomes one row of a
pandas DataFrame (``build_index``), written to ``book/_static/results/index.csv``
(``write_index``) and read back by the chapters (``load_index``), e.g.

    from pvqae_lib.results import load_index
    idx = load_index()
    idx.query("dataset == 'synthetic' and `model.model` == 'pvqae' and `train.epochs` == 10")

Rule for the ``kind`` column: ``evaluate`` files (they hold ``image_auroc``) fill every column;
``benchmark`` and ``fewshot`` files (and any other shape, ``other``) get one row too, with their
provenance, but empty configuration and metric columns (their own tables are in their JSON, read by
chapters 8 and 10 and by ``benchmark_table``).

The same data makes the book's results page (``results_page`` -> ``book/results.md``), the README's
headline table (``headline_table``, rows chosen by ``HEADLINE``) and the benchmark table of
``docs/status.md`` (``benchmark_table``); ``replace_block`` writes a marked block of a markdown file
(tools/time_chapters.py uses it too). One command writes them all:

    .venv/bin/python -m pvqae_lib.results        # or: make results
    .venv/bin/python -m pvqae_lib.results --check  # exit 1 when a generated file is out of date
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .paths import RESULTS_DIR  # the one spelling of the results folder

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / RESULTS_DIR
INDEX_FILE = "index.csv"
PAGE = ROOT / "book" / "results.md"
README = ROOT / "README.md"
STATUS = ROOT / "docs" / "status.md"          # holds the benchmark block
HEADLINE_MARKERS = ("<!-- headline -->", "<!-- /headline -->")
BENCHMARK_MARKERS = ("<!-- benchmark -->", "<!-- /benchmark -->")

# (column, where in an evaluate JSON, default when absent). Dotted column names are the
# configuration's own (``config.model.quantizer`` -> ``model.quantizer``); use backticks for them
# in DataFrame.query.
CONFIG_COLUMNS = [
    ("dataset", ("dataset",), None),
    ("category", ("data", "category"), None),         # empty: every category of the dataset
    ("categories", None, None),                        # the evaluated categories, '+'-joined
    ("profile", ("profile",), None),
    ("image_size", ("config", "model", "image_size"), None),
    ("model.model", ("config", "model", "model"), None),
    ("model.backbone", ("config", "model", "backbone"), "pixel"),
    ("model.quantizer", ("config", "model", "quantizer"), "vq"),
    ("model.width", ("config", "model", "width"), None),
    ("model.codebook_size", ("config", "model", "codebook_size"), None),
    ("model.code_dim", ("config", "model", "code_dim"), None),
    ("model.tau", ("config", "model", "tau"), None),
    ("model.vq_level", ("config", "model", "vq_level"), None),
    ("train.epochs", ("config", "train", "epochs"), None),
    ("train.seed", ("config", "train", "seed"), None),
    ("train.lambda_max", ("config", "train", "lambda_max"), None),
    ("train.schedule", ("config", "train", "schedule"), None),
    ("train.augment", ("config", "train", "augment"), True),
    ("train.feature_noise", ("config", "train", "feature_noise"), 0.0),
    ("train.restore_anomalies", ("config", "train", "restore_anomalies"), False),
    ("head.enabled", ("config", "head", "enabled"), False),
    ("score.scorer", ("config", "score", "scorer"), "pvqae"),
    ("score.feature_score", ("config", "score", "feature_score"), "recon"),
    ("prior", ("prior",), None),
    ("standardized", ("standardized",), False),
]
METRIC_COLUMNS = ["image_auroc", "pixel_auroc", "pro", "image_auroc_pooled", "pixel_auroc_pooled", "pro_pooled",
                  "num_test"]
PROVENANCE_COLUMNS = ["device", "machine", "seconds", "train_seconds", "git_commit", "train_git_commit", "command",
                      "train_command"]
COLUMNS = (["file", "kind"] + [c for c, _, _ in CONFIG_COLUMNS] + METRIC_COLUMNS + PROVENANCE_COLUMNS)
BOOL_COLUMNS = ["train.augment", "train.restore_anomalies", "head.enabled", "standardized"]
FLOAT_COLUMNS = ["model.tau", "train.lambda_max", "train.feature_noise", "image_auroc", "pixel_auroc", "pro", "image_auroc_pooled",
                 "pixel_auroc_pooled", "pro_pooled", "seconds", "train_seconds"]
INT_COLUMNS = ["image_size", "model.width", "model.codebook_size", "model.code_dim", "model.vq_level", "train.epochs", "train.seed",
               "num_test"]
# What makes two evaluations the same configuration (so that their seeds may be averaged):
# everything but the seed, the files and the provenance. A head trained after the autoencoder
# (head.enabled) is part of it: such a run's autoencoder was trained again, on its own.
IDENTITY = [c for c, _, _ in CONFIG_COLUMNS if c not in ("train.seed", "categories")]


def _get(record: dict, path, default):
    for key in path:
        if not isinstance(record, dict) or key not in record or record[key] is None:
            return default
        record = record[key]
    return record


def kind_of(record: dict) -> str:
    if "image_auroc" in record:
        return "evaluate"
    if "step_ratio_pvqae_over_vqvae" in record:
        return "benchmark"
    if "shots" in record:
        return "fewshot"
    return "other"


def index_row(name: str, record: dict) -> dict:
    """One row of the index from one committed JSON file."""
    kind = kind_of(record)
    row = {c: None for c in COLUMNS}
    row.update(file=name, kind=kind, dataset=record.get("dataset"), profile=record.get("profile"))
    for c in PROVENANCE_COLUMNS:
        row[c] = record.get(c)
    if kind != "evaluate":
        return row
    for column, path, default in CONFIG_COLUMNS:
        if path is not None:
            row[column] = _get(record, path, default)
    if row["model.backbone"] == "pixel" and record.get("backbone"):   # a top-level record of it
        row["model.backbone"] = record["backbone"]
    row["categories"] = "+".join(c["category"] for c in record.get("per_category", [])) or None
    for c in METRIC_COLUMNS:
        row[c] = record.get(c)
    return row


def build_index(results_dir: Path | str = RESULTS) -> pd.DataFrame:
    """One row per ``*.json`` of ``results_dir``, sorted by file name, with the columns ``COLUMNS``."""
    rows = [index_row(p.name, json.loads(p.read_text())) for p in sorted(Path(results_dir).glob("*.json"))]
    return _typed(pd.DataFrame(rows, columns=COLUMNS))


def _text(column: pd.Series) -> pd.Series:
    """Text with NaN where empty: pandas' 'str' dtype (pandas >= 2.3), else objects."""
    try:
        return column.astype(pd.StringDtype(na_value=float("nan")))
    except TypeError:                                     # older pandas (e.g. a Colab image): no na_value
        return column.astype(object).where(column.notna(), float("nan"))


def _typed(index: pd.DataFrame) -> pd.DataFrame:
    """The same dtypes however the index was made: text as strings, flags as pandas' nullable
    booleans, counts as nullable integers (empty for non-evaluate rows), so that a query's ``not standardized`` is a logical, not a bitwise, negation."""
    for c in INT_COLUMNS:
        index[c] = index[c].astype("Int64")
    for c in FLOAT_COLUMNS:
        index[c] = index[c].astype("float64")
    for c in [c for c in COLUMNS if c not in INT_COLUMNS + FLOAT_COLUMNS + BOOL_COLUMNS]:
        index[c] = _text(index[c])
    for c in BOOL_COLUMNS:
        index[c] = index[c].map({True: True, False: False, "True": True, "False": False}).astype("boolean")
    return index


def index_csv(index: pd.DataFrame) -> str:
    """The index as CSV text (what ``write_index`` writes; deterministic, floats at full precision)."""
    return index.to_csv(index=False, lineterminator="\n")


def write_index(index: pd.DataFrame | None = None, path: Path | str | None = None,
                results_dir: Path | str = RESULTS) -> Path:
    """Write the index (built from ``results_dir`` when not given) to ``path`` (default
    ``results_dir/index.csv``); returns the path."""
    index = build_index(results_dir) if index is None else index
    path = Path(path) if path is not None else Path(results_dir) / INDEX_FILE
    path.write_text(index_csv(index))
    return path


def load_index(path: Path | str | None = None) -> pd.DataFrame:
    """The committed index as a DataFrame (booleans as booleans, empty cells as NaN/None)."""
    path = Path(path) if path is not None else RESULTS / INDEX_FILE
    return _typed(pd.read_csv(path))


# ------------------------------------------------------------------------------ formatting


def fmt(x) -> str:
    """A fraction as a percentage with one decimal; 'n/a' for a missing value."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f}"


def short_commit(sha) -> str:
    """The first 7 hex digits, keeping a '-dirty' mark (the code had uncommitted changes)."""
    if not isinstance(sha, str) or not sha:
        return "n/a"
    return sha[:7] + ("-dirty" if sha.endswith("-dirty") else "")


def cell(text) -> str:
    """Text safe inside a markdown table cell (no raw '|', no line breaks)."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def scoring(row) -> str:
    """How the run was scored: the segmentation head, or S with its prior; ', standardized'."""
    head = row["score.scorer"] == "head"
    text = "segmentation head" if head else f"S, prior {row['prior']}"
    return text + (", standardized" if row["standardized"] is True else "")


def model_name(row) -> str:
    name = row["model.model"] + ("-lfq" if row["model.quantizer"] == "lfq" else "")
    if row["model.backbone"] != "pixel":
        name += f" on {row['model.backbone']}"
    return name


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

# Conditions the selectors share (pandas query syntax; dotted columns in backticks).
QUICK_PIXEL = "profile == 'quick' and image_size == 64 and `model.backbone` == 'pixel'"
PROFILE_TRAINING = ("`train.lambda_max` == 1.25 and `train.schedule` == 'linear' and `model.tau` == 1.0 "
                    "and `train.augment`")
PAPER_SCORE = ("`score.scorer` == 'pvqae' and not standardized and not `head.enabled` "
               "and not `train.restore_anomalies`")                     # S = S_prior x S_recon, as the paper
VQ64 = "`model.quantizer` == 'vq' and `model.codebook_size` == 64"
# PVQAE on the frozen EfficientNet-Lite0 pyramid (chapter 8b), the profile's feature training
LITE0 = ("dataset == 'mtsd' and profile == 'quick' and `model.backbone` == 'efficientnet-lite0' "
         "and `train.lambda_max` == 1.25 and `train.schedule` == 'linear' and `train.feature_noise` == 0 "
         "and `model.quantizer` == 'vq' and `score.feature_score` == 'recon'")


def where(*conditions: str) -> str:
    """The conjunction of query conditions."""
    return " and ".join(f"({c})" for c in conditions)


# The README's headline rows, in order (at most MAX_HEADLINE_ROWS). Add one with one line, e.g.
#   Headline("MTSD: PVQAE on EfficientNet-Lite0", where("dataset == 'mtsd'", "`model.backbone` == 'lite0'",
#            "`model.model` == 'pvqae'", PAPER_SCORE, "prior == 'universal'"), paper=PAPER_MTSD),
# A selector that matches nothing is skipped; one that matches two configurations is an error.
HEADLINE = [
    Headline("Synthetic, quick (10 epochs): PVQAE, S with universal prior",
             where("dataset == 'synthetic'", QUICK_PIXEL, PROFILE_TRAINING, PAPER_SCORE, VQ64,
                   "`model.model` == 'pvqae'", "`train.epochs` == 10", "prior == 'universal'")),
    Headline("Synthetic, quick (10 epochs): VQ-VAE",
             where("dataset == 'synthetic'", QUICK_PIXEL, PROFILE_TRAINING, PAPER_SCORE, VQ64,
                   "`model.model` == 'vqvae'", "`train.epochs` == 10")),
    Headline("Synthetic, quick (10 epochs): LFQUIAD (LFQ, restored anomalies, head)",
             where("dataset == 'synthetic'", QUICK_PIXEL, "`model.quantizer` == 'lfq'", "`train.epochs` == 10",
                   "`score.scorer` == 'head'", "`train.restore_anomalies`")),
    Headline("Synthetic, 200 epochs: PVQAE, S with universal prior, standardized",
             where("dataset == 'synthetic'", QUICK_PIXEL, PROFILE_TRAINING, VQ64, "`score.scorer` == 'pvqae'",
                   "standardized", "`model.model` == 'pvqae'", "`train.epochs` == 200", "prior == 'universal'")),
    Headline("MTSD, quick (10 epochs): PVQAE, S with universal prior",
             where("dataset == 'mtsd'", QUICK_PIXEL, PROFILE_TRAINING, PAPER_SCORE, VQ64,
                   "`model.model` == 'pvqae'", "`train.epochs` == 10", "prior == 'universal'"), paper=PAPER_MTSD),
    Headline("MTSD, EfficientNet-Lite0 pyramid (book's extension): PVQAE, S with universal prior",
             where(LITE0, "`model.model` == 'pvqae'", "prior == 'universal'", "not standardized"), paper=PAPER_MTSD),
    Headline("MTSD, EfficientNet-Lite0 pyramid: PVQAE, S_recon (no prior)",
             where(LITE0, "`model.model` == 'pvqae'", "prior == 'none'", "not standardized")),
    Headline("MTSD, EfficientNet-Lite0 pyramid: PVQAE, S_recon, standardized",
             where(LITE0, "`model.model` == 'pvqae'", "prior == 'none'", "standardized")),
    Headline("MTSD, EfficientNet-Lite0 pyramid: PatchCore (1 % coreset)",
             where(LITE0, "`model.model` == 'patchcore'", "not standardized")),
    Headline("MTSD, EfficientNet-Lite0 pyramid: PatchCore, standardized",
             where(LITE0, "`model.model` == 'patchcore'", "standardized")),
]
MAX_HEADLINE_ROWS = 10


def select(index: pd.DataFrame, selector: Headline) -> pd.DataFrame:
    """The evaluate rows a selector matches; ValueError when they are not one configuration or
    repeat a seed."""
    rows = index[index["kind"] == "evaluate"].query(selector.query)
    if rows.empty:
        return rows
    differ = [c for c in IDENTITY if rows[c].astype(str).nunique() > 1]
    if differ:
        raise ValueError(f"headline {selector.label!r} matches more than one configuration (they differ in "
                         f"{', '.join(differ)}): {', '.join(rows['file'])}")
    if rows["train.seed"].duplicated().any():
        raise ValueError(f"headline {selector.label!r} matches one seed twice: {', '.join(rows['file'])}")
    return rows


def mean_std(values: pd.Series) -> str:
    """'m' for one value, 'm ± s' (sample std) for several, in %."""
    values = values.dropna()
    if values.empty:
        return "n/a"
    if len(values) == 1:
        return fmt(values.iloc[0])
    return f"{fmt(values.mean())} ± {100 * values.std(ddof=1):.1f}"


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
                    "paper": "n/a" if selector.paper is None else " / ".join(fmt(x) for x in selector.paper)})
    if len(out) > MAX_HEADLINE_ROWS:
        raise ValueError(f"{len(out)} headline rows match, at most {MAX_HEADLINE_ROWS} fit the README: drop a selector")
    return out


def headline_table(index: pd.DataFrame | None = None, selectors=None) -> str:
    """The README's headline table (markdown): each selector's configuration, mean ± std over its
    seeds, and the paper's image / pixel AUROC where the paper reports that setting."""
    index = load_index() if index is None else index
    lines = ["| setting | seeds | image AUROC | pixel AUROC | PRO | paper (image / pixel) |",
             "|---|---|---|---|---|---|"]
    for r in headline_rows(index, selectors):
        seeds = ", ".join(map(str, r["seeds"]))
        lines.append(f"| {cell(r['label'])} | {seeds} | {r['image']} | {r['pixel']} | {r['pro']} | {r['paper']} |")
    lines.append("")
    lines.append("In %, means over categories; mean ± sample std over seeds where there are several. Generated by "
                 "`python -m pvqae_lib.results` from `book/_static/results/index.csv` (rows chosen by "
                 "`HEADLINE` in `pvqae_lib/results.py`); every run, with its command and commit, is in "
                 "`book/results.md`.")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- results page


DATASET_TITLES = {"synthetic": "Synthetic data (the embedded default)", "mtsd": "MTSD (magnetic tiles)",
                  "mvtec": "MVTec AD", "btad": "BTAD", "folder": "Your own folder"}


def full_table(rows: pd.DataFrame) -> str:
    """Every evaluation of ``rows`` as a markdown table, with its provenance."""
    lines = ["| file | model | px | epochs | seed | λmax | schedule | scoring | image AUROC | pixel AUROC | PRO | "
             "train s | commit | train command |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _, r in rows.iterrows():
        lines.append("| " + " | ".join(cell(x) for x in (
            r["file"], model_name(r), int(r["image_size"]), int(r["train.epochs"]), int(r["train.seed"]),
            f"{r['train.lambda_max']:g}", r["train.schedule"], scoring(r), fmt(r["image_auroc"]),
            fmt(r["pixel_auroc"]), fmt(r["pro"]), r["train_seconds"], short_commit(r["train_git_commit"]),
            f"`{r['train_command']}`")) + " |")
    return "\n".join(lines)


def results_page(index: pd.DataFrame | None = None) -> str:
    """The book's results page (MyST markdown): every committed evaluation, grouped by dataset,
    then the other results files."""
    index = load_index() if index is None else index
    ev = index[index["kind"] == "evaluate"]
    parts = ["# Results index", "",
             "% Generated by `python -m pvqae_lib.results` from book/_static/results/*.json: do not edit.", "",
             f"Every committed evaluation ({len(ev)} of the {len(index)} files in `book/_static/results/`), "
             "one row each, as `pvqae_lib.results.load_index()` reads it from `book/_static/results/index.csv`. "
             "AUROC and PRO in %, means over categories. Train seconds are wall time on the machine that trained "
             "the run; most runs shared a 2-core CPU with another run, so read them as upper bounds. The full "
             "configuration, the evaluate command and the machine of each run are in its JSON file and in the index.",
             ""]
    for dataset in sorted(ev["dataset"].unique(), key=lambda d: (d != "synthetic", d)):
        rows = ev[ev["dataset"] == dataset]
        machines = sorted(set(rows["machine"].dropna()))
        parts += [f"## {DATASET_TITLES.get(dataset, dataset)}", "",
                  f"{len(rows)} evaluations, trained and scored on: {'; '.join(machines)}.", "",
                  full_table(rows), ""]
    other = index[index["kind"] != "evaluate"]
    if len(other):
        parts += ["## Other results", "",
                  "Benchmark and few-shot results keep their own tables in their JSON files "
                  "(chapter 8 reads the benchmark, chapter 10 the few-shot results).", "",
                  "| file | kind | dataset | seconds | commit | command |", "|---|---|---|---|---|---|"]
        for _, r in other.iterrows():
            dataset = r["dataset"] if isinstance(r["dataset"], str) else ""
            seconds = "" if pd.isna(r["seconds"]) else r["seconds"]
            parts.append(f"| {cell(r['file'])} | {r['kind']} | {dataset} | {seconds} | "
                         f"{short_commit(r['git_commit'])} | `{cell(r['command'])}` |")
        parts.append("")
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
                lines.append(f"| {r['backbone']} | {r['model']} | {r['image_size']} | {r['extract_images_per_second']:.1f} | "
                             f"{na(r['train_images_per_second'], '.1f')} | {na(None if fit is None else fit * 1000, '.1f')} | "
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
# The MTSD runs on the EfficientNet-Lite0 pyramid (chapter 8b): {label: file pattern of its seeds}
FEATURE_GROUPS = {
    "PVQAE, S = S_prior x S_recon (the paper's score)": "mtsd_lite0_pvqae_seed?.json",
    "PVQAE, S_recon (no prior)": "mtsd_lite0_pvqae_seed?_noprior.json",
    "PVQAE, S_recon, standardized": "mtsd_lite0_pvqae_seed?_noprior_std.json",
    "VQ-VAE (one level)": "mtsd_lite0_vqvae_seed?.json",
    "VQ-VAE, standardized": "mtsd_lite0_vqvae_seed?_std.json",
    "plain autoencoder": "mtsd_lite0_ae_seed?.json",
    "plain autoencoder, standardized": "mtsd_lite0_ae_seed?_std.json",
    "PatchCore": "mtsd_lite0_patchcore_seed?.json",
    "PatchCore, standardized": "mtsd_lite0_patchcore_seed?_std.json",
    "PVQAE S_recon, constant λ": "mtsd_lite0_pvqae_constant_seed?_noprior.json",
    "PVQAE S_recon, cosine λ": "mtsd_lite0_pvqae_cosine_seed?_noprior.json",
    "PVQAE S_recon, λmax 0": "mtsd_lite0_pvqae_lam0_seed?_noprior.json",
    "PVQAE S_recon, λmax 2.5": "mtsd_lite0_pvqae_lam2.5_seed?_noprior.json",
    "PVQAE S_recon, LFQ": "mtsd_lite0_pvqae_lfq_seed?_noprior.json",
    "PVQAE S_recon, feature noise 0.2": "mtsd_lite0_pvqae_noise_seed?_noprior.json",
    "PVQAE, code distance as S_recon": "mtsd_lite0_pvqae_seed?_code.json",
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
    lines += ["", "In %; mean ± sample std over seeds; `train s` is the mean training time on the shared 2-core CPU. "
              "Generated by `python -m pvqae_lib.results` (FEATURE_GROUPS in `pvqae_lib/results.py`)."]
    return "\n".join(lines)


def generated(results_dir: Path | str = RESULTS) -> tuple[list, list]:
    """What the command writes: [(file, whole text)] for the index and the results page, and
    [(file, (start, end), block text)] for the marked blocks (README headline, docs/status.md benchmark)."""
    index = build_index(results_dir)
    files = [(Path(results_dir) / INDEX_FILE, index_csv(index)), (PAGE, results_page(index) + "\n")]
    blocks = [(README, HEADLINE_MARKERS, headline_table(index)), (STATUS, BENCHMARK_MARKERS, benchmark_table(results_dir)),
              (STATUS, FEATURE_MARKERS, feature_table(index))]
    return files, blocks


def stale() -> list[str]:
    """The generated files (and marked blocks) that differ from what the command would write now."""
    files, blocks = generated()
    out = [str(p.relative_to(ROOT)) for p, text in files if not p.is_file() or p.read_text() != text]
    for path, (start, end), text in blocks:
        if not path.is_file() or f"{start}\n{text}\n{end}" not in path.read_text():
            out.append(f"{path.relative_to(ROOT)} {start}")
    return out


# --------------------------------------------------------------------------- seeds, for the chapters

def seed_stats(groups: dict, index: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean and sample std over seeds of each configuration: ``groups`` is {label: file pattern}
    (fnmatch, e.g. ``'mtsd_lite0_pvqae_seed?.json'``), one configuration per label, its seeds the
    files it matches. One row per label that matches something, indexed by label, with columns
    ``seeds``, ``files`` and ``<metric>_mean`` / ``<metric>_std`` (fractions; std 0 for one seed)."""
    import fnmatch
    index = load_index() if index is None else index
    rows = []
    for label, pattern in groups.items():
        hit = index[(index["kind"] == "evaluate") & index["file"].map(lambda f: fnmatch.fnmatch(f, pattern))]
        if hit.empty:
            continue
        row = {"label": label, "seeds": len(hit), "files": ", ".join(hit["file"])}
        for metric in ("image_auroc", "pixel_auroc", "pro", "train_seconds"):
            values = hit[metric].astype(float)
            row[f"{metric}_mean"] = values.mean()
            row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else 0.0
        rows.append(row)
    return pd.DataFrame(rows).set_index("label") if rows else pd.DataFrame()


def seed_table(stats: pd.DataFrame) -> pd.DataFrame:
    """``seed_stats`` as the table a chapter shows: 'mean ± std' in % per metric."""
    if stats.empty:
        return pd.DataFrame({"no committed runs match": []})
    def pm(row, metric):
        m, s = 100 * row[f"{metric}_mean"], 100 * row[f"{metric}_std"]
        return f"{m:.1f}" if row["seeds"] < 2 else f"{m:.1f} ± {s:.1f}"
    return pd.DataFrame({"seeds": stats["seeds"],
                         "image AUROC (%)": [pm(r, "image_auroc") for _, r in stats.iterrows()],
                         "pixel AUROC (%)": [pm(r, "pixel_auroc") for _, r in stats.iterrows()],
                         "PRO (%)": [pm(r, "pro") for _, r in stats.iterrows()],
                         "train s": [f"{r['train_seconds_mean']:.0f}" for _, r in stats.iterrows()]},
                        index=stats.index)


def beyond_spread(stats: pd.DataFrame, a: str, b: str, metric: str = "image_auroc") -> bool:
    """Whether two configurations' means differ by more than the sum of their seed spreads."""
    gap = abs(stats.loc[a, f"{metric}_mean"] - stats.loc[b, f"{metric}_mean"])
    return bool(gap > stats.loc[a, f"{metric}_std"] + stats.loc[b, f"{metric}_std"])


def compare(stats: pd.DataFrame, a: str, b: str, metric: str = "image_auroc") -> str:
    """One generated sentence: how ``a`` compares with ``b`` on ``metric``, and whether the
    difference is outside the seed spread (|Δmean| > std_a + std_b)."""
    name = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "pro": "PRO"}[metric]
    ma, mb = 100 * stats.loc[a, f"{metric}_mean"], 100 * stats.loc[b, f"{metric}_mean"]
    word = "above" if ma > mb else "below" if ma < mb else "equal to"
    if min(stats.loc[a, "seeds"], stats.loc[b, "seeds"]) < 2:
        spread = "one seed on one side: its spread is not measured, so this gap is not a finding"
    elif beyond_spread(stats, a, b, metric):
        spread = "a difference outside the seed spread"
    else:
        spread = "within the seed spread: these seeds do not separate them"
    return (f"{a}: {name} {ma:.1f} %, {word} {b} ({mb:.1f} %) by {abs(ma - mb):.1f} points, {spread} "
            f"({int(stats.loc[a, 'seeds'])} and {int(stats.loc[b, 'seeds'])} seeds).")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pvqae_lib.results",
                                 description="Regenerate book/_static/results/index.csv, book/results.md, the "
                                             "README's headline block and docs/status.md's benchmark block from "
                                             "the committed JSON files.")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when a generated file is stale")
    args = ap.parse_args(argv)
    if args.check:
        out = stale()
        print("out of date: " + ", ".join(out) if out else "every generated results file is current")
        return 1 if out else 0
    files, blocks = generated()
    for path, text in files:
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    for path, (start, end), text in blocks:
        if replace_block(path, start, end, text):
            print(f"wrote the {start} block of {path.relative_to(ROOT)}")
        else:
            print(f"{path.relative_to(ROOT)}: no {start} ... {end} block, nothing written", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
