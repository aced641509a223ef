"""One trainer builder (train.build_trainer) for the training loop, benchmark, the chapters and the feature
models (no discriminator)."""
import pytest
import torch
from conftest import tiny_model_config, tiny_train_config, tiny_train_set

from pvqae_lib.engine import benchmark, train
from pvqae_lib.engine.train import ADAM_BETAS, build_trainer, train_step

pytestmark = pytest.mark.usefixtures("one_thread")


def test_build_trainer_gives_what_train_step_needs():
    parts = build_trainer(tiny_model_config(), tiny_train_config(lr=3e-4), "cpu", seed=0)
    assert parts.net is parts.model and parts.net_d is parts.disc and parts.world == 1
    for opt, module in ((parts.opt, parts.model), (parts.opt_d, parts.disc)):
        group = opt.param_groups[0]
        assert group["betas"] == ADAM_BETAS and group["lr"] == 3e-4
        assert {id(p) for p in group["params"]} == {id(p) for p in module.parameters()}
    assert not parts.use_amp and not parts.scaler.is_enabled()          # AMP only on CUDA
    again = build_trainer(tiny_model_config(), tiny_train_config(lr=3e-4), "cpu", seed=0)
    assert all(torch.equal(a, b) for a, b in zip(parts.model.state_dict().values(), again.model.state_dict().values()))
    before = [p.detach().clone() for p in parts.model.parameters()]
    logs = train_step(parts, torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0)), 0.5, True)
    assert torch.isfinite(torch.tensor(logs["loss"]))
    assert any(not torch.equal(b, p) for b, p in zip(before, parts.model.parameters()))


def test_the_training_loop_and_benchmark_build_through_it(monkeypatch):
    built = []
    real = train.build_trainer

    def spy(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(train, "build_trainer", spy)
    train.train_autoencoder(tiny_train_set(32, 2), tiny_model_config(), tiny_train_config(), progress=False)
    monkeypatch.setattr(benchmark, "build_trainer", spy)
    benchmark._measure("vqvae", 32, 2, 1, "cpu", "quick")
    assert len(built) == 2
    assert all(p.opt.param_groups[0]["betas"] == ADAM_BETAS for p in built)   # benchmark had drifted to (0.9, 0.999)


def test_a_feature_trainer_has_no_discriminator_and_standardizes_with_the_training_maps():
    from pvqae_lib.config import ModelConfig
    from pvqae_lib.nn.backbones import backbone_channels
    g = torch.Generator().manual_seed(0)
    channels = backbone_channels("efficientnet-lite0")
    levels = [3 + 2 * torch.randn(6, c, 64 // s, 64 // s, generator=g) for c, s in zip(channels, (32, 16, 8))]
    cfg = ModelConfig(backbone="efficientnet-lite0", image_size=64, code_dim=8, codebook_size=16, feature_hidden=16,
                      router_hidden=8)
    parts = build_trainer(cfg, tiny_train_config(lr=2e-4), "cpu", seed=0)
    model, opt = parts.model, parts.opt
    assert parts.disc is None and parts.opt_d is None and opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert opt.param_groups[0]["lr"] == 2e-4
    assert {id(p) for p in opt.param_groups[0]["params"]} == {id(p) for p in model.parameters()}
    model.prepare(levels)
    for f in model.standardized(levels):         # each level against the training maps' mean and spread
        assert abs(float(f.mean())) < 1e-4 and abs(float(f.std()) - 1) < 0.05
