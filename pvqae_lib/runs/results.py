"""The committed results as data: one generated index, its queries and the seed statistics.

Every JSON file the command line committed to ``book/_static/results/`` becomes one row of a
pandas DataFrame (``build_index``; ``index_csv`` is its text), committed as
``book/_static/results/index.csv`` and read back by the chapters (``load_index``), e.g.

    from pvqae_lib.results import load_index
    idx = load_index()
    idx.query("dataset == 'synthetic' and `model.model` == 'pvqae' and `train.epochs` == 10")

Rule for the ``kind`` column: ``evaluate`` files (they hold ``image_auroc``) fill every column;
``benchmark`` and ``fewshot`` files (and any other shape, ``other``) get one row too, with their
provenance, but empty configuration and metric columns (their own tables are in their JSON, read by
chapters 8 and 10 and by ``benchmark_table``).

The chapters compare configurations over seeds with ``seed_stats`` / ``seed_table`` / ``compare``,
selecting each by a query over the index (``where`` and the shared conditions, e.g. ``LITE0``), never by file name.
This module only reads: the repository script ``tools/results_pages.py`` (``make results``) writes
index.csv and renders the book's results page, the README's headline table and the tables of
``docs/status.md`` from it (``--check``: exit 1 when one of them is out of date).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from ..config import flat_settings, quick_profile
from ..paths import RESULTS_DIR  # the one spelling of the results folder

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / RESULTS_DIR
INDEX_FILE = "index.csv"

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
    ("model.feature_model", ("config", "model", "feature_model"), "decoder"),   # runs before the code bank: decoder
    ("model.bank_size", ("config", "model", "bank_size"), None),
    ("model.bank_memory", ("config", "model", "bank_memory"), None),
    ("train.router_objective", ("config", "train", "router_objective"), None),
    ("train.epochs", ("config", "train", "epochs"), None),
    ("train.seed", ("config", "train", "seed"), None),
    ("train.lambda_max", ("config", "train", "lambda_max"), None),
    ("train.schedule", ("config", "train", "schedule"), None),
    ("train.augment", ("config", "train", "augment"), True),
    ("train.feature_noise", ("config", "train", "feature_noise"), 0.0),
    ("train.restore_anomalies", ("config", "train", "restore_anomalies"), False),
    ("train.ssim_weight", ("config", "train", "ssim_weight"), 0.0),   # 0 where it did not apply (see index_row)
    ("head.enabled", ("config", "head", "enabled"), False),
    ("score.scorer", ("config", "score", "scorer"), "pvqae"),
    ("score.feature_score", ("config", "score", "feature_score"), "recon"),
    ("score.route", ("config", "score", "route"), "router"),
    ("score.prior_power", ("config", "score", "prior_power"), 1.0),
    ("prior", ("prior",), None),
    ("standardized", ("standardized",), False),
]
METRIC_COLUMNS = ["image_auroc", "pixel_auroc", "pro", "image_auroc_pooled", "pixel_auroc_pooled", "pro_pooled",
                  "num_test"]
PROVENANCE_COLUMNS = ["device", "machine", "seconds", "train_seconds", "git_commit", "train_git_commit", "command",
                      "train_command"]
COLUMNS = (["file", "kind"] + [c for c, _, _ in CONFIG_COLUMNS] + METRIC_COLUMNS + PROVENANCE_COLUMNS)
BOOL_COLUMNS = ["train.augment", "train.restore_anomalies", "head.enabled", "standardized"]
FLOAT_COLUMNS = ["model.tau", "score.prior_power", "train.lambda_max", "train.feature_noise", "train.ssim_weight",
                 "image_auroc",
                 "pixel_auroc", "pro", "image_auroc_pooled", "pixel_auroc_pooled", "pro_pooled", "seconds",
                 "train_seconds"]
INT_COLUMNS = ["image_size", "model.width", "model.codebook_size", "model.code_dim", "model.vq_level",
               "model.bank_size", "train.epochs",
               "train.seed", "num_test"]
# What makes two evaluations the same configuration (so that their seeds may be averaged):
# everything but the seed, the files and the provenance. A head trained after the autoencoder
# (head.enabled) is part of it: such a run's autoencoder was trained again, on its own.
IDENTITY = [c for c, _, _ in CONFIG_COLUMNS if c not in ("train.seed", "categories")]


def as_profile(*columns: str) -> str:
    """The condition that each of ``columns`` (index columns named as the settings, e.g.
    ``train.lambda_max``) holds the quick profile's value: the selections below follow the config's
    defaults rather than spelling them again."""
    settings = flat_settings(quick_profile().to_dict())
    parts = []
    for column in columns:
        value = settings[column]
        name = f"`{column}`" if "." in column else column
        parts.append((name if value else f"not {name}") if isinstance(value, bool)
                     else f"{name} == {value!r}")
    return " and ".join(parts)


# Conditions the selections share (pandas query syntax; dotted columns in backticks): the README's
# headline (tools/results_pages.py), docs/status.md's feature table and the chapters select with them.
QUICK_PIXEL = f"profile == 'quick' and image_size == {quick_profile().model.image_size} and " + \
    as_profile("model.backbone")
PROFILE_TRAINING = as_profile("train.lambda_max", "train.schedule", "model.tau", "train.augment")
PAPER_SCORE = (as_profile("score.scorer") + " and not standardized and "   # S = S_prior x S_recon, as the paper
               + as_profile("head.enabled", "train.restore_anomalies"))
VQ64 = "`model.quantizer` == 'vq' and `model.codebook_size` == 64"
# Every MTSD run on the frozen EfficientNet-Lite0 pyramid (chapter 8b), its ablations included
MTSD_LITE0 = "dataset == 'mtsd' and profile == 'quick' and `model.backbone` == 'efficientnet-lite0'"
# ... PVQAE with a decoder there (chapter 8b's second half, its ablations included)
LITE0_RUNS = MTSD_LITE0 + " and `model.feature_model` == 'decoder'"
# ... and those with the profile's feature training (the paper's λ schedule, no noise, VQ, S_recon as the
# reconstruction error). An ablation changes one of these: select it as LITE0_RUNS and that one column.
LITE0 = LITE0_RUNS + " and " + as_profile("train.lambda_max", "train.schedule", "train.feature_noise",
                                          "model.quantizer", "score.feature_score")
# The code bank (chapter 8b): PVQAE's codebooks read as a memory bank, and its one-level peers
BANK = MTSD_LITE0 + " and `model.feature_model` == 'bank'"
# ... and on the synthetic data at the demo's 128 px (tools/synthetic_bank_runs.sh)
SYNTHETIC_BANK = ("dataset == 'synthetic' and profile == 'quick' and `model.backbone` == 'efficientnet-lite0' "
                  "and `model.feature_model` == 'bank'")


def where(*conditions: str) -> str:
    """The conjunction of query conditions."""
    return " and ".join(f"({c})" for c in conditions)


PVQAE_S_RECON = where("`model.model` == 'pvqae'", "prior == 'none'", "not standardized")   # PVQAE scored by S_recon


def lite0(model: str, *conditions: str) -> str:
    """The query for one ``model`` ('pvqae', 'vqvae', 'ae', 'patchcore') on the Lite0 pyramid with the
    profile's feature training (LITE0), and any further conditions (e.g. "prior == 'none'")."""
    return where(LITE0, f"`model.model` == '{model}'", *conditions)


def bank(model: str, *conditions: str) -> str:
    """The query for the code bank's ``model`` ('pvqae' routed, 'membank' one level) on the Lite0
    pyramid (BANK), and any further conditions (e.g. "`score.route` == 'coarse'")."""
    return where(BANK, f"`model.model` == '{model}'", *conditions)


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
    if not row["train.restore_anomalies"]:
        row["train.ssim_weight"] = 0.0     # LFQUIAD's SSIM term (Eq. 2) is used only when restoring anomalies;
        # runs made before it existed restored with MSE alone, and read 0 by the default above
    row["categories"] = "+".join(c["category"] for c in record.get("per_category", [])) or None
    for c in METRIC_COLUMNS:
        row[c] = record.get(c)
    return row


class ResultsError(ValueError):
    """A results folder or file the index cannot be built from (one line naming it)."""


def read_result(path: Path) -> dict:
    """One committed result, checked: a UTF-8 JSON object whose metrics are numbers (or null) and
    whose ``config``, when present, is an object. ResultsError naming the file otherwise."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ResultsError(f"result {path} is not UTF-8 text") from None
    except OSError as e:
        raise ResultsError(f"cannot read result {path}: {e.strerror or e}") from None
    if not text.strip():
        raise ResultsError(f"result {path} is empty")
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        raise ResultsError(f"result {path} is not valid JSON") from None
    if not isinstance(record, dict):
        raise ResultsError(f"result {path} is a JSON {type(record).__name__}, not an object")
    for c in METRIC_COLUMNS + ["seconds", "train_seconds"]:
        v = record.get(c)
        number = isinstance(v, (int, float)) and not isinstance(v, bool)
        if v is not None and not (number and math.isfinite(v)):
            raise ResultsError(f"result {path}: {c} must be a finite number or null, got {v!r}")
    if "config" in record and not isinstance(record["config"], dict):
        raise ResultsError(f"result {path}: config must be an object, got {record['config']!r}")
    return record


def build_index(results_dir: Path | str = RESULTS) -> pd.DataFrame:
    """One row per ``*.json`` of ``results_dir``, sorted by file name, with the columns ``COLUMNS``
    (ResultsError naming the folder when it is missing, or the first file that is not a result)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ResultsError(f"results folder {results_dir} is missing")
    rows = [index_row(p.name, read_result(p)) for p in sorted(results_dir.glob("*.json"))]
    return _typed(pd.DataFrame(rows, columns=COLUMNS))


def _text(column: pd.Series) -> pd.Series:
    """Text with NaN where empty: pandas' 'str' dtype (pandas >= 2.3), else objects."""
    try:
        return column.astype(pd.StringDtype(na_value=float("nan")))
    except TypeError:                                     # older pandas (e.g. a Colab image): no na_value
        return column.astype(object).where(column.notna(), float("nan"))


def _typed(index: pd.DataFrame) -> pd.DataFrame:
    """The same dtypes however the index was made: text as strings, flags as pandas' nullable
    booleans, counts as nullable integers (empty for non-evaluate rows), so that a query's
    ``not standardized`` is a logical, not a bitwise, negation."""
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
    """The index as CSV text, as index.csv holds it (deterministic, floats at full precision)."""
    return index.to_csv(index=False, lineterminator="\n")


def load_index(path: Path | str | None = None) -> pd.DataFrame:
    """The committed index as a DataFrame (booleans as booleans, empty cells as NaN/None);
    ResultsError naming the file when it is missing or not the index this module writes."""
    path = Path(path) if path is not None else RESULTS / INDEX_FILE
    try:
        index = pd.read_csv(path)
    except FileNotFoundError:
        raise ResultsError(f"results index {path} is missing: tools/results_pages.py writes it") from None
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as e:
        raise ResultsError(f"results index {path} cannot be read ({' '.join(str(e).split())[:120]})") from None
    if list(index.columns) != COLUMNS:
        raise ResultsError(f"results index {path} does not have the index's columns: tools/results_pages.py "
                           f"rewrites it")
    try:
        return _typed(index)
    except (ValueError, TypeError) as e:
        raise ResultsError(f"results index {path} holds a value of the wrong type "
                           f"({' '.join(str(e).split())[:120]})") from None


# ------------------------------------------------------------------------------ formatting


def short_commit(sha) -> str:
    """The first 7 hex digits, keeping a '-dirty' mark (the code had uncommitted changes)."""
    if not isinstance(sha, str) or not sha:
        return "n/a"
    return sha[:7] + ("-dirty" if sha.endswith("-dirty") else "")


# --------------------------------------------------------------------------- seeds, for the chapters

def one_configuration(rows: pd.DataFrame, what: str) -> pd.DataFrame:
    """``rows`` (evaluations) when they are seeds of ONE configuration (equal in every IDENTITY
    column) and no seed repeats; else ValueError naming ``what``, the differing columns and the files."""
    differ = [c for c in IDENTITY if rows[c].astype(str).nunique() > 1]
    if differ:
        raise ValueError(f"{what} matches more than one configuration (they differ in "
                         f"{', '.join(differ)}): {', '.join(rows['file'])}")
    if rows["train.seed"].duplicated().any():
        raise ValueError(f"{what} matches one seed twice: {', '.join(rows['file'])}")
    return rows


def seed_stats(groups: dict, index: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean and sample std over seeds of each configuration: ``groups`` is {label: query}, a pandas
    query over the index's columns (e.g. ``where(LITE0, "`model.model` == 'pvqae'", "prior == 'none'",
    "not standardized")``) that must match the evaluations of ONE configuration, its seeds
    (ValueError naming the label and the columns they differ in, see ``one_configuration``).
    One row per label that matches something, indexed by label, with columns ``seeds``, ``files``
    and ``<metric>_mean`` / ``<metric>_std`` (fractions; std 0 for one seed)."""
    index = load_index() if index is None else index
    evaluations = index[index["kind"] == "evaluate"]
    rows = []
    for label, query in groups.items():
        hit = evaluations.query(query)
        if hit.empty:
            continue
        one_configuration(hit, f"group {label!r}")
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
                         "training time (s)": [f"{r['train_seconds_mean']:.0f}" for _, r in stats.iterrows()]},
                        index=stats.index)


def beyond_spread(stats: pd.DataFrame, a: str, b: str, metric: str = "image_auroc", sep: str = "_") -> bool:
    """Whether two configurations' means differ by more than the sum of their seed spreads (the book's
    yardstick for "outside the seed spread"); columns ``<metric><sep>mean`` and ``<metric><sep>std``."""
    gap = abs(stats.loc[a, f"{metric}{sep}mean"] - stats.loc[b, f"{metric}{sep}mean"])
    return bool(gap > stats.loc[a, f"{metric}{sep}std"] + stats.loc[b, f"{metric}{sep}std"])


def compare(stats: pd.DataFrame, a: str, b: str, metric: str = "image_auroc") -> str:
    """One generated sentence: how ``a`` compares with ``b`` on ``metric``, and whether the
    difference is outside the seed spread (|Δmean| > std_a + std_b). The labels are quoted, so the
    sentence reads well whatever they contain, e.g.: “A”: image AUROC 91.0 %, 19.0 points above “B”
    (72.0 %), outside the seed spread (2 and 2 seeds)."""
    name = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "pro": "PRO"}[metric]
    ma, mb = 100 * stats.loc[a, f"{metric}_mean"], 100 * stats.loc[b, f"{metric}_mean"]
    gap = abs(round(ma, 1) - round(mb, 1))                    # the gap between the numbers as printed
    relation = (f"{gap:.1f} points {'above' if ma > mb else 'below'}" if f"{ma:.1f}" != f"{mb:.1f}"
                else "equal to")
    na, nb = int(stats.loc[a, "seeds"]), int(stats.loc[b, "seeds"])
    if min(na, nb) < 2:
        spread = "a single seed on one side, so its spread is unknown and the gap is not a finding"
    elif beyond_spread(stats, a, b, metric):
        spread = "outside the seed spread"
    else:
        spread = "within the seed spread: these seeds do not separate them"
    return f"“{a}”: {name} {ma:.1f} %, {relation} “{b}” ({mb:.1f} %), {spread} ({na} and {nb} seeds)."

