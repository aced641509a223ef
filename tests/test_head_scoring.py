"""Tests for LFQUIAD as a whole run: ``fit`` trains the segmentation head with
``profile.head.enabled``, it is saved and loaded with the model, ``score(cfg.scorer='head')``,
``evaluate --scorer head`` and ``predict --scorer head`` use its maps, and ``train
--restore-anomalies`` (the reconstructive training) is recorded in the run."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import TINY_TRAIN_ARGS, assert_usage_error, fit_tiny, run_cli, tiny_profile

from pvqae_lib.config import HeadConfig, ScoreConfig
from pvqae_lib.data import make_synthetic
from pvqae_lib.engine import pipeline
from pvqae_lib.engine.segmentation import head_maps

pytestmark = pytest.mark.usefixtures("one_thread", "cpu_quick")

HEAD = ScoreConfig(scorer="head")


@pytest.fixture(scope="module")
def with_head():
    return fit_tiny(replace(tiny_profile(), head=HeadConfig(enabled=True, steps=3, batch_size=4)), seed=0)


@pytest.fixture(scope="module")
def test_data():
    return make_synthetic("test", 32, num_per_category=4)


def test_config_checks():
    with pytest.raises(ValueError, match="scorer"):
        ScoreConfig(scorer="dice")
    with pytest.raises(ValueError, match="head steps"):
        HeadConfig(steps=0)


def test_fit_trains_a_head_only_when_asked(with_head):
    assert with_head.head is not None and not with_head.head.training
    assert len(with_head.history["head"]["loss"]) == 3
    assert fit_tiny(tiny_profile(), seed=0).head is None


def test_head_scorer_uses_the_heads_maps(with_head, test_data):
    sc = pipeline.score(with_head, test_data, "none", HEAD)
    maps, scores = head_maps(with_head.head, with_head.model, test_data.images, sigma=HEAD.head_sigma)
    np.testing.assert_allclose(sc["s"], maps.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sc["image"], scores.numpy(), rtol=1e-5, atol=1e-6)
    assert sc["s"].shape == (len(test_data), 32, 32) and (sc["s"] >= 0).all() and (sc["s"] <= 1).all()
    own = pipeline.score(with_head, test_data, "none")
    assert not np.allclose(own["s"], sc["s"])                 # the default scorer is still S
    np.testing.assert_array_equal(own["routed"], sc["routed"])
    result = pipeline.evaluate(with_head, test_data, "none", HEAD)
    assert 0 <= result["image_auroc"] <= 1 and len(result["per_category"]) == 3


def test_standardized_head_maps_are_compared_with_the_heads_normal_maps(with_head, test_data):
    from pvqae_lib.engine.scoring import standardize
    normal = make_synthetic("train", 32, num_per_category=3)
    sc = pipeline.score(with_head, test_data, "none", replace(HEAD, standardize=True), normal_set=normal)
    raw, ref = pipeline.score(with_head, test_data, "none", HEAD), pipeline.score(with_head, normal, "none", HEAD)
    for c in range(3):
        sel, ref_sel = test_data.categories.numpy() == c, normal.categories.numpy() == c
        np.testing.assert_allclose(sc["s"][sel], standardize(raw["s"][sel], ref["s"][ref_sel]), rtol=1e-5, atol=1e-5)


def test_head_scorer_errors(with_head, test_data):
    with pytest.raises(ValueError, match="prior must be none"):
        pipeline.score(with_head, test_data, "universal", HEAD)
    without = fit_tiny(tiny_profile(), seed=0)
    with pytest.raises(ValueError, match="no segmentation head"):
        pipeline.score(without, test_data, "none", HEAD)


def test_the_head_survives_save_and_load(with_head, test_data, tmp_path):
    pipeline.save_trained(with_head, tmp_path / "model.pt")
    loaded = pipeline.load_trained(tmp_path / "model.pt")
    for name, tensor in with_head.head.state_dict().items():
        torch.testing.assert_close(loaded.head.state_dict()[name], tensor, msg=name)
    np.testing.assert_array_equal(pipeline.score(loaded, test_data, "none", HEAD)["image"],
                                  pipeline.score(with_head, test_data, "none", HEAD)["image"])


def test_cli_train_head_evaluate_and_predict(tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--out", run, "--quantizer", "lfq", "--codebook-size", "65536",
                            "--restore-anomalies", "--head", "--head-steps", "2", *TINY_TRAIN_ARGS], capsys)
    assert code == 0, err
    config = json.loads((run / "config.json").read_text())["profile"]
    assert config["head"]["enabled"] is True and config["head"]["steps"] == 2
    assert config["train"]["restore_anomalies"] is True and config["model"]["quantizer"] == "lfq"
    assert len(json.loads((run / "history.json").read_text())["head"]["loss"]) == 2

    out = tmp_path / "head.json"
    code, stdout, err = run_cli(["evaluate", "--run", run, "--scorer", "head", "--json", out], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    assert result["config"]["score"]["scorer"] == "head" and result["prior"] == "none"
    assert "segmentation head" in stdout and 0 <= result["image_auroc"] <= 1
    assert_usage_error(run_cli(["evaluate", "--run", run, "--scorer", "head", "--prior", "universal",
                                "--json", tmp_path / "x.json"], capsys), "--prior")

    images = make_synthetic("test", 32, categories=["tile"], num_per_category=2)
    folder = tmp_path / "images"
    folder.mkdir()
    from PIL import Image
    for i, x in enumerate(images.images):
        Image.fromarray((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(folder / f"{i}.png")
    code, stdout, err = run_cli(["predict", "--run", run, "--images", folder, "--category", "tile",
                                 "--scorer", "head", "--out", tmp_path / "pred"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "pred" / "predictions.json").read_text())["scorer"] == "head"
    assert len((tmp_path / "pred" / "predictions.csv").read_text().strip().splitlines()) == 1 + len(images)


def test_cli_head_errors(tmp_path, capsys):
    assert_usage_error(run_cli(["train", "--out", tmp_path / "r", "--head-steps", "5", *TINY_TRAIN_ARGS], capsys),
                       "--head-steps", "--head")
    run = tmp_path / "plain"
    assert run_cli(["train", "--out", run, *TINY_TRAIN_ARGS], capsys)[0] == 0
    assert_usage_error(run_cli(["evaluate", "--run", run, "--scorer", "head", "--json", tmp_path / "x.json"], capsys),
                       str(run), "--head")
