"""PVQAE and PatchCore on the frozen pyramid, end to end: fit, save, load, evaluate, the command line."""
import json
from dataclasses import replace

import numpy as np
import pytest

from pvqae_lib.cli import main
from pvqae_lib.config import get_profile, with_backbone
from pvqae_lib.data import make_synthetic
from pvqae_lib.engine.pipeline import evaluate, fit, load_trained, save_trained, score

SIZE = 64        # small images: the pyramid's grids are 2/4/8 cells, the test stays fast


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PVQAE_CACHE", str(tmp_path / "cache"))


def profile(model, **train):
    p = with_backbone(get_profile("quick"), "efficientnet-lite0")
    return replace(p, model=replace(p.model, model=model, image_size=SIZE),
                   train=replace(p.train, **{"epochs": 3, **train}),
                   prior=replace(p.prior, steps=20))


def data():
    train = make_synthetic("train", SIZE, categories=["tile"], num_per_category=24, seed=0)
    test = make_synthetic("test", SIZE, categories=["tile"], num_per_category=40, seed=0)
    return train, test


def test_patchcore_detects_synthetic_defects_and_round_trips(tmp_path):
    train, test = data()
    trained = fit(train, profile("patchcore"), progress=False)
    result = evaluate(trained, test, prior="none")
    assert result["image_auroc"] > 0.75 and result["pixel_auroc"] > 0.75      # well above chance (0.5)
    save_trained(trained, tmp_path / "model.pt")
    again = load_trained(tmp_path / "model.pt")
    assert np.array_equal(score(again, test, "none")["s"], score(trained, test, "none")["s"])


def test_feature_pvqae_trains_priors_and_scores(tmp_path):
    train, test = data()
    trained = fit(train, profile("pvqae"), out_dir=tmp_path / "run", progress=False)
    assert set(trained.priors) == {"universal", "per-class"}
    assert len(trained.history["rec"]) == 3 * (24 // 16)
    for prior in ("none", "universal"):
        sc = score(trained, test, prior)
        assert sc["s"].shape == (len(test), SIZE, SIZE) and sc["routed"].shape == (len(test), 2, 2)
        assert np.isfinite(sc["s"]).all()
    result = evaluate(trained, test)
    assert 0 <= result["image_auroc"] <= 1 and len(result["resolution_share"]["normal"]) == 3
    save_trained(trained, tmp_path / "model.pt")
    again = load_trained(tmp_path / "model.pt")
    assert np.allclose(score(again, test, "universal")["s"], score(trained, test, "universal")["s"])


def test_head_scorer_refuses_a_feature_model():
    train, test = data()
    trained = fit(train, profile("ae"), progress=False)
    from pvqae_lib.config import ScoreConfig
    with pytest.raises(ValueError, match="pixel models only"):
        score(trained, test, "none", ScoreConfig(scorer="head"))


@pytest.mark.parametrize("argv, message", [
    (["--model", "patchcore"], "--model patchcore: model must be one of pvqae, vqvae with the pixel backbone"),
    (["--model", "ae"], "--model ae: model must be one of pvqae, vqvae with the pixel backbone"),
    (["--feature-noise", "0.1"], "--feature-noise and --coreset-ratio apply with a feature --backbone only"),
    (["--backbone", "efficientnet-lite0", "--coreset-ratio", "0.1"], "--coreset-ratio applies to --model patchcore"),
    (["--backbone", "efficientnet-lite0", "--head"], "--head sits on the pixel model only"),
    (["--backbone", "efficientnet-lite0", "--restore-anomalies"], "--restore-anomalies trains the pixel model only"),
    (["--backbone", "efficientnet-lite0", "--image-size", "48"], "image_size must be a multiple of 32"),
    (["--backbone", "efficientnet-lite0", "--feature-noise", "nan"], "--feature-noise"),
    (["--backbone", "efficientnet-lite0", "--model", "patchcore", "--epochs", "3", "--lr", "0.1"],
     "--epochs, --lr do nothing with --model patchcore"),
    (["--backbone", "efficientnet-lite0", "--feature-model", "decoder", "--width", "16"],
     "--width do nothing with --backbone efficientnet-lite0"),
    (["--backbone", "efficientnet-lite0", "--width", "16"],
     "--width do nothing with --model pvqae --feature-model bank"),
    (["--backbone", "efficientnet-lite0", "--code-dim", "8"],
     "--code-dim do nothing with --model pvqae --feature-model bank"),
    (["--backbone", "efficientnet-lite0", "--feature-model", "decoder", "--bank-size", "8"],
     "--bank-size apply to the code bank (--feature-model bank) only"),
    (["--backbone", "efficientnet-lite0", "--model", "membank", "--feature-model", "decoder"],
     "model 'membank' is the code bank's one-level model"),
    (["--feature-model", "bank"], "feature_model 'bank' needs a feature backbone"),
])
def test_train_refuses_feature_flags_that_do_not_apply(tmp_path, capsys, argv, message):
    out = tmp_path / "run"
    try:
        code = main(["train", "--out", str(out), "--quiet", *argv])
    except SystemExit as e:                             # argparse's own checks exit directly
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[0]
    assert not out.exists()                             # a refused start leaves nothing behind


def test_cli_train_evaluate_patchcore(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--backbone", "efficientnet-lite0", "--model", "patchcore", "--image-size", str(SIZE),
                 "--category", "tile", "--num-train", "16", "--out", str(out), "--quiet"]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["profile"]["model"]["backbone"] == "efficientnet-lite0"
    assert config["profile"]["train"]["augment"] is False
    assert main(["evaluate", "--run", str(out), "--json", str(tmp_path / "e.json")]) == 0
    result = json.loads((tmp_path / "e.json").read_text())
    assert "efficientnet-lite0" in json.dumps(result)
    assert 0 <= result["image_auroc"] <= 1
    assert "patchcore" in capsys.readouterr().out
