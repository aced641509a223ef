"""Tests for pvqae_lib.nn.prior: the Budget Prior Transformer, its masks and its training loop."""
import pytest
import torch

from pvqae_lib.config import PriorConfig
from pvqae_lib.nn.prior import BudgetPrior, fit_prior, random_mask

CFG = PriorConfig(dim=16, heads=2, dropout=0.0)


pytestmark = pytest.mark.usefixtures("one_thread")


def make(num_tokens=6, num_classes=2, seed=0, cfg=CFG):
    torch.manual_seed(seed)
    return BudgetPrior(3, num_tokens, num_classes, cfg)


def test_forward_shapes():
    prior = make()
    levels = torch.randint(0, 3, (4, 6))
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[:, 2] = True
    logits, loss = prior(levels, mask, torch.tensor([0, 1, 0, 1]))
    assert logits.shape == (4, 6, 3) and loss is None
    logits, loss = prior(levels, mask, torch.tensor([0, 1, 0, 1]), targets=levels)
    assert loss.ndim == 0 and loss.item() > 0


def test_loss_counts_only_masked_positions():
    prior = make().eval()
    torch.manual_seed(1)
    levels = torch.randint(0, 3, (4, 6))
    mask = torch.rand(4, 6) < 0.4
    mask[:, 0] = True
    cls = torch.zeros(4, dtype=torch.long)
    _, loss = prior(levels, mask, cls, targets=levels)
    other = levels.clone()
    other[~mask] = (other[~mask] + 1) % 3                  # change only the unmasked targets
    _, loss2 = prior(levels, mask, cls, targets=other)
    torch.testing.assert_close(loss, loss2)
    changed = levels.clone()
    changed[mask] = (changed[mask] + 1) % 3                 # change a masked target: the loss moves
    _, loss3 = prior(levels, mask, cls, targets=changed)
    assert not torch.isclose(loss, loss3)


def test_hidden_tokens_do_not_leak():
    """The level at a masked position cannot influence any output."""
    prior = make().eval()
    levels = torch.tensor([[0, 1, 2, 0, 1, 2]])
    mask = torch.tensor([[False, False, True, False, False, False]])
    other = levels.clone()
    other[0, 2] = 0
    cls = torch.zeros(1, dtype=torch.long)
    torch.testing.assert_close(prior(levels, mask, cls)[0], prior(other, mask, cls)[0])


def test_predict_matches_a_slow_loop():
    prior = make(seed=2).eval()
    torch.manual_seed(3)
    levels = torch.randint(0, 3, (3, 6))
    classes = torch.tensor([0, 1, 1])
    probs = prior.predict(levels, classes, chunk=5)        # a chunk that does not divide B*N
    assert probs.shape == (3, 6, 3)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3, 6))
    assert (probs >= 0).all()
    slow = torch.zeros(3, 6, 3)
    with torch.no_grad():
        for b in range(3):
            for i in range(6):
                mask = torch.zeros(1, 6, dtype=torch.bool)
                mask[0, i] = True
                logits, _ = prior(levels[b:b + 1], mask, classes[b:b + 1])
                slow[b, i] = logits[0, i].softmax(-1)
    torch.testing.assert_close(probs, slow, atol=1e-5, rtol=0)


def test_random_mask_hides_at_least_one_token_per_row():
    g = torch.Generator().manual_seed(0)
    none = random_mask((50, 16), (0.0, 0.0), g)
    assert none.dtype == torch.bool and none.shape == (50, 16)
    assert (none.sum(1) == 1).all()
    some = random_mask((200, 16), (0.1, 0.5), g)
    assert (some.sum(1) >= 1).all()
    assert 0.1 < some.float().mean() < 0.5
    all_ = random_mask((5, 16), (1.0, 1.0), g)
    assert all_.all()


def test_random_mask_is_seeded():
    a = random_mask((8, 10), (0.1, 0.5), torch.Generator().manual_seed(1))
    b = random_mask((8, 10), (0.1, 0.5), torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


def test_class_token_matters():
    prior = make(seed=4).eval()
    levels = torch.randint(0, 3, (1, 6)).expand(2, 6)
    mask = torch.zeros(2, 6, dtype=torch.bool)
    mask[:, 3] = True
    logits, _ = prior(levels, mask, torch.tensor([0, 1]))
    assert not torch.allclose(logits[0], logits[1])


def test_fit_prior_learns_a_per_class_pattern():
    """Class 0 always uses the coarse level, class 1 the fine one: the class token alone tells."""
    M, h, w = 32, 3, 3
    classes = torch.arange(M) % 2
    levels = (classes * 2).view(M, 1, 1).expand(M, h, w).clone()
    cfg = PriorConfig(dim=32, heads=2, steps=60, batch_size=16, lr=3e-3, dropout=0.0, mask_ratio=(0.9, 1.0))
    prior, losses = fit_prior(levels, classes, num_levels=3, num_classes=2, cfg=cfg, seed=0)
    assert len(losses) == 60 and not prior.training
    assert sum(losses[-10:]) / 10 < 0.2 * sum(losses[:10]) / 10
    # with every token hidden the prediction can only come from the class token
    seq = levels.view(M, -1)
    logits, _ = prior(seq, torch.ones_like(seq, dtype=torch.bool), classes)
    assert (logits.argmax(-1) == seq).float().mean() > 0.95
    probs = prior.predict(seq, classes)
    assert (probs.argmax(-1) == seq).float().mean() > 0.95


def test_default_chunks_bound_the_attention_memory(monkeypatch):
    """Without ``chunk``, predict cuts the B·N sequences so one chunk's attention stays bounded,
    and the result does not depend on the cut."""
    import pvqae_lib.nn.prior as prior_module
    prior = make(seed=4).eval()
    levels = torch.randint(0, 3, (2, 6), generator=torch.Generator().manual_seed(5))
    classes = torch.tensor([0, 1])
    whole = prior.predict(levels, classes, chunk=12)
    sizes = []
    original = type(prior).forward

    def spy(self, seqs, mask, cls, targets=None):
        sizes.append(len(seqs))
        return original(self, seqs, mask, cls, targets)

    monkeypatch.setattr(type(prior), "forward", spy)
    monkeypatch.setattr(prior_module, "ATTENTION_ELEMENTS", prior.cfg.heads * 7 ** 2 * 5)   # 5 sequences of 7 tokens
    chunked = prior.predict(levels, classes)
    assert sizes == [5, 5, 2]
    torch.testing.assert_close(chunked, whole)
