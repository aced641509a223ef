"""Tests for pvqae_lib.nn.model (PVQAE, VQVAE, combine_levels) and the ModelConfig checks."""
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_model_config as tiny

from pvqae_lib.config import ModelConfig, TrainConfig
from pvqae_lib.nn.budget import budget_loss, patch_entropy
from pvqae_lib.nn.factory import build_model
from pvqae_lib.nn.model import PVQAE, VQVAE, combine_levels

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def images():
    torch.manual_seed(0)
    return torch.rand(2, 3, 32, 32)


def test_pvqae_shapes(images):
    torch.manual_seed(0)
    model = build_model(tiny())
    assert isinstance(model, PVQAE)
    out = model.eval()(images)
    assert out.recon.shape == images.shape
    assert out.scores.shape == (2, 3, 4, 4) and out.logits.shape == (2, 3, 4, 4)
    assert [c.shape for c in out.codes] == [(2, 8, 4, 4), (2, 8, 8, 8), (2, 8, 16, 16)]
    assert [i.shape for i in out.indices] == [(2, 4, 4), (2, 8, 8), (2, 16, 16)]
    assert out.vq_loss.ndim == 0
    torch.testing.assert_close(out.scores.sum(1), torch.ones(2, 4, 4))
    assert sum(float(out.logs[f"share_{r}"]) for r in range(3)) == pytest.approx(1.0)


@pytest.mark.parametrize("vq_level,grid", [(0, 4), (1, 8), (2, 16)])
def test_vqvae_shapes(images, vq_level, grid):
    torch.manual_seed(0)
    model = build_model(tiny(model="vqvae", vq_level=vq_level))
    assert isinstance(model, VQVAE)
    out = model.eval()(images)
    assert out.recon.shape == images.shape
    assert out.logits is None
    assert [c.shape for c in out.codes] == [(2, 8, grid, grid)]
    assert out.scores.shape == (2, 3, 4, 4)
    assert (out.scores.argmax(1) == vq_level).all()
    assert float(out.logs[f"share_{vq_level}"]) == 1.0


def test_vqvae_builds_fewer_blocks_for_finer_levels():
    sizes = {}
    for level in range(3):
        m = VQVAE(tiny(model="vqvae", vq_level=level))
        assert len(m.encoder.levels) == 3 - level
        sizes[level] = sum(p.numel() for p in m.encoder.parameters())
    assert sizes[2] < sizes[1] < sizes[0]
    assert len(PVQAE(tiny()).encoder.levels) == 3


@pytest.mark.parametrize("train", [False, True])
def test_levels_override_gives_requested_allocation(images, train):
    torch.manual_seed(1)
    model = PVQAE(tiny()).train(train)
    levels = torch.randint(0, 3, (2, 4, 4))
    out = model(images, route=levels)
    assert torch.equal(out.scores, F.one_hot(levels, 3).permute(0, 3, 1, 2).float())
    for r in range(3):
        assert float(out.logs[f"share_{r}"]) == pytest.approx((levels == r).float().mean().item())


def test_combine_levels_hand_check():
    coarse = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])                      # (1, 1, 2, 2)
    fine = 10 + torch.arange(16.0).view(1, 1, 4, 4)                        # (1, 1, 4, 4)
    levels = torch.tensor([[[0, 1], [1, 0]]])                              # top-left, bottom-right coarse
    scores = F.one_hot(levels, 2).permute(0, 3, 1, 2).float()
    z = combine_levels([coarse, fine], scores, (4, 4))
    expected = torch.tensor([[1.0, 1.0, 12.0, 13.0],
                             [1.0, 1.0, 16.0, 17.0],
                             [18.0, 19.0, 4.0, 4.0],
                             [22.0, 23.0, 4.0, 4.0]])
    torch.testing.assert_close(z[0, 0], expected)


def test_coarse_patch_is_decoded_from_coarse_codes(images):
    """With every patch routed coarse, the finer codebooks cannot change the reconstruction."""
    torch.manual_seed(2)
    model = PVQAE(tiny()).eval()
    coarse = torch.zeros(2, 4, 4, dtype=torch.long)
    fine = torch.full((2, 4, 4), 2)
    with torch.no_grad():
        rec_coarse, rec_fine = model(images, route=coarse).recon, model(images, route=fine).recon
        model.quantizers[2].codebook.weight.normal_()
        model.quantizers[1].codebook.weight.normal_()
        torch.testing.assert_close(model(images, route=coarse).recon, rec_coarse)
        assert not torch.allclose(model(images, route=fine).recon, rec_fine)
        model.quantizers[0].codebook.weight.normal_()
        assert not torch.allclose(model(images, route=coarse).recon, rec_coarse)


def test_gradients_reach_encoder_router_decoder(images):
    torch.manual_seed(3)
    cfg = tiny()
    model = PVQAE(cfg).train()
    out = model(images)
    rec = F.mse_loss(out.recon, images)
    budget = budget_loss(out.scores, patch_entropy(images, cfg.coarse_stride), cfg.coarse_stride)
    (rec + out.vq_loss + 1.0 * budget).backward()
    for name, p in [("encoder stem", model.encoder.stem[0].weight),
                    ("encoder coarsest level", model.encoder.levels[2][-1].block[2].weight),
                    ("router", model.router.mlp[0].weight), ("router out", model.router.mlp[2].weight),
                    ("decoder", model.decoder.last_layer)]:
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert any(q.codebook.weight.grad is not None and q.codebook.weight.grad.abs().sum() > 0
               for q in model.quantizers)


def test_router_gets_gradient_from_budget_alone(images):
    torch.manual_seed(4)
    cfg = tiny()
    model = PVQAE(cfg).train()
    out = model(images)
    budget_loss(out.scores, patch_entropy(images, cfg.coarse_stride), cfg.coarse_stride).backward()
    assert model.router.mlp[2].weight.grad.abs().sum() > 0
    assert model.decoder.last_layer.grad is None


def test_eval_forward_is_deterministic(images):
    torch.manual_seed(5)
    model = PVQAE(tiny()).eval()
    a, b = model(images), model(images)
    assert torch.equal(a.recon, b.recon) and torch.equal(a.scores, b.scores)


def test_no_border_artefacts_on_a_flat_image():
    """Reflection padding: a flat image gives flat codes at every level and a flat reconstruction.
    With zero padding the border codes differ from the centre ones (the frame the decoder then
    fails to reproduce in every normal image's corners)."""
    torch.manual_seed(0)
    model = build_model(tiny()).eval()
    flat = torch.full((1, 3, 32, 32), 0.6)
    with torch.no_grad():
        codes, _ = model.encoder(flat * 2 - 1)
        recon = model(flat).recon
    for z in codes:
        assert torch.allclose(z, z[..., :1, :1].expand_as(z), atol=1e-5)
    assert torch.allclose(recon, recon[..., :1, :1].expand_as(recon), atol=1e-5)


def test_config_validation():
    with pytest.raises(ValueError, match="tau"):
        ModelConfig(tau=0)
    with pytest.raises(ValueError, match="tau"):
        ModelConfig(tau=-1.0)
    with pytest.raises(ValueError, match="model"):
        ModelConfig(model="vqgan")
    with pytest.raises(ValueError, match="quantizer"):
        ModelConfig(quantizer="rvq")
    with pytest.raises(ValueError, match="vq_level"):
        ModelConfig(vq_level=3)
    with pytest.raises(ValueError, match="vq_level"):
        ModelConfig(vq_level=-1)
    with pytest.raises(ValueError, match="multiple"):
        build_model(tiny(image_size=36))          # coarse stride is 8
    with pytest.raises(ValueError, match="lambda_max"):
        TrainConfig(lambda_max=-1)
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="step")
    assert tiny().coarse_stride == 8
    assert tiny(stem_mults=(1, 2)).coarse_stride == 16


def test_machine_names_cores_gpu_and_versions():
    import os
    import platform

    from pvqae_lib.runs.folder import machine
    line = machine()
    assert f"{os.cpu_count()} cores" in line and f"torch {torch.__version__}" in line
    assert f"Python {platform.python_version()}" in line
    assert ("no GPU" in line) != torch.cuda.is_available()
