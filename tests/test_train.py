"""Tests for pvqae_lib.engine.train and pvqae_lib.engine.pipeline: the training loop, checkpoints, resume, the cache."""
import json
from dataclasses import asdict, replace

import numpy as np
import pytest
import torch
from conftest import fit_tiny, tiny_model_config, tiny_prior_config, tiny_train_set

from pvqae_lib import book, paths
from pvqae_lib.book import changed_settings
from pvqae_lib.config import ModelConfig, Profile, TrainConfig, quick_profile
from pvqae_lib.data import make_synthetic
from pvqae_lib.engine import pipeline
from pvqae_lib.engine.train import CHECKPOINT, LR_FLOOR, CheckpointError, load_checkpoint, lr_at, train_autoencoder

MODEL = tiny_model_config()
PRIOR = tiny_prior_config(batch_size=16)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return tiny_train_set()                                      # 12 images


@pytest.fixture(scope="module")
def test_data():
    return make_synthetic("test", 32, num_per_category=6)       # 18 images, 12 defective


def train_cfg(**kw):
    return TrainConfig(**{**dict(epochs=2, batch_size=4, lambda_max=1.25, schedule="linear"), **kw})


@pytest.fixture(scope="module")
def two_epochs(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("straight")
    model, history = train_autoencoder(data, MODEL, train_cfg(), out_dir=out, progress=False)
    return out, model, history


def test_two_epoch_run_writes_checkpoint_atomically(two_epochs):
    out, model, history = two_epochs
    assert (out / CHECKPOINT).is_file()
    assert not list(out.glob("*.tmp"))
    ckpt = load_checkpoint(out / CHECKPOINT, kind="pvqae")
    assert ckpt["epoch"] == 2
    assert ckpt["model_config"]["image_size"] == 32 and ckpt["train_config"]["epochs"] == 2
    for k, v in model.state_dict().items():
        assert torch.equal(ckpt["model"][k], v), k
    assert not model.training


def test_history_lambda_is_linear_and_shares_sum_to_one(two_epochs):
    _, _, history = two_epochs
    steps = 2 * (12 // 4)
    lam = np.array(history["lambda"])
    assert len(lam) == steps and len(history["loss"]) == steps
    np.testing.assert_allclose(lam, 1.25 * np.arange(steps) / (steps - 1))
    shares = np.array([history[f"share_{r}"] for r in range(3)])
    np.testing.assert_allclose(shares.sum(0), 1.0, atol=1e-6)
    assert np.isfinite(history["loss"]).all()
    assert len(history["epoch_seconds"]) == 2
    # the discriminator joins halfway (disc_start = 0.5)
    g = np.array(history["g_loss"])
    assert (g[:steps // 2] == 0).all() and (g[steps // 2:] > 0).all()


def test_lr_schedules():
    assert lr_at(0.0, 1e-3, "constant") == lr_at(1.0, 1e-3, "constant") == 1e-3
    assert lr_at(0.0, 1e-3, "cosine") == pytest.approx(1e-3)
    assert lr_at(0.5, 1e-3, "cosine") == pytest.approx(1e-3 * (LR_FLOOR + (1 - LR_FLOOR) / 2))
    assert lr_at(1.0, 1e-3, "cosine") == pytest.approx(1e-3 * LR_FLOOR)
    curve = [lr_at(p, 1.0, "cosine") for p in np.linspace(0, 1, 11)]
    assert all(a > b for a, b in zip(curve, curve[1:]))
    with pytest.raises(ValueError, match="lr_schedule"):
        TrainConfig(lr_schedule="step")


def test_history_lr_follows_the_cosine_schedule(two_epochs):
    _, _, history = two_epochs
    steps = len(history["loss"])
    expected = [lr_at(t / (steps - 1), train_cfg().lr, "cosine") for t in range(steps)]
    np.testing.assert_allclose(history["lr"], expected)
    assert history["lr"][0] > history["lr"][-1]


def test_vqvae_history_has_no_budget(data):
    cfg = ModelConfig(**{**MODEL.__dict__, "model": "vqvae"})
    _, history = train_autoencoder(data, cfg, train_cfg(epochs=1, disc_weight=0), progress=False)
    assert history["budget"] == [0.0] * 3
    assert history["share_2"] == [1.0] * 3


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], atol=1e-6, rtol=0, msg=k)


def test_restore_anomalies_trains_on_painted_inputs_against_normal_targets(data, monkeypatch):
    from pvqae_lib.engine import train as train_module
    seen, real_step = [], train_module.train_step

    def spy(parts, x, lam, adv_on, target=None, entropy=None):
        seen.append((x.clone(), target.clone()))
        return real_step(parts, x, lam, adv_on, target=target, entropy=entropy)

    monkeypatch.setattr(train_module, "train_step", spy)
    train_autoencoder(data, MODEL, train_cfg(epochs=1, restore_anomalies=True), progress=False)
    changed = torch.stack([(x != t).flatten(1).any(1) for x, t in seen]).flatten()
    assert 0 < changed.sum() < len(changed)              # about half the inputs carry an anomaly
    seen.clear()
    train_autoencoder(data, MODEL, train_cfg(epochs=1), progress=False)
    assert all(torch.equal(x, t) for x, t in seen)        # by default the model rebuilds its input


class Interrupt(Exception):
    pass


def test_resume_after_interruption_equals_straight_run(data, two_epochs, tmp_path):
    """Kill a 2-epoch run after epoch 1, resume it: the same weights as training straight through."""
    _, straight, straight_history = two_epochs

    def stop(epoch, model):
        raise Interrupt

    with pytest.raises(Interrupt):
        train_autoencoder(data, MODEL, train_cfg(), out_dir=tmp_path, progress=False, epoch_callback=stop)
    ckpt = load_checkpoint(tmp_path / CHECKPOINT)
    assert ckpt["epoch"] == 1
    assert ckpt["cuda_rng"] == []   # the GPU generator's state is kept only where training ran on a GPU
    resumed, history = train_autoencoder(data, MODEL, train_cfg(), out_dir=tmp_path, resume=True, progress=False)
    _same_weights(resumed, straight)
    np.testing.assert_allclose(history["loss"], straight_history["loss"], rtol=1e-5)


def test_extending_a_run_equals_a_longer_run(data, tmp_path):
    """epochs=1 in a dir, then resume with epochs=2 == 2 epochs straight.

    Only when nothing depends on the total length: λ and the learning rate constant and no
    discriminator (whose start, the linear/cosine λ and the cosine learning rate are fractions of
    the *planned* training, so they differ by design otherwise).
    """
    cfg = dict(schedule="constant", lr_schedule="constant", disc_weight=0.0)
    straight, _ = train_autoencoder(data, MODEL, train_cfg(**cfg), out_dir=tmp_path / "a", progress=False)
    train_autoencoder(data, MODEL, train_cfg(epochs=1, **cfg), out_dir=tmp_path / "b", progress=False)
    resumed, history = train_autoencoder(data, MODEL, train_cfg(**cfg), out_dir=tmp_path / "b", resume=True,
                                         progress=False)
    _same_weights(resumed, straight)
    assert len(history["loss"]) == 6
    assert load_checkpoint(tmp_path / "b" / CHECKPOINT)["epoch"] == 2


def test_load_checkpoint_errors(two_epochs, tmp_path):
    out, _, _ = two_epochs
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint\x00\x01")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(garbage)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a pvqae_lib checkpoint"):
        load_checkpoint(foreign)
    with pytest.raises(CheckpointError, match="pvqae model, not vqvae"):
        load_checkpoint(out / CHECKPOINT, kind="vqvae")
    with pytest.raises(CheckpointError):     # resuming as the other kind fails the same way
        train_autoencoder(data_stub(), ModelConfig(**{**MODEL.__dict__, "model": "vqvae"}), train_cfg(),
                          out_dir=out, resume=True, progress=False)


def data_stub():
    return make_synthetic("train", 32, categories=["tile"], num_per_category=4)


@pytest.fixture(scope="module")
def profile():
    return Profile("test", MODEL, TrainConfig(epochs=1, batch_size=6), PRIOR, num_train=4, num_test=6)


@pytest.fixture(scope="module")
def fitted(data, profile):
    return fit_tiny(profile, data)


def test_fit_and_evaluate_end_to_end(fitted, test_data):
    assert set(fitted.priors) == {"universal", "per-class"}
    assert fitted.priors["per-class"].num_classes == 3 and fitted.priors["universal"].num_classes == 1
    for prior in ("universal", "per-class", "none"):
        result = pipeline.evaluate(fitted, test_data, prior)
        for key in ("image_auroc", "pixel_auroc", "pro", "per_category", "per_kind", "resolution_share"):
            assert key in result, key
        assert 0 <= result["image_auroc"] <= 1 and 0 <= result["pixel_auroc"] <= 1 and 0 <= result["pro"] <= 1
        assert [r["category"] for r in result["per_category"]] == ["tile", "weave", "disc"]
        assert {r["kind"] for r in result["per_kind"]} == {"scratch", "hole", "crack", "stain"}
        for part in ("normal", "defective"):
            assert len(result["resolution_share"][part]) == 3
            assert sum(result["resolution_share"][part]) == pytest.approx(1.0, abs=1e-3)
    with pytest.raises(ValueError, match="prior"):
        pipeline.evaluate(fitted, test_data, "global")


def test_evaluate_standardized_against_normal_images(fitted, test_data, data):
    from pvqae_lib.config import ScoreConfig
    from pvqae_lib.engine.scoring import standardize
    cfg = ScoreConfig(standardize=True)
    with pytest.raises(ValueError, match="normal_set"):
        pipeline.score(fitted, test_data, "none", cfg)
    raw = pipeline.score(fitted, test_data, "none")
    ref = pipeline.score(fitted, data, "none")
    sc = pipeline.score(fitted, test_data, "none", cfg, normal_set=data)
    for c in range(3):                                       # each category against its own normal maps
        sel, ref_sel = test_data.categories.numpy() == c, data.categories.numpy() == c
        np.testing.assert_allclose(sc["s"][sel], standardize(raw["s"][sel], ref["s"][ref_sel]), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(sc["image"], sc["s"].reshape(len(sc["s"]), -1).max(1))
    np.testing.assert_array_equal(sc["routed"], raw["routed"])
    result = pipeline.evaluate(fitted, test_data, "universal", cfg, normal_set=data)
    assert result["standardized"] is True and pipeline.evaluate(fitted, test_data, "none")["standardized"] is False
    tile_only = make_synthetic("train", 32, categories=["tile"], num_per_category=2)
    with pytest.raises(ValueError, match="weave"):
        pipeline.score(fitted, test_data, "none", cfg, normal_set=tile_only)


def test_save_and_load_trained_round_trip(fitted, test_data, tmp_path):
    path = tmp_path / "model.pt"
    pipeline.save_trained(fitted, path, extra={"run": {"note": 1}})
    loaded = pipeline.load_trained(path)
    assert loaded.category_names == fitted.category_names
    assert loaded.model_config == fitted.model_config
    assert loaded.history == fitted.history
    for prior in ("universal", "per-class"):
        a = pipeline.score(fitted, test_data, prior)
        b = pipeline.score(loaded, test_data, prior)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k], err_msg=f"{prior}/{k}")
    with pytest.raises(CheckpointError, match="training checkpoint"):
        ckpt = {"model_config": asdict(MODEL), "model": {}}
        torch.save(ckpt, tmp_path / "ckpt.pt")
        pipeline.load_trained(tmp_path / "ckpt.pt")


def test_trained_model_cache(data, profile, test_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PVQAE_CACHE", str(tmp_path / "cache"))
    calls = []
    real_fit = pipeline.fit

    def counting_fit(*args, **kwargs):
        calls.append(1)
        return real_fit(*args, **kwargs)

    monkeypatch.setattr(book, "fit", counting_fit)
    first = book.trained_model(profile, data, progress=False)
    assert len(calls) == 1
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    second = book.trained_model(profile, data, progress=False)
    assert len(calls) == 1                                           # loaded from disk, not retrained
    for k, v in first.model.state_dict().items():
        assert torch.equal(second.model.state_dict()[k], v)
    a, b = pipeline.score(first, test_data), pipeline.score(second, test_data)
    np.testing.assert_array_equal(a["image"], b["image"])
    # another configuration is another cache entry
    other = Profile("test", MODEL, TrainConfig(epochs=1, batch_size=6, seed=1), PRIOR, num_train=4, num_test=6)
    book.trained_model(other, data, progress=False)
    assert len(calls) == 2
    # a broken cache entry is retrained, not an error
    for f in (tmp_path / "cache").glob("*.pt"):
        f.write_bytes(b"broken")
    book.trained_model(profile, data, progress=False)
    assert len(calls) == 3


def test_fit_with_only_the_universal_prior_is_its_own_cache_entry(data, profile, test_data, tmp_path, monkeypatch):
    monkeypatch.setenv("PVQAE_CACHE", str(tmp_path / "cache"))
    only = book.trained_model(profile, data, progress=False, prior_kinds=("universal",))
    assert set(only.priors) == {"universal"}
    assert pipeline.evaluate(only, test_data, "universal")["image_auroc"] >= 0
    with pytest.raises(ValueError, match="per-class"):
        pipeline.score(only, test_data, "per-class")
    both = book.trained_model(profile, data, progress=False)
    assert set(both.priors) == {"universal", "per-class"}
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 2
    assert set(book.trained_model(profile, data, progress=False, prior_kinds=("universal",)).priors) == {"universal"}
    with pytest.raises(ValueError, match="prior_kinds"):
        pipeline.fit(data, profile, progress=False, prior_kinds=("global",))


def test_checkout_root_and_mtsd_root(tmp_path, monkeypatch):
    checkout = tmp_path / "checkout"
    (checkout / "pvqae_lib").mkdir(parents=True)
    (checkout / "book" / "deep").mkdir(parents=True)
    assert paths.checkout_root(checkout / "book" / "deep") is None           # no _toc.yml: not a checkout
    (checkout / "_toc.yml").write_text("root: book/intro\n")
    assert paths.checkout_root(checkout / "book" / "deep") == checkout.resolve()  # a notebook runs in book/
    assert paths.checkout_root(tmp_path) is None                          # beside the checkout
    monkeypatch.delenv("PVQAE_MTSD", raising=False)
    assert paths.mtsd_root(checkout / "book") == tmp_path.resolve() / "shared" / "data" / "mtsd"
    monkeypatch.setenv("PVQAE_MTSD", str(tmp_path / "elsewhere"))
    assert paths.mtsd_root(checkout / "book") == tmp_path / "elsewhere"


def test_changed_settings_names_what_a_run_changed_from_its_profile():
    """A recorded configuration (as JSON turns it: tuples become lists) against its named profile."""
    quick = quick_profile()
    assert changed_settings(json.loads(json.dumps(quick.to_dict()))) == {}
    run = replace(quick, model=replace(quick.model, tau=0.5, level_mults=(2, 4, 8)),
                  train=replace(quick.train, augment=False), num_train=40)
    assert changed_settings(json.loads(json.dumps(run.to_dict()))) == {
        "model.tau": 0.5, "model.level_mults": [2, 4, 8], "train.augment": False, "num_train": 40}


def test_committed_results_and_sweep_of_keep_one_varied_setting(tmp_path):
    """sweep_of keeps the profile point and the runs that changed only the swept setting (any model)."""
    assert book.committed_results(start=tmp_path) == {}                  # no checkout: nothing committed
    (tmp_path / "pvqae_lib").mkdir()
    (tmp_path / "_toc.yml").write_text("root: book/intro\n")
    results = tmp_path / paths.RESULTS_DIR
    results.mkdir(parents=True)
    quick = quick_profile()
    runs = {"profile": quick,
            "e100": replace(quick, train=replace(quick.train, epochs=100)),
            "e100_vqvae": replace(quick, model=replace(quick.model, model="vqvae"),
                                  train=replace(quick.train, epochs=100)),
            "e100_lmax": replace(quick, train=replace(quick.train, epochs=100, lambda_max=2.5)),
            "seed1": replace(quick, train=replace(quick.train, seed=1)),
            "e100_lfq": replace(quick, model=replace(quick.model, quantizer="lfq", codebook_size=2 ** 16),
                                train=replace(quick.train, epochs=100))}
    for name, profile in runs.items():
        (results / f"synthetic_{name}.json").write_text(json.dumps({"config": profile.to_dict()}))
    (results / "benchmark.json").write_text(json.dumps({"rows": []}))      # no configuration: never in a sweep
    committed = book.committed_results("synthetic_*.json", start=tmp_path / paths.RESULTS_DIR)
    assert list(committed) == sorted(f"synthetic_{n}.json" for n in runs)
    assert book.sweep_of(committed, "train.epochs") == {
        "synthetic_profile.json": quick.train.epochs, "synthetic_e100.json": 100, "synthetic_e100_vqvae.json": 100}
    assert book.sweep_of(committed, "train.seed") == {"synthetic_profile.json": 0, "synthetic_seed1.json": 1}
    with_lfq = book.sweep_of(committed, "train.epochs", besides=("model.quantizer", "model.codebook_size"))
    assert with_lfq == {**book.sweep_of(committed, "train.epochs"), "synthetic_e100_lfq.json": 100}
    assert book.sweep_of(book.committed_results(start=tmp_path), "train.seed")["synthetic_seed1.json"] == 1


@pytest.mark.parametrize("model, quantizer", [("pvqae", "vq"), ("vqvae", "vq"), ("pvqae", "lfq")])
def test_a_step_under_float16_autocast(model, quantizer):
    """The mixed-precision step that CUDA runs (float16 autocast, a gradient scaler), run here on the
    CPU: every op accepts the half-precision tensors autocast makes, the losses are finite, and the
    autoencoder and the discriminator both learn."""
    from pvqae_lib.engine.train import StepParts, train_step
    from pvqae_lib.nn.discriminator import PatchDiscriminator
    from pvqae_lib.nn.factory import build_model
    torch.manual_seed(0)
    lfq = {"codebook_size": 256, "code_dim": 8} if quantizer == "lfq" else {}
    mc = replace(tiny_model_config(), model=model, quantizer=quantizer, **lfq)
    net, disc = build_model(mc), PatchDiscriminator(width=16)
    before = [p.detach().clone() for p in (*net.parameters(), *disc.parameters())]
    parts = StepParts(net, net, disc, disc, torch.optim.Adam(net.parameters(), lr=1e-3),
                      torch.optim.Adam(disc.parameters(), lr=1e-3), torch.amp.GradScaler("cpu"),
                      TrainConfig(), mc, True, 1)
    x = torch.rand(4, 3, mc.image_size, mc.image_size)
    dtypes = []
    net.decoder.register_forward_hook(lambda module, inputs, output: dtypes.append(output.dtype))
    for _ in range(2):
        logs = train_step(parts, x, lam=0.5, adv_on=True)
    assert dtypes and set(dtypes) == {torch.float16}        # the step really ran in half precision
    assert all(np.isfinite(v) for v in logs.values())
    after = [*net.parameters(), *disc.parameters()]
    changed = [not torch.equal(a, b) for a, b in zip(before, after)]
    assert any(changed[:len(list(net.parameters()))]) and any(changed[len(list(net.parameters())):])
