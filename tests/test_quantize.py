"""Tests for pvqae_lib.nn.quantize: straight-through, the two VQ terms, lookup, round trip, dead codes."""
import pytest
import torch

from pvqae_lib.nn.quantize import VectorQuantizer, build_quantizer, perplexity, straight_through, vq_losses


def test_straight_through_forward_is_codes_and_gradient_is_identity():
    torch.manual_seed(0)
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)
    z_q = torch.randn(2, 4, 3, 3)
    out = straight_through(z_e, z_q)
    torch.testing.assert_close(out, z_q)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    torch.testing.assert_close(z_e.grad, w)          # d out / d z_e = identity


def test_quantizer_output_gradient_reaches_encoder():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4)
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z_e)
    w = torch.randn_like(out.quantized)
    (out.quantized * w).sum().backward()
    torch.testing.assert_close(z_e.grad, w)
    assert vq.codebook.weight.grad is None            # the quantized output sends nothing to the codebook


def test_vq_losses_values():
    z_e = torch.tensor([[1.0, 2.0]])
    z_q = torch.tensor([[0.0, 0.0]])
    codebook, commitment = vq_losses(z_e, z_q, beta=0.25)
    assert codebook.item() == pytest.approx(2.5)       # mean of 1, 4: unweighted
    assert commitment.item() == pytest.approx(2.5)


def _grads(beta):
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4, beta=beta)
    z_e = torch.randn(2, 4, 3, 3, requires_grad=True)
    vq(z_e).loss.backward()
    return vq.codebook.weight.grad.clone(), z_e.grad.clone()


def test_beta_scales_only_the_encoder_side_term():
    """The taming-transformers legacy bug puts beta on the codebook term; here it must not."""
    code_a, enc_a = _grads(0.25)
    code_b, enc_b = _grads(1.0)
    assert code_a.abs().sum() > 0 and enc_a.abs().sum() > 0
    torch.testing.assert_close(code_a, code_b)                 # codebook gradient independent of beta
    torch.testing.assert_close(enc_b, 4 * enc_a)               # encoder gradient proportional to beta


def test_beta_zero_gives_no_encoder_gradient():
    _, enc = _grads(0.0)
    assert torch.count_nonzero(enc) == 0


def test_lookup_equals_brute_force_argmin():
    torch.manual_seed(1)
    vq = VectorQuantizer(16, 5)
    vq.codebook.weight.data.normal_()
    z = torch.randn(200, 5)
    brute = torch.stack([((vq.codebook.weight - v) ** 2).sum(1).argmin() for v in z])
    assert torch.equal(vq.lookup(z), brute)


def test_eval_round_trip_indices_to_codes():
    torch.manual_seed(2)
    vq = VectorQuantizer(16, 4).eval()
    vq.codebook.weight.data.normal_()
    z_e = torch.randn(3, 4, 5, 6)
    out = vq(z_e)
    assert out.indices.shape == (3, 5, 6) and out.indices.dtype == torch.long
    assert out.quantized.shape == z_e.shape
    torch.testing.assert_close(vq.embed(out.indices), out.quantized, atol=1e-6, rtol=0)
    # and the codes are really the nearest ones
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, 4)
    assert torch.equal(out.indices.flatten(), torch.cdist(flat, vq.codebook.weight).argmin(1))


def test_loss_is_codebook_plus_beta_commitment():
    torch.manual_seed(3)
    vq = VectorQuantizer(8, 4, beta=0.3)
    out = vq(torch.randn(2, 4, 3, 3))
    expected = out.logs["codebook"] + 0.3 * out.logs["commitment"]
    torch.testing.assert_close(out.loss.detach(), expected)


def test_perplexity_one_code_and_uniform():
    assert perplexity(torch.zeros(50, dtype=torch.long), 8).item() == pytest.approx(1.0)
    assert perplexity(torch.arange(8).repeat(5), 8).item() == pytest.approx(8.0, rel=1e-5)
    assert perplexity(torch.tensor([0, 0, 1, 1]), 8).item() == pytest.approx(2.0, rel=1e-5)


def test_update_codebook_restarts_dead_codes_only():
    torch.manual_seed(4)
    K, D = 16, 4
    vq = VectorQuantizer(K, D)
    before = vq.codebook.weight.detach().clone()
    dead = torch.tensor([5, 6, 7])
    vq.usage[dead] = 0.0                                   # force these codes to look unused
    z_e = torch.randn(2, D, 3, 3) + 10                     # far from the initial codebook
    indices = torch.zeros(2, 3, 3, dtype=torch.long)       # only code 0 is used now
    restarted = vq.update_codebook(z_e, indices)
    assert restarted == 3
    after = vq.codebook.weight.detach()
    live = torch.ones(K, dtype=torch.bool)
    live[dead] = False
    assert torch.equal(after[live], before[live])
    flat = z_e.permute(0, 2, 3, 1).reshape(-1, D)
    for k in dead:
        assert torch.cdist(after[k][None], flat).min() < 1e-5   # restarted onto an encoder output
    assert torch.allclose(vq.usage[dead], torch.full((3,), 1.0 / K))
    # the used code's usage went up, the unused live ones decayed
    assert vq.usage[0] > 1.0 / K > vq.usage[1]


def test_update_codebook_without_dead_codes_changes_nothing():
    torch.manual_seed(5)
    vq = VectorQuantizer(8, 4)
    before = vq.codebook.weight.detach().clone()
    assert vq.update_codebook(torch.randn(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long)) == 0
    assert torch.equal(vq.codebook.weight, before)


def test_update_codebook_weight_zero_counts_nothing():
    vq = VectorQuantizer(8, 4)
    vq.update_codebook(torch.randn(1, 4, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long),
                       weight=torch.zeros(1, 2, 2))
    assert torch.allclose(vq.usage, torch.full((8,), 0.99 / 8))


def test_forward_has_no_side_effects():
    torch.manual_seed(6)
    vq = VectorQuantizer(8, 4).train()
    state = {k: v.clone() for k, v in vq.state_dict().items()}
    vq(torch.randn(2, 4, 3, 3))
    assert all(torch.equal(state[k], v) for k, v in vq.state_dict().items())


def test_build_quantizer():
    assert isinstance(build_quantizer("vq", 8, 4, 0.25), VectorQuantizer)
    with pytest.raises(ValueError, match="unknown quantizer"):
        build_quantizer("nope", 8, 4, 0.25)
    assert build_quantizer("lfq", 16, 4, 0.25).codebook_size == 16     # lfq: 2**dim codes (tests/test_lfq.py)
    with pytest.raises(ValueError, match="lfq needs codebook_size"):
        build_quantizer("lfq", 8, 4, 0.25)
