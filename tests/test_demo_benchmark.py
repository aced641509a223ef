"""``demo`` (PVQAE, VQ-VAE and PatchCore on the feature backbone, or the pixel pair) and ``benchmark``
(pixel rows and the feature backbones' rows), at tiny sizes, and their bad input."""
import json

import pytest
from conftest import assert_usage_error, run_cli

pytestmark = pytest.mark.usefixtures("one_thread", "cpu_quick")

TINY_DEMO = ["--image-size", "32", "--epochs", "1", "--num-train", "8", "--prior-steps", "5", "--quiet"]


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PVQAE_CACHE", str(tmp_path / "cache"))


def table_rows(stdout: str) -> dict:
    """{model label: the table's cells} from demo's printed table."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("model ") and "image AUROC" in line)
    rows = {}
    for line in lines[start + 1:]:
        if not line.strip() or line.startswith(("*", "train s", "heat maps")):
            break
        label, cells = line[:24].strip(), line[24:].split()
        rows[label] = cells
    return rows


@pytest.mark.slow
def test_demo_feature_backbone_runs_three_models_then_reuses_them(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, err = run_cli(["demo", "--out", out, *TINY_DEMO], capsys)
    assert code == 0, err
    assert "efficientnet-lite0" in stdout.splitlines()[0] and "32 px" in stdout.splitlines()[0]
    rows = table_rows(stdout)
    assert list(rows) == ["PVQAE", "PVQAE, standardized", "VQ-VAE", "PatchCore"]
    for label, cells in rows.items():
        auroc = [float(c) for c in cells[:3]]                   # image AUROC, pixel AUROC, PRO
        assert all(0 <= a <= 1 for a in auroc), (label, cells)
        assert len(cells) == (4 if label.endswith("standardized") else 5), (label, cells)   # train s, evaluate s
    figure = out / "heatmaps.png"
    assert figure.is_file() and figure.stat().st_size > 10_000
    for name in ("pvqae", "vqvae", "patchcore"):
        result = json.loads((out / "efficientnet-lite0" / f"{name}.json").read_text())
        assert result["model"] == name and result["config"]["model"]["backbone"] == "efficientnet-lite0"
        assert result["train_command"].startswith("python -m pvqae_lib train --model " + name)
    standardized = json.loads((out / "efficientnet-lite0" / "pvqae_standardized.json").read_text())
    assert standardized["config"]["score"]["standardize"]

    # a second call reuses the runs (same train commands): no training, the recorded seconds starred
    code, stdout, err = run_cli(["demo", "--out", out, "--no-standardize", *TINY_DEMO], capsys)
    assert code == 0, err
    assert "trained in" not in stdout
    rows = table_rows(stdout)
    assert list(rows) == ["PVQAE", "VQ-VAE", "PatchCore"] and all(r[3].endswith("*") for r in rows.values())

    # other settings are another train command: retrained, never a stale model
    code, stdout, err = run_cli(["demo", "--out", out, "--no-standardize", *TINY_DEMO[:-1], "--num-train", "9",
                                 "--quiet"], capsys)
    assert code == 0, err
    assert stdout.count("trained in") == 3


def test_demo_pixel_backbone_runs_the_pixel_pair(tmp_path, capsys):
    out = tmp_path / "demo"
    code, stdout, err = run_cli(["demo", "--backbone", "pixel", "--out", out, "--no-standardize", *TINY_DEMO], capsys)
    assert code == 0, err
    assert list(table_rows(stdout)) == ["PVQAE", "VQ-VAE"]
    assert (out / "heatmaps.png").is_file() and not (out / "pixel" / "patchcore").exists()


@pytest.mark.parametrize("args, words", [
    (["demo", "--backbone", "nonsense"], ["--backbone", "invalid choice"]),
    (["demo", "--image-size", "48"], ["--image-size", "multiple of 32"]),
    (["demo", "--epochs", "0"], ["--epochs", "must be > 0"]),
    (["benchmark", "--backbones", "nonsense"], ["--backbones", "invalid choice"]),
    (["benchmark", "--backbones", "efficientnet-lite0", "--feature-size", "48"], ["--feature-size", "multiple of 32"]),
    (["benchmark", "--backbones", "pixel", "--feature-size", "64"], ["--feature-size"]),
    (["benchmark", "--backbones", "efficientnet-lite0", "--sizes", "64"], ["--sizes", "pixel"]),
    (["benchmark", "--backbones", "pixel", "pixel"], ["--backbones", "repeat"]),
])
def test_bad_demo_and_benchmark_input_is_one_line(tmp_path, capsys, args, words):
    assert_usage_error(run_cli([*args, *(["--out", tmp_path / "d"] if args[0] == "demo" else [])], capsys), *words)
    assert not (tmp_path / "d").exists()


def test_demo_out_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert_usage_error(run_cli(["demo", "--out", tmp_path / "afile", *TINY_DEMO], capsys), "--out", "is a file")
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.slow
def test_benchmark_feature_backbone_reports_extraction_training_fit_scoring_memory(tmp_path, capsys):
    path = tmp_path / "b.json"
    code, stdout, err = run_cli(["benchmark", "--backbones", "efficientnet-lite0", "--steps", "1",
                                 "--feature-size", "64", "--batch-size", "2", "--fit-images", "4", "--json", path],
                                capsys)
    assert code == 0, err
    b = json.loads(path.read_text())
    assert b["rows"] == [] and b["step_ratio_pvqae_over_vqvae"] == {} and b["backbones"] == ["efficientnet-lite0"]
    rows = {r["model"]: r for r in b["feature_rows"]}
    assert list(rows) == ["pvqae", "patchcore"]
    for r in rows.values():
        assert r["backbone"] == "efficientnet-lite0" and r["image_size"] == 64
        for key in ("extract_images_per_second", "inference_ms_per_image", "model_inference_ms_per_image",
                    "peak_memory_mb"):
            assert r[key] > 0, key
        # (no ratio between the two timings: they are separate measurements, and on a shared CPU one can
        # take three times the other; CI failed on 52 ms end to end against 137 ms for the model alone)
        assert r["memory_kind"] == "process peak RSS"
    assert rows["pvqae"]["train_images_per_second"] > 0 and rows["pvqae"]["fit_seconds_per_image"] is None
    assert rows["patchcore"]["fit_seconds_per_image"] > 0 and rows["patchcore"]["fit_images"] == 4
    assert rows["patchcore"]["train_images_per_second"] is None
    assert "extraction" in stdout and "coreset fit" in stdout

    from conftest import load_tool

    from pvqae_lib.runs.results import kind_of
    benchmark_table = load_tool("results_pages").benchmark_table
    assert kind_of(b) == "benchmark"
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "benchmark_x.json").write_text(path.read_text())
    table = benchmark_table(tmp_path / "r")
    assert "| efficientnet-lite0 | pvqae | 64 |" in table and "| efficientnet-lite0 | patchcore | 64 |" in table


def test_benchmark_defaults_measure_both_backbones():
    from pvqae_lib.commands.parser import build_parser
    args = build_parser().parse_args(["benchmark"])
    assert args.backbones == ["pixel", "efficientnet-lite0"] and args.sizes == [64] and args.feature_size is None
