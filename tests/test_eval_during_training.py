"""Held-out evaluation during training (TrainConfig.eval_every): a learning curve in history['eval'],
for the pixel and the feature loop, that changes nothing about training and survives --resume."""
import json
from dataclasses import replace

import pytest
import torch
from conftest import tiny_model_config, tiny_profile, tiny_train_config

from pvqae_lib.config import get_profile, with_backbone
from pvqae_lib.data import make_synthetic
from pvqae_lib.engine import pipeline
from pvqae_lib.engine.train import load_checkpoint, train_autoencoder
from pvqae_lib.runs.folder import CHECKPOINT

pytestmark = pytest.mark.usefixtures("one_thread")
MODEL = tiny_model_config()


@pytest.fixture(scope="module")
def data():
    train = make_synthetic("train", 32, categories=["tile", "disc"], num_per_category=6, seed=0)
    test = make_synthetic("test", 32, categories=["tile", "disc"], num_per_category=6, seed=0)
    return train, test


def cfg(**kw):
    return tiny_train_config(**{"epochs": 3, "batch_size": 6, "eval_every": 2, **kw})


def same_weights(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


class Interrupt(Exception):
    pass


def test_pixel_loop_scores_the_held_out_set_every_n_epochs_and_at_the_end(data, tmp_path):
    train, test = data
    model, history = train_autoencoder(train, MODEL, cfg(), progress=False, eval_set=test)
    assert [p["epoch"] for p in history["eval"]] == [2, 3]
    for point in history["eval"]:
        assert set(point) == {"epoch", "image_auroc", "pixel_auroc"}
        assert 0 <= point["image_auroc"] <= 1 and 0 <= point["pixel_auroc"] <= 1
    # the last point is what evaluate reports for S_recon (no prior) of the finished autoencoder
    trained = pipeline.Trained(model, MODEL, list(train.category_names))
    result = pipeline.evaluate(trained, test, "none")
    assert history["eval"][-1]["image_auroc"] == result["image_auroc"]
    assert history["eval"][-1]["pixel_auroc"] == result["pixel_auroc"]
    # scoring in between does not change training
    plain, plain_history = train_autoencoder(train, MODEL, cfg(eval_every=0), progress=False)
    assert same_weights(model, plain) and "eval" not in plain_history
    assert history["loss"] == plain_history["loss"]


def test_the_curve_continues_after_resume(data, tmp_path):
    train, test = data
    _, straight = train_autoencoder(train, MODEL, cfg(epochs=2, eval_every=1), progress=False, eval_set=test)

    def stop(epoch, model):
        raise Interrupt

    with pytest.raises(Interrupt):
        train_autoencoder(train, MODEL, cfg(epochs=2, eval_every=1), out_dir=tmp_path, progress=False, eval_set=test,
                          epoch_callback=stop)
    assert [p["epoch"] for p in load_checkpoint(tmp_path / CHECKPOINT)["history"]["eval"]] == [1]
    _, resumed = train_autoencoder(train, MODEL, cfg(epochs=2, eval_every=1), out_dir=tmp_path, resume=True,
                                   progress=False, eval_set=test)
    assert resumed["eval"] == straight["eval"] and [p["epoch"] for p in resumed["eval"]] == [1, 2]


def test_eval_every_needs_an_eval_set(data):
    with pytest.raises(ValueError, match="needs eval_set"):
        train_autoencoder(data[0], MODEL, cfg(), progress=False)
    with pytest.raises(ValueError, match="eval_every"):
        tiny_train_config(eval_every=-1)


def test_fit_passes_the_eval_set_and_the_curve_is_saved_with_the_model(data, tmp_path):
    train, test = data
    profile = tiny_profile(train=cfg(epochs=2, eval_every=1))
    trained = pipeline.fit(train, profile, progress=False, eval_set=test)
    assert [p["epoch"] for p in trained.history["eval"]] == [1, 2]
    pipeline.save_trained(trained, tmp_path / "model.pt")
    again = pipeline.load_trained(tmp_path / "model.pt")
    assert again.history["eval"] == trained.history["eval"]
    json.dumps(trained.history)                   # what the run folder writes as history.json


def test_feature_loop_scores_the_held_out_set(tmp_path, monkeypatch):
    monkeypatch.setenv("PVQAE_CACHE", str(tmp_path / "cache"))
    p = with_backbone(get_profile("quick"), "efficientnet-lite0")
    p = replace(p, model=replace(p.model, image_size=64), train=replace(p.train, epochs=2, eval_every=1),
                prior=replace(p.prior, steps=5))
    train = make_synthetic("train", 64, categories=["tile"], num_per_category=16, seed=0)
    test = make_synthetic("test", 64, categories=["tile"], num_per_category=10, seed=0)
    trained = pipeline.fit(train, p, progress=False, eval_set=test)
    assert [q["epoch"] for q in trained.history["eval"]] == [1, 2]
    result = pipeline.evaluate(trained, test, "none")
    assert trained.history["eval"][-1]["image_auroc"] == pytest.approx(result["image_auroc"])
    plain = pipeline.fit(train, replace(p, train=replace(p.train, eval_every=0)), progress=False)
    assert same_weights(trained.model, plain.model)
