"""pvqae_lib.runs.results: the results index built from the committed JSON files; tools/results_pages.py:
what is generated from it (the book's results page, the README's headline table, the benchmark
table), and a check that the committed generated files are current. Only JSON is read; no model is
trained.
"""
import json
import re

import pandas as pd
import pytest
from conftest import load_tool

from pvqae_lib import results as R

P = load_tool("results_pages")


def evaluation(dataset="synthetic", model="pvqae", prior="universal", image=0.9, pixel=0.8, pro=0.7, seed=0,
               epochs=10, quantizer="vq", size=64, scorer=None, standardized=None, backbone=None,
               commit="0123456789abcdef-dirty"):
    """A minimal ``evaluate`` JSON in the shape the command line writes."""
    config = {"name": "quick",
              "model": {"model": model, "quantizer": quantizer, "image_size": size, "width": 8, "codebook_size": 64,
                        "tau": 1.0, "vq_level": 2},
              "train": {"epochs": epochs, "lambda_max": 1.25, "schedule": "linear", "augment": True, "seed": seed},
              "score": {"smooth_sigma": 2.0, "use_prior": True}}
    if scorer is not None:
        config["score"]["scorer"] = scorer
    if backbone is not None:
        config["model"]["backbone"] = backbone
    r = {"image_auroc": image, "pixel_auroc": pixel, "pro": pro, "prior": prior, "model": model,
         "dataset": dataset, "device": "cpu", "profile": "quick", "train_seconds": 12.5, "seconds": 3.25,
         "git_commit": commit, "train_git_commit": commit, "machine": "2 cores",
         "command": "python -m pvqae_lib evaluate --run runs/x --json x.json",
         "train_command": f"python -m pvqae_lib train --model {model} --seed {seed}",
         "per_category": [{"category": "tile"}, {"category": "weave"}],
         "data": {"dataset": dataset, "category": None}, "config": config}
    if standardized is not None:
        r["standardized"] = standardized
    return r


BENCHMARK = {"rows": [{"model": m, "image_size": s, "train_images_per_second": ips, "inference_ms_per_image": ms,
                       "peak_memory_mb": mb} for m, s, ips, ms, mb in
                      (("pvqae", 64, 50.0, 20.0, 500.4), ("vqvae", 64, 60.0, 4.0, 400.6),
                       ("pvqae", 128, 15.0, 300.0, 900.0), ("vqvae", 128, 18.0, 12.345, 700.0))],
             "step_ratio_pvqae_over_vqvae": {"64": 1.2, "128": 1.234}, "command": "python -m pvqae_lib benchmark",
             "git_commit": "abcdef0123", "machine": "2 cores", "device": "cpu", "profile": "quick", "steps": 10}
FEWSHOT = {"dataset": "mtsd", "shots": [1, 2], "rows": [], "table": [], "seconds": 4.5, "git_commit": "abc",
           "command": "python -m pvqae_lib fewshot", "device": "cpu", "profile": "quick", "machine": "2 cores"}


def folder_with(tmp_path, files: dict):
    folder = tmp_path / "results"
    folder.mkdir(parents=True)
    for name, record in files.items():
        (folder / name).write_text(json.dumps(record))
    return folder


# ------------------------------------------------------------------------------------ formats


@pytest.mark.parametrize("value,text", [(None, "n/a"), (float("nan"), "n/a"), (0.5, "50.0"), (0.98765, "98.8"),
                                        (1, "100.0"), (0.0, "0.0")])
def test_fmt_is_a_percentage(value, text):
    assert P.percent(value) == text


@pytest.mark.parametrize("sha,text", [("0123456789abcdef", "0123456"), ("0123456789abcdef-dirty", "0123456-dirty"),
                                      (None, "n/a"), ("", "n/a"), (float("nan"), "n/a")])
def test_short_commit(sha, text):
    assert R.short_commit(sha) == text


# -------------------------------------------------------------------------------------- index


def test_index_one_row_per_json_sorted_with_kinds(tmp_path):
    folder = folder_with(tmp_path, {"b.json": evaluation(model="vqvae", prior="none"), "a.json": evaluation(),
                                    "benchmark_x.json": BENCHMARK, "fewshot_y.json": FEWSHOT, "odd.json": {"x": 1}})
    (folder / "notes.txt").write_text("not a result")
    index = R.build_index(folder)
    assert list(index.columns) == R.COLUMNS
    assert list(index["file"]) == ["a.json", "b.json", "benchmark_x.json", "fewshot_y.json", "odd.json"]
    assert list(index["kind"]) == ["evaluate", "evaluate", "benchmark", "fewshot", "other"]
    # other kinds: provenance only, no configuration or metrics
    few = index.set_index("file").loc["fewshot_y.json"]
    assert few["dataset"] == "mtsd" and few["seconds"] == 4.5 and few["command"] == "python -m pvqae_lib fewshot"
    assert pd.isna(few["image_auroc"]) and pd.isna(few["model.model"]) and pd.isna(few["standardized"])


def test_index_flattens_the_configuration_with_defaults(tmp_path):
    folder = folder_with(tmp_path, {"plain.json": evaluation(seed=2, epochs=30),
                                    "feat.json": evaluation(backbone="lite0", scorer="head", standardized=True)})
    index = R.build_index(folder).set_index("file")
    plain, feat = index.loc["plain.json"], index.loc["feat.json"]
    assert plain["model.backbone"] == "pixel"            # absent from older results: the paper's pixel encoder
    assert plain["score.scorer"] == "pvqae" and not plain["standardized"] and not plain["head.enabled"]
    assert plain["train.seed"] == 2 and plain["train.epochs"] == 30 and plain["train.lambda_max"] == 1.25
    assert plain["categories"] == "tile+weave" and pd.isna(plain["category"])
    assert plain["image_auroc"] == 0.9 and plain["git_commit"] == "0123456789abcdef-dirty"
    assert feat["model.backbone"] == "lite0" and feat["score.scorer"] == "head" and feat["standardized"]


def test_index_round_trips_through_csv(tmp_path):
    folder = folder_with(tmp_path, {"a.json": evaluation(image=0.123456789012345), "benchmark.json": BENCHMARK,
                                    "f.json": FEWSHOT})
    index = R.build_index(folder)
    path = tmp_path / "index.csv"
    path.write_text(R.index_csv(index))
    pd.testing.assert_frame_equal(R.load_index(path), index)
    # pandas queries on the flags are logical
    assert list(R.load_index(path).query("not standardized and `model.model` == 'pvqae'")["file"]) == ["a.json"]


def test_the_committed_index_is_current():
    """Regenerating the index from the committed JSON files gives exactly the committed index.csv
    (after adding or changing a result: `make results`)."""
    committed = (R.RESULTS / R.INDEX_FILE).read_text()
    assert R.index_csv(R.build_index()) == committed, "book/_static/results/index.csv is stale: run make results"


def test_the_generated_page_and_blocks_are_current():
    """book/results.md, the README's headline block and docs/status.md's blocks are what
    tools/results_pages.py writes from the committed JSON files."""
    assert P.stale() == [], "run `make results` (tools/results_pages.py)"


# ----------------------------------------------------------------------------------- headline


SEEDS = {"p0.json": evaluation(seed=0, image=0.6), "p1.json": evaluation(seed=1, image=0.7),
         "p2.json": evaluation(seed=2, image=0.8), "v0.json": evaluation(model="vqvae", prior="none", image=0.5)}


def test_headline_averages_the_seeds_of_one_configuration(tmp_path):
    index = R.build_index(folder_with(tmp_path, SEEDS))
    selectors = [P.Headline("PVQAE", "`model.model` == 'pvqae'", paper=(0.992, 0.965)),
                 P.Headline("VQ-VAE", "`model.model` == 'vqvae'")]
    lines = P.headline_table(index, selectors).splitlines()
    assert lines[2] == "| PVQAE | 0, 1, 2 | 70.0 ± 10.0 | 80.0 ± 0.0 | 70.0 ± 0.0 | 99.2 / 96.5 |"
    assert lines[3] == "| VQ-VAE | 0 | 50.0 | 80.0 | 70.0 | n/a |"
    assert lines[4] == ""


def test_headline_skips_a_selector_that_matches_nothing(tmp_path):
    index = R.build_index(folder_with(tmp_path, SEEDS))
    selectors = [P.Headline("none yet", "`model.backbone` == 'lite0'"),
                 P.Headline("VQ-VAE", "`model.model` == 'vqvae'")]
    assert [r["label"] for r in P.headline_rows(index, selectors)] == ["VQ-VAE"]


def test_headline_refuses_two_configurations_or_a_repeated_seed(tmp_path):
    index = R.build_index(folder_with(tmp_path, SEEDS))
    with pytest.raises(ValueError, match="differ in model.model, prior"):
        P.headline_rows(index, [P.Headline("both", "`train.epochs` == 10")])
    index = R.build_index(folder_with(tmp_path / "b", {"a.json": evaluation(), "b.json": evaluation()}))
    with pytest.raises(ValueError, match="one seed twice"):
        P.headline_rows(index, [P.Headline("twice", "`model.model` == 'pvqae'")])


def test_headline_at_most_ten_rows(tmp_path):
    index = R.build_index(folder_with(tmp_path, SEEDS))
    with pytest.raises(ValueError, match="at most 10"):
        P.headline_rows(index, [P.Headline(str(i), "`model.model` == 'vqvae'") for i in range(11)])


def test_the_repository_headline_rows():
    """The selectors of the README match rows today, each one configuration (select() checks it)."""
    rows = P.headline_rows(R.load_index())
    assert 5 <= len(rows) <= P.MAX_HEADLINE_ROWS
    first = rows[0]                       # the working model first: the code bank on MTSD, three seeds
    assert first["seeds"] == [0, 1, 2] and "memory bank" in first["label"]
    assert first["files"] == ["mtsd_lite0_bank_seed0.json", "mtsd_lite0_bank_seed1.json",
                              "mtsd_lite0_bank_seed2.json"]
    pixel = [r for r in rows if r["label"].startswith("Synthetic, quick (10 epochs): pixel PVQAE")][0]
    assert pixel["image"] == "66.0 ± 7.6"


# ----------------------------------------------------------------------------- page, benchmark


def test_results_page_is_plain_myst(tmp_path):
    folder = folder_with(tmp_path, {**SEEDS, "m.json": evaluation(dataset="mtsd"), "benchmark.json": BENCHMARK,
                                    "f.json": FEWSHOT})
    page = P.results_page(R.build_index(folder)).splitlines()
    headings = [line for line in page if line.startswith("#")]
    assert headings[0].startswith("# ") and sum(h.startswith("# ") for h in headings) == 1
    assert len(set(headings)) == len(headings)
    assert headings[1:] == ["## Summary: each model's best configuration", "## Synthetic data (the embedded default)",
                            "## MTSD (magnetic tiles)", "## Other results"]
    # every table row has as many unescaped cell separators as its header
    cells = [len(re.findall(r"(?<!\\)\|", line)) for line in page if line.startswith("|")]
    header_pipes = {len(P.FULL_COLUMNS) + 1, len(P.SUMMARY_COLUMNS) + 1, 6}
    assert set(cells) <= header_pipes
    # each full list is folded (the page stays short; the summary shows at once)
    assert sum(line.startswith("````{dropdown}") for line in page) == 3
    assert "python -m pvqae_lib train" not in "\n".join(page)       # the commands stay in the JSON files
    assert "python -m pvqae_lib fewshot" not in "\n".join(page)


def test_full_table_is_short_and_sorted(tmp_path):
    """The run table: at most 8 columns; names less the shared prefix and '.json' (the prefix stated
    above the table); rows by model (with its scoring), then training (px, epochs numerically), then
    seed, so that the seeds of one configuration sit together; LFQUIAD's MSE-only and Eq. 2 trainings
    and a changed λ told apart in the training column; the commit last; no command."""
    restore = {}
    for name, ssim in (("run_lfq_mse.json", 0.0), ("run_lfq_ssim.json", 0.5)):
        restore[name] = evaluation(quantizer="lfq", epochs=10)
        restore[name]["config"]["train"].update(restore_anomalies=True, ssim_weight=ssim)
    lam = evaluation(epochs=80, seed=0)
    lam["config"]["train"].update(lambda_max=2.5, schedule="cosine")
    cb = evaluation(epochs=80, seed=0)
    cb["config"]["model"]["codebook_size"] = 512
    folder = folder_with(tmp_path, {"run_e80_s1.json": evaluation(epochs=80, seed=1),
                                    "run_e80_s0.json": evaluation(epochs=80, seed=0),
                                    "run_e400.json": evaluation(epochs=400), "run_lam.json": lam, "run_cb.json": cb,
                                    "run_e100.json": evaluation(epochs=100, image=0.5),
                                    "run_vq.json": evaluation(model="vqvae", prior="none", seed=2),
                                    "run_ae.json": evaluation(model="ae", prior="none", seed=3), **restore})
    lines = P.full_table(R.build_index(folder)).splitlines()
    assert lines[0] == "Run `x` is the file `run_x.json`."
    assert lines[2] == "| run | model: scoring | training | seed | image AUROC | pixel AUROC | PRO | commit |"
    assert len(P.FULL_COLUMNS) <= 8
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[4:]]
    assert all(len(r) == len(P.FULL_COLUMNS) for r in rows)
    assert [r[0] for r in rows] == ["ae", "lfq_ssim", "lfq_mse", "e80_s0", "e80_s1", "cb", "lam", "e100", "e400",
                                    "vq"]
    by_name = {r[0]: r for r in rows}
    assert by_name["ae"][1] == "ae: S, prior none" and by_name["vq"][3] == "2"
    assert by_name["e80_s1"][1:4] == ["pvqae: S, prior universal", "64 px, 80 epochs", "1"]
    assert by_name["lam"][2] == "64 px, 80 epochs; λmax 2.5; cosine λ"
    assert by_name["cb"][2] == "64 px, 80 epochs; K 512"                 # differs from its model's usual K 64
    assert by_name["e100"][4:7] == ["50.0", "80.0", "70.0"]
    assert by_name["lfq_mse"][1] == "pvqae-lfq: S, prior universal"
    assert [by_name[n][2] for n in ("lfq_mse", "lfq_ssim")] == ["64 px, 10 epochs; restore, MSE",
                                                              "64 px, 10 epochs; restore, Eq. 2 (SSIM 0.5)"]
    assert {r[-1] for r in rows} == {"0123456-dirty"}
    assert "python -m" not in "\n".join(lines)


def test_the_committed_page_has_a_summary_then_short_sorted_run_tables():
    """book/results.md (issue #31 item 4): the summary first, then each dataset's runs in tables of at
    most 8 columns, sorted by model and scoring, and within one configuration by seed."""
    page = P.PAGE.read_text()
    assert page.index("## Summary") < page.index("## Synthetic data") < page.index("## MTSD")
    header = "| " + " | ".join(P.FULL_COLUMNS) + " |"
    assert page.count(header) == 2 and len(P.FULL_COLUMNS) <= 8 and len(P.SUMMARY_COLUMNS) <= 8
    for table in page.split(header)[1:]:
        rows = [[c.strip() for c in line.strip("|").split("|")]
                for line in table.splitlines()[2:] if line.startswith("|")]
        rows = rows[:next((i for i, r in enumerate(rows) if len(r) != len(P.FULL_COLUMNS)), len(rows))]
        models = [r[1] for r in rows]
        assert models == sorted(models)
        for a, b in zip(rows, rows[1:]):
            if a[1:3] == b[1:3]:                          # same model, scoring and training: seeds ascending
                assert int(a[3]) <= int(b[3]), (a, b)


@pytest.mark.parametrize("names,prefix", [
    (["synthetic_quick_a.json", "synthetic_quick_b_c.json"], "synthetic_quick_"),
    (["mtsd_quick_a.json", "mtsd_lite0_a.json"], "mtsd_"),
    (["ab.json", "ac.json"], ""), (["x_a.json"], ""), (["x_.json", "x_a.json"], ""),
    (["x_y_a.json", "x_y_"], "x_")])
def test_common_prefix_ends_at_an_underscore(names, prefix):
    assert P.common_prefix(names) == prefix


def test_the_committed_page_is_plain_myst():
    page = P.PAGE.read_text().splitlines()
    current = None
    for line in page:
        if line.startswith("|"):
            n = len(re.findall(r"(?<!\\)\|", line))
            current = n if current is None else current
            assert n == current, line
        else:
            current = None
    assert sum(line.startswith("# ") for line in page) == 1 and page[0].startswith("# ")


def test_benchmark_table_rows_and_ratio(tmp_path):
    folder = folder_with(tmp_path, {"benchmark_x.json": BENCHMARK, "synthetic.json": evaluation()})
    lines = P.benchmark_table(folder).splitlines()
    assert lines[0].startswith("`benchmark_x.json`: `python -m pvqae_lib benchmark` (commit abcdef0,")
    assert lines[4:] == ["| pvqae | 64 | 50.00 | 20.0 | 500 | 1.20 |", "| vqvae | 64 | 60.00 | 4.0 | 401 |  |",
                         "| pvqae | 128 | 15.00 | 300.0 | 900 | 1.23 |", "| vqvae | 128 | 18.00 | 12.3 | 700 |  |"]
    assert P.benchmark_table(tmp_path / "nothing") == "No benchmark JSON committed."


def test_replace_block(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("a\n<!-- x -->\nold\n<!-- /x -->\nb\n")
    assert P.replace_block(readme, "<!-- x -->", "<!-- /x -->", r"new \1") is True
    assert readme.read_text() == "a\n<!-- x -->\nnew \\1\n<!-- /x -->\nb\n"
    assert P.replace_block(readme, "<!-- y -->", "<!-- /y -->", "z") is False
    assert P.replace_block(tmp_path / "missing.md", "<!-- x -->", "<!-- /x -->", "z") is False


def seed_runs(tmp_path, b_images=(0.70, 0.74)):
    """Two configurations over two seeds each (PVQAE and VQ-VAE), and a benchmark file."""
    files = {"a_seed0.json": evaluation(seed=0, image=0.90), "a_seed1.json": evaluation(seed=1, image=0.92),
             "b_seed0.json": evaluation(model="vqvae", prior="none", seed=0, image=b_images[0]),
             "b_seed1.json": evaluation(model="vqvae", prior="none", seed=1, image=b_images[1]),
             "c.json": BENCHMARK}
    return R.build_index(folder_with(tmp_path, files))


def test_seed_stats_and_generated_comparisons(tmp_path):
    from pvqae_lib.runs.results import beyond_spread, compare, seed_stats, seed_table, where
    index = seed_runs(tmp_path)
    a, b = "`model.model` == 'pvqae'", "`model.model` == 'vqvae'"
    stats = seed_stats({"A": a, "B": where(b, "prior == 'none'"), "none": "`model.model` == 'ae'"}, index)
    assert list(stats.index) == ["A", "B"] and stats.loc["A", "seeds"] == 2
    assert stats.loc["A", "files"] == "a_seed0.json, a_seed1.json"
    assert stats.loc["A", "image_auroc_mean"] == pytest.approx(0.91)
    assert seed_table(stats).loc["A", "image AUROC (%)"] == "91.0 ± 1.4"
    assert beyond_spread(stats, "A", "B")
    assert compare(stats, "A", "B") == ("“A”: image AUROC 91.0 %, 19.0 points above “B” (72.0 %), "
                                        "outside the seed spread (2 and 2 seeds).")
    assert compare(stats, "B", "A").startswith("“B”: image AUROC 72.0 %, 19.0 points below “A” (91.0 %)")
    assert "“A”: image AUROC 91.0 %, equal to “A” (91.0 %)" in compare(stats, "A", "A")
    close = seed_stats({"A": a, "A2": where(a, "`train.seed` == 1")}, index)
    assert "a single seed on one side, so its spread is unknown" in compare(close, "A2", "A")
    two = seed_stats({"A": a, "B": b}, seed_runs(tmp_path / "two", b_images=(0.89, 0.93)))
    assert not beyond_spread(two, "A", "B") and "within the seed spread" in compare(two, "A", "B")
    assert seed_stats({"none": "`model.model` == 'ae'"}, index).empty


def test_seed_stats_refuses_a_group_of_two_configurations(tmp_path):
    """A group's query must match the seeds of one configuration: rows that differ in an IDENTITY
    column other than the seed are refused, naming the label and the columns."""
    index = seed_runs(tmp_path)
    with pytest.raises(ValueError, match=r"group 'both' matches more than one configuration \(they differ in "
                                         r"model\.model, prior\)"):
        R.seed_stats({"fine": "`model.model` == 'pvqae'", "both": "`train.epochs` == 10"}, index)
    twice = R.build_index(folder_with(tmp_path / "twice", {"a.json": evaluation(), "b.json": evaluation()}))
    with pytest.raises(ValueError, match="group 'twice' matches one seed twice"):
        R.seed_stats({"twice": "`model.model` == 'pvqae'"}, twice)


def test_the_repository_feature_groups():
    """docs/status.md's feature groups: each a query matching one configuration's seeds today."""
    stats = R.seed_stats(P.FEATURE_GROUPS, R.load_index())
    assert stats.loc["PVQAE, S_recon (no prior)", "files"] == (
        "mtsd_lite0_pvqae_seed0_noprior.json, mtsd_lite0_pvqae_seed1_noprior.json, "
        "mtsd_lite0_pvqae_seed2_noprior.json")
    assert all(not q.endswith(".json") for q in P.FEATURE_GROUPS.values())


def test_lite0_selects_one_model_of_the_profile_training_on_the_committed_index():
    """results.lite0 is LITE0 and the model (and any further condition): on the committed index it picks
    the three seeds of the feature PVQAE scored by S_recon, and no ablation run."""
    index = R.load_index()
    hit = index[index["kind"] == "evaluate"].query(R.lite0("pvqae", "prior == 'none'", "not standardized"))
    assert sorted(hit["file"]) == [f"mtsd_lite0_pvqae_seed{s}_noprior.json" for s in (0, 1, 2)]


def test_summary_keeps_each_models_best_configuration_best_first(tmp_path):
    """One row per dataset and model, its configuration with the highest mean image AUROC over the
    seeds, best first (the results page opens with it)."""
    files = {"a0.json": evaluation(image=0.70, seed=0), "a1.json": evaluation(image=0.80, seed=1),
             "b0.json": evaluation(image=0.95, seed=0, epochs=20), "v.json": evaluation(model="vqvae", image=0.90)}
    index = R.build_index(folder_with(tmp_path, files))
    rows = [line for line in P.summary_table(index[index["kind"] == "evaluate"]).splitlines()[2:]]
    assert len(rows) == 2
    assert "| pvqae |" in rows[0] and "| 20 | 1 | 95.0 |" in rows[0]      # the 20-epoch configuration wins
    assert "| vqvae |" in rows[1] and "90.0" in rows[1]
