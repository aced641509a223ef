"""The detector contract (pvqae_lib.nn.detector): every detector the factory builds offers the engine the
same things, and one scoring path (engine.scoring.anomaly_maps) serves them all."""
import pytest
import torch

from pvqae_lib.config import ModelConfig, ScoreConfig
from pvqae_lib.engine.scoring import anomaly_maps
from pvqae_lib.nn.backbones import backbone_channels
from pvqae_lib.nn.detector import IDENTITY, Detector, FrozenPyramid, batch_of, num_inputs
from pvqae_lib.nn.factory import backbone_of, build_model, detector_class

LITE0 = "efficientnet-lite0"
PIXEL_SIZES = {"image_size": 32, "width": 8, "code_dim": 8, "codebook_size": 16}
FEATURE_SIZES = {"image_size": 64, "code_dim": 8, "codebook_size": 16, "feature_hidden": 16, "router_hidden": 8,
                 "bank_size": 8}
CONFIGS = {   # name: (ModelConfig, routes, fitted_by)
    "pixel pvqae": (ModelConfig(**PIXEL_SIZES), True, "gradient"),
    "pixel vqvae": (ModelConfig(model="vqvae", **PIXEL_SIZES), False, "gradient"),
    "feature pvqae": (ModelConfig(backbone=LITE0, **FEATURE_SIZES), True, "gradient"),
    "feature vqvae": (ModelConfig(backbone=LITE0, model="vqvae", **FEATURE_SIZES), False, "gradient"),
    "feature ae": (ModelConfig(backbone=LITE0, model="ae", **FEATURE_SIZES), False, "gradient"),
    "code bank": (ModelConfig(backbone=LITE0, feature_model="bank", **FEATURE_SIZES), True, "memory"),
    "memory bank": (ModelConfig(backbone=LITE0, model="membank", feature_model="bank", **FEATURE_SIZES), False,
                    "memory"),
    "patchcore": (ModelConfig(backbone=LITE0, model="patchcore", **FEATURE_SIZES), False, "memory"),
}


def inputs_for(cfg: ModelConfig, n: int, seed: int = 0):
    """Made-up inputs of the right shape: images, or a Lite0-shaped pyramid (no network is run)."""
    g = torch.Generator().manual_seed(seed)
    if cfg.backbone == "pixel":
        return torch.rand(n, 3, cfg.image_size, cfg.image_size, generator=g)
    return [torch.randn(n, c, cfg.image_size // s, cfg.image_size // s, generator=g)
            for c, s in zip(backbone_channels(LITE0), (32, 16, 8))]


def ready(cfg: ModelConfig):
    """The detector, fitted when it is a memory (on made-up normal inputs)."""
    torch.manual_seed(0)
    model = build_model(cfg)
    if model.fitted_by == "memory":
        model.fit(inputs_for(cfg, 4, seed=1), seed=0)
    return model.eval()


@pytest.mark.parametrize("name", CONFIGS)
def test_every_detector_offers_the_contract(name):
    cfg, routes, fitted_by = CONFIGS[name]
    model = ready(cfg)
    assert isinstance(model, Detector) and detector_class(cfg) is type(model)
    assert model.routes == routes and model.fitted_by == fitted_by
    assert model.backbone is (IDENTITY if cfg.backbone == "pixel" else model.backbone)
    assert type(model.backbone) is type(backbone_of(cfg))
    x = inputs_for(cfg, 2)
    out = model(x)
    grid = cfg.image_size // cfg.coarse_stride
    assert out.scores.shape == (2, cfg.num_levels, grid, grid)
    assert torch.equal(out.scores.sum(1), torch.ones(2, grid, grid))             # one level per coarse patch
    assert set(out.scores.argmax(1).unique().tolist()) <= set(model.used)
    evidence = model.evidence(x, out, ScoreConfig())
    assert evidence.ndim == 4 and evidence.shape[:2] == (2, 1) and torch.isfinite(evidence).all()
    coarse = torch.zeros(2, grid, grid, dtype=torch.long)
    rerouted = model.reroute(x, out, coarse)
    if routes:                                                                   # the prior's B̂_norm is obeyed
        assert rerouted.scores.argmax(1).eq(0).all()


@pytest.mark.parametrize("name", CONFIGS)
def test_one_scoring_path_serves_every_detector(name):
    cfg = CONFIGS[name][0]
    model = ready(cfg)
    x = inputs_for(cfg, 3)
    sc = anomaly_maps(model, x, size=(cfg.image_size, cfg.image_size))
    assert sc.s.shape == sc.s_recon.shape == sc.s_prior.shape == (3, cfg.image_size, cfg.image_size)
    assert torch.equal(sc.image, sc.s.flatten(1).amax(1)) and torch.equal(sc.s_prior, torch.ones_like(sc.s))
    halves = torch.cat([anomaly_maps(model, batch_of(x, slice(i, i + 2)), size=(cfg.image_size,) * 2).image
                        for i in (0, 2)])
    torch.testing.assert_close(halves, sc.image)                                 # batch by batch, the same scores


def test_batches_of_images_and_of_pyramids():
    images = torch.rand(5, 3, 8, 8)
    assert num_inputs(images) == 5 and torch.equal(batch_of(images, slice(1, 3)), images[1:3])
    pyramid = [torch.randn(5, 4, 2, 2).half(), torch.randn(5, 2, 4, 4).half()]
    part = batch_of(pyramid, torch.tensor([0, 4]))
    assert num_inputs(pyramid) == 5 and all(p.dtype == torch.float32 and len(p) == 2 for p in part)


def test_the_backbone_component_is_not_saved_with_the_weights():
    cfg = CONFIGS["feature pvqae"][0]
    model = build_model(cfg)
    assert isinstance(model.backbone, FrozenPyramid) and model.backbone.name == LITE0
    assert not any(k.startswith("backbone") for k in model.state_dict())
