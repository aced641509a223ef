"""``python -m pvqae_lib predict``: a user's own images scored by a finished run, and its bad input."""
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_TRAIN_ARGS, assert_usage_error, run_cli
from PIL import Image

from pvqae_lib.cli import main
from pvqae_lib.config import ScoreConfig
from pvqae_lib.data import load_images, make_synthetic
from pvqae_lib.engine.pipeline import load_trained, normal_maps, normal_percentile, score, score_files
from pvqae_lib.runs.folder import load_split

pytestmark = pytest.mark.usefixtures("one_thread", "cpu_quick")


@pytest.fixture(scope="module")
def run_and_images(tmp_path_factory):
    """A finished tiny PVQAE run (32 px, three categories) and a folder of six PNG images."""
    root = tmp_path_factory.mktemp("predict")
    assert main(["train", "--out", str(root / "run"), *TINY_TRAIN_ARGS]) == 0
    test = make_synthetic("test", 32, num_per_category=2, seed=5)
    (root / "images").mkdir()
    for i in range(len(test)):
        pixels = np.round(test.images[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / "images" / f"{i}_{test.kinds[i]}.png")
    return root / "run", root / "images"


def read_rows(out):
    with open(out / "predictions.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_predict_writes_scores_maps_and_provenance(run_and_images, tmp_path, capsys):
    run, images = run_and_images
    out = tmp_path / "pred"
    code, stdout, err = run_cli(["predict", "--run", run, "--images", images, "--out", out, "--threshold", "0.02"],
                                capsys)
    assert code == 0, err
    rows = read_rows(out)
    files = sorted(images.iterdir())
    assert [r["image"] for r in rows] == [str(f) for f in files]

    # the scores are the library's image scores of the same images
    trained = load_trained(run / "model.pt")
    expected = score(trained, load_images(files, 32, "tile", trained.category_names), "universal")["image"]
    np.testing.assert_allclose([float(r["score"]) for r in rows], expected, rtol=1e-4)
    for r in rows:
        assert 0 <= float(r["normal_percentile"]) <= 100
        assert r["anomalous"] == str(int(float(r["score"]) > 0.02))
        with Image.open(out / r["map"]) as picture:        # image | heat map, scaled up to 256 px high
            assert picture.size == (512, 256)
    info = json.loads((out / "predictions.json").read_text())
    # commands run in-process (as ``demo`` runs train and evaluate) record their own arguments
    assert info["train_command"] == "python -m pvqae_lib train --out " + " ".join([str(run), *TINY_TRAIN_ARGS])
    assert info["images"] == 6 and info["prior"] == "universal" and info["threshold"] == 0.02
    assert info["calibrated_on_normal_test_images"] and info["command"] == (
        f"python -m pvqae_lib predict --run {run} --images {images} --out {out} --threshold 0.02")
    assert str(out / "predictions.csv") in stdout

    # existing predictions are kept without --force
    before = (out / "predictions.csv").read_text()
    assert_usage_error(run_cli(["predict", "--run", run, "--images", images, "--out", out], capsys), "--force")
    assert (out / "predictions.csv").read_text() == before


def test_predict_one_file_one_category_no_calibration(run_and_images, tmp_path, capsys):
    run, images = run_and_images
    out = tmp_path / "pred"
    one = next(f for f in sorted(images.iterdir()) if "good" not in f.name)   # not among the *_good.png below
    code, _, err = run_cli(["predict", "--run", run, "--images", one, "--out", out, "--category", "tile",
                            "--prior", "per-class", "--no-calibrate"], capsys)
    assert code == 0, err
    (row,) = read_rows(out)
    assert row["image"] == str(one) and row["normal_percentile"] == "" and row["anomalous"] == ""

    info = json.loads((out / "predictions.json").read_text())
    assert info["category"] == "tile" and info["prior"] == "per-class" and not info["calibrated_on_normal_test_images"]

    # a quoted glob pattern is expanded (sorted); one that matches nothing is an error
    code, _, err = run_cli(["predict", "--run", run, "--images", images / "*_good.png", "--out", out, "--force",
                            "--no-calibrate"], capsys)
    assert code == 0, err
    assert [r["image"] for r in read_rows(out)] == [str(f) for f in sorted(images.glob("*_good.png"))]
    assert sorted(p.name for p in (out / "maps").iterdir()) == sorted(Path(r["map"]).name for r in read_rows(out))
    assert_usage_error(run_cli(["predict", "--run", run, "--images", images / "*.jpg", "--out", out, "--force"],
                               capsys), "no file matches", "*.jpg")


def test_predict_bad_input(run_and_images, tmp_path, capsys):
    run, images = run_and_images
    out = tmp_path / "pred"
    assert_usage_error(run_cli(["predict", "--run", run, "--images", tmp_path / "nope.png", "--out", out], capsys),
                       "nope.png")
    (tmp_path / "notes.txt").write_text("not an image")
    assert_usage_error(run_cli(["predict", "--run", run, "--images", tmp_path / "notes.txt", "--out", out], capsys),
                       "notes.txt", "not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    assert_usage_error(run_cli(["predict", "--run", run, "--images", tmp_path / "broken.png", "--out", out], capsys),
                       "broken.png")
    (tmp_path / "empty").mkdir()
    assert_usage_error(run_cli(["predict", "--run", run, "--images", tmp_path / "empty", "--out", out], capsys),
                       "empty")
    assert_usage_error(run_cli(["predict", "--run", run, "--images", images, "--out", out, "--category", "carpet"],
                               capsys), "carpet", "tile, weave, disc")
    assert_usage_error(run_cli(["predict", "--run", run, "--images", images, "--out", out, "--prior", "per-class"],
                               capsys), "--category")
    assert_usage_error(run_cli(["predict", "--run", tmp_path / "norun", "--images", images, "--out", out], capsys),
                       "norun")
    assert not out.exists()


def test_normal_percentile():
    np.testing.assert_allclose(normal_percentile([0.5, 2.0, 2.5, 10.0], [4.0, 1.0, 3.0, 2.0]), [0, 25, 50, 100])
    with pytest.raises(ValueError):
        normal_percentile([1.0], [])
    assert normal_percentile(torch.tensor([1.0]).numpy(), np.array([0.0]))[0] == 100


def test_an_unreadable_image_half_way_leaves_earlier_predictions_whole(run_and_images, tmp_path, capsys):
    run, images = run_and_images
    out = tmp_path / "pred"
    assert run_cli(["predict", "--run", run, "--images", images, "--out", out, "--no-calibrate"], capsys)[0] == 0
    before = (out / "predictions.csv").read_text(), sorted(p.name for p in (out / "maps").iterdir())
    broken = tmp_path / "zz_broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    assert_usage_error(run_cli(["predict", "--run", run, "--images", images, broken, "--out", out, "--force",
                                "--no-calibrate"], capsys), "zz_broken.png")
    assert (out / "predictions.csv").read_text() == before[0]
    assert sorted(p.name for p in (out / "maps").iterdir()) == before[1]
    assert not (out / "maps.partial").exists()


def test_score_files_in_chunks_equals_one_pass(run_and_images):
    run, images = run_and_images
    trained = load_trained(run / "model.pt")
    files = sorted(images.iterdir())
    chunks = list(score_files(trained, files, "weave", "per-class", chunk=4))
    assert [len(c) for c, _ in chunks] == [4, 2]
    whole = score(trained, load_images(files, 32, "weave", trained.category_names), "per-class")
    np.testing.assert_allclose(np.concatenate([r["image"] for _, r in chunks]), whole["image"], rtol=1e-5)
    with pytest.raises(ValueError, match="carpet"):
        next(score_files(trained, files, "carpet"))


def test_an_interrupt_hints_resume_only_for_train(monkeypatch, capsys):
    from pvqae_lib.commands import predict, train

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(predict, "command", interrupted)
    monkeypatch.setattr(train, "command", interrupted)
    code, _, err = run_cli(["predict", "--run", "r", "--images", "i", "--out", "o"], capsys)
    assert code == 130 and err.strip() == "interrupted"
    code, _, err = run_cli(["train", "--out", "r"], capsys)
    assert code == 130 and "--resume" in err


def test_standardized_chunks_use_normal_maps_computed_once(run_and_images, monkeypatch):
    """score(reference=normal_maps(...)) equals score(normal_set=...), and score_files scores the
    normal images once, not once per chunk."""
    import pvqae_lib.engine.scorers as scorers
    run, images = run_and_images
    trained = load_trained(run / "model.pt")
    files = sorted(images.iterdir())
    train_set = load_split(json.loads((run / "config.json").read_text()), "train")
    cfg = ScoreConfig(standardize=True)
    whole = score(trained, load_images(files, 32, "disc", trained.category_names), "universal", cfg,
                  normal_set=train_set)
    reference = normal_maps(trained, train_set, "universal", cfg)
    assert sorted(reference) == sorted(trained.category_names)
    calls = []
    real = scorers.score_dataset
    monkeypatch.setattr(scorers, "score_dataset", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    chunks = list(score_files(trained, files, "disc", "universal", cfg, reference, chunk=4))
    assert calls == [4, 2]                       # the chunks only: no normal image scored again
    np.testing.assert_allclose(np.concatenate([r["image"] for _, r in chunks]), whole["image"], rtol=1e-5)


def test_predict_standardized(run_and_images, tmp_path, capsys):
    run, images = run_and_images
    out = tmp_path / "pred"
    code, _, err = run_cli(["predict", "--run", run, "--images", images, "--out", out, "--standardize",
                            "--category", "weave"], capsys)
    assert code == 0, err
    trained = load_trained(run / "model.pt")
    train_set = load_split(json.loads((run / "config.json").read_text()), "train")
    expected = score(trained, load_images(sorted(images.iterdir()), 32, "weave", trained.category_names),
                     "universal", ScoreConfig(standardize=True), normal_set=train_set)["image"]
    np.testing.assert_allclose([float(r["score"]) for r in read_rows(out)], expected, rtol=1e-4)
    assert json.loads((out / "predictions.json").read_text())["standardized"] is True
