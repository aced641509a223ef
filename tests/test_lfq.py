"""Tests for the lookup-free quantizer (MAGVIT-v2 / LFQUIAD): signs, binary indices, round trip,
straight-through gradient, the two entropy terms and their gradient, the builder and the wiring."""
import json
import math

import pytest
import torch
from conftest import TINY_TRAIN_ARGS, tiny_model_config

from pvqae_lib.cli import main
from pvqae_lib.nn.model import PVQAE, VQVAE
from pvqae_lib.nn.quantize import LookupFreeQuantizer, QuantizerOutput, build_quantizer, lfq_entropies

pytestmark = pytest.mark.usefixtures("one_thread")


def test_quantized_is_the_sign_and_index_is_the_binary_code():
    lfq = LookupFreeQuantizer(3)
    z = torch.tensor([0.3, -2.0, 1.0]).view(1, 3, 1, 1)
    out = lfq(z)
    assert isinstance(out, QuantizerOutput)
    assert out.quantized.flatten().tolist() == [1.0, -1.0, 1.0]
    assert out.indices.shape == (1, 1, 1)
    assert out.indices.item() == 0b101            # bits (1, 0, 1), channel 0 = least significant: 1 + 4 = 5
    z = torch.tensor([[0.3, -2.0, -1.0], [-0.3, -2.0, 1.0]]).view(2, 3, 1, 1)
    assert lfq(z).indices.flatten().tolist() == [1, 4]   # (1, 0, 0) -> 1 and (0, 0, 1) -> 4: the order matters


def test_random_codes_are_plus_minus_one_with_the_sign_of_z_and_round_trip():
    torch.manual_seed(0)
    lfq = LookupFreeQuantizer(5).eval()
    z = torch.randn(2, 5, 4, 3)
    out = lfq(z)
    assert out.quantized.shape == z.shape and out.indices.shape == (2, 4, 3)
    torch.testing.assert_close(out.quantized, torch.where(z > 0, 1.0, -1.0))
    torch.testing.assert_close(lfq.embed(out.indices), out.quantized)
    every = torch.arange(32).view(1, 4, 8)                    # embed then quantize gives every index back
    assert torch.equal(lfq(lfq.embed(every)).indices, every)


def test_straight_through_gradient_reaches_z_e():
    torch.manual_seed(0)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = LookupFreeQuantizer(4)(z)
    w = torch.randn_like(out.quantized)
    (out.quantized * w).sum().backward()
    torch.testing.assert_close(z.grad, w)


def test_per_sample_entropy_low_when_confident_high_near_zero():
    torch.manual_seed(0)
    confident = torch.randn(64, 6).sign()                     # |z| = 1 >> τ = 0.01
    per_sample, _ = lfq_entropies(confident, temperature=0.01)
    assert per_sample.item() < 1e-3
    per_sample, _ = lfq_entropies(torch.zeros(64, 6), temperature=0.01)
    assert per_sample.item() == pytest.approx(6 * math.log(2))   # every bit a fair coin


def test_codebook_entropy_high_for_a_diverse_batch_low_for_a_collapsed_one():
    torch.manual_seed(0)
    diverse = torch.randn(4096, 6).sign()
    _, codebook = lfq_entropies(diverse, temperature=0.01)
    assert codebook.item() > 0.99 * 6 * math.log(2)
    collapsed = torch.ones(4096, 6) * torch.tensor([1.0, -1, 1, 1, -1, 1])
    _, codebook = lfq_entropies(collapsed, temperature=0.01)
    assert codebook.item() < 1e-3


def test_one_step_on_the_loss_makes_a_collapsed_batch_more_diverse():
    # every bit of every sample positive (one code), confidences varied: identical samples would make
    # the two entropy terms cancel exactly, so there would be nothing to push
    torch.manual_seed(0)
    lfq = LookupFreeQuantizer(8)
    z = (torch.rand(64, 8, 1, 1) * 0.02).requires_grad_()
    before = lfq(z)
    assert before.indices.unique().numel() == 1
    before.loss.backward()
    torch.optim.SGD([z], lr=1.0).step()
    after = lfq(z)
    assert after.logs["codebook_entropy"] > before.logs["codebook_entropy"] + 0.5
    assert after.indices.unique().numel() > 1


def test_loss_is_the_documented_sum():
    torch.manual_seed(0)
    lfq = LookupFreeQuantizer(4, beta=0.3, entropy_weight=0.05, gamma=2.0)
    out = lfq(torch.randn(2, 4, 3, 3) * 0.02)
    logs = out.logs
    expected = 0.05 * (logs["per_sample_entropy"] - 2.0 * logs["codebook_entropy"]) + 0.3 * logs["commitment"]
    torch.testing.assert_close(out.loss, expected)


def test_logs_and_update_codebook_with_16_bits():
    torch.manual_seed(0)
    lfq = LookupFreeQuantizer(16)
    z = torch.randn(2, 16, 8, 8)
    out = lfq(z)
    n = out.indices.unique().numel()
    assert out.logs["usage"].item() == pytest.approx(n / 2 ** 16)
    assert 1 <= out.logs["perplexity"].item() <= n + 1e-3
    assert lfq.update_codebook(z, out.indices) == 0
    assert lfq.usage.shape == (2 ** 16,)
    assert lfq.usage[out.indices.flatten()].min() > lfq.usage.min()   # the EMA moved towards the used codes
    assert lfq.usage.sum().item() == pytest.approx(1.0, abs=1e-4)


def test_build_quantizer_lfq():
    lfq = build_quantizer("lfq", 2 ** 16, 16, 0.25)
    assert isinstance(lfq, LookupFreeQuantizer) and lfq.codebook_size == 65536 and lfq.beta == 0.25
    with pytest.raises(ValueError, match=r"2\*\*code_dim = 65536, got 64"):
        build_quantizer("lfq", 64, 16, 0.25)
    with pytest.raises(ValueError, match="code_dim"):
        build_quantizer("lfq", 2 ** 64, 64, 0.25)


@pytest.mark.parametrize("cls", [PVQAE, VQVAE])
def test_models_run_forward_backward_with_lfq(cls):
    torch.manual_seed(0)
    cfg = tiny_model_config(quantizer="lfq", codebook_size=256)
    model = cls(cfg)
    assert all(isinstance(q, LookupFreeQuantizer) for q in model.quantizers)
    out = model(torch.rand(2, 3, 32, 32))
    (out.recon.mean() + out.vq_loss).backward()
    enc = [p for n, p in model.named_parameters() if n.startswith("encoder")]
    assert all(p.grad is not None for p in enc[-2:])
    assert all(0 <= i.min() and i.max() < 256 for i in out.indices)


def test_cli_trains_with_lfq(tmp_path, cpu_quick, capsys):
    out = tmp_path / "lfq"
    code = main(["train", "--quantizer", "lfq", *TINY_TRAIN_ARGS, "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    model = json.loads((out / "config.json").read_text())["profile"]["model"]
    assert model["quantizer"] == "lfq" and model["codebook_size"] == 2 ** model["code_dim"] == 2 ** 16
