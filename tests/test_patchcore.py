"""PatchCore: patch features, greedy coreset, nearest-neighbour scores, saving the bank."""
import pytest
import torch

from pvqae_lib.nn.patchcore import PatchCore, PatchCoreConfig, greedy_coreset, nearest_distance, patch_features


def levels_of(x):
    """A fake three-level pyramid (coarsest first) from a (B, C, 8, 8) map."""
    return [torch.nn.functional.avg_pool2d(x, 4), torch.nn.functional.avg_pool2d(x, 2), x]


def test_patch_features_shape_and_locality():
    x = torch.randn(2, 5, 8, 8)
    emb = patch_features(levels_of(x), 3)
    assert emb.shape == (2, 10, 8, 8)
    y = x.clone()
    y[:, :, 0, 0] += 10                       # a change in one corner stays in its neighbourhood
    changed = (patch_features(levels_of(y), 3) - emb).abs().sum(1) > 1e-6
    assert changed[:, 0, 0].all() and not changed[:, 7, 7].any()


def test_greedy_coreset_covers_every_cluster():
    g = torch.Generator().manual_seed(0)
    centers = torch.tensor([[0.0, 0], [10, 0], [0, 10], [10, 10]])
    points = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centers])
    chosen = greedy_coreset(points, 4, projection_dim=128, seed=0)
    assert len(set(chosen.tolist())) == 4
    assert sorted({int(i) // 50 for i in chosen}) == [0, 1, 2, 3]    # one point from each cluster
    random = torch.randperm(200, generator=g)[:4]
    def cover(idx):
        return torch.cdist(points, points[idx]).amin(1).max()
    assert cover(chosen) < cover(random)


def test_nearest_distance_matches_brute_force():
    q, m = torch.randn(100, 6), torch.randn(30, 6)
    expected = ((q[:, None] - m[None]) ** 2).sum(-1).sqrt().amin(1)
    assert torch.allclose(nearest_distance(q, m, chunk=7), expected, atol=1e-5)


def test_patchcore_scores_an_unseen_patch_above_normal_ones():
    g = torch.Generator().manual_seed(1)
    normal = torch.randn(20, 4, 8, 8, generator=g) * 0.1
    pc = PatchCore(PatchCoreConfig(coreset_ratio=0.1)).fit(levels_of(normal))
    assert len(pc.memory) == round(0.1 * 20 * 64)
    test = torch.randn(1, 4, 8, 8, generator=g) * 0.1
    test[:, :, 2:4, 2:4] += 3.0               # a defect
    dist = pc(levels_of(test)).distances[0]
    assert dist[2:4, 2:4].min() > dist[6:, 6:].max()


def test_bank_round_trips_through_state_dict():
    normal = torch.randn(4, 3, 8, 8)
    pc = PatchCore(PatchCoreConfig(coreset_ratio=0.5)).fit(levels_of(normal))
    other = PatchCore(PatchCoreConfig(coreset_ratio=0.5))
    other.load_state_dict(pc.state_dict())
    assert torch.equal(other.memory, pc.memory)
    x = levels_of(torch.randn(1, 3, 8, 8))
    assert torch.equal(other(x).distances, pc(x).distances)


def test_empty_bank_and_bad_config():
    with pytest.raises(RuntimeError, match="fit first"):
        PatchCore()(levels_of(torch.randn(1, 2, 8, 8)))
    with pytest.raises(ValueError, match="coreset_ratio"):
        PatchCoreConfig(coreset_ratio=0)
    with pytest.raises(ValueError, match="neighbourhood"):
        PatchCoreConfig(neighbourhood=2)
