"""Tests for pvqae_lib.engine.fewshot: shot selection, shot expansion, the table of means ± std, a smoke run."""
import pytest
import torch

from pvqae_lib.data import DataError, make_synthetic
from pvqae_lib.engine.fewshot import (
    FewShotConfig,
    expand_shots,
    fewshot_table,
    format_fewshot_table,
    run_fewshot,
    select_shots,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def mixed():
    """A pool with normal and defective images in every category (a test split)."""
    return make_synthetic("test", 16, num_per_category=15)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_select_shots_k_normals_per_category(mixed, k):
    shots = select_shots(mixed, k, seed=0)
    assert len(shots) == k * len(mixed.category_names)
    assert (shots.labels == 0).all() and set(shots.kinds) == {"good"}
    assert torch.bincount(shots.categories, minlength=3).tolist() == [k] * 3
    assert len(set(shots.paths)) == len(shots)                      # no repeats


def test_select_shots_is_deterministic_and_seed_dependent(mixed):
    a, b = select_shots(mixed, 2, seed=5), select_shots(mixed, 2, seed=5)
    assert a.paths == b.paths and torch.equal(a.images, b.images)
    draws = {tuple(select_shots(mixed, 2, seed=s).paths) for s in range(6)}
    assert len(draws) > 1


def test_select_shots_refuses_too_many(mixed):
    with pytest.raises(DataError, match="fewer than k"):
        select_shots(mixed, 6, seed=0)                              # 5 normals per category


def test_expand_shots_are_symmetries_of_the_shots():
    shots = make_synthetic("train", 16, num_per_category=1)
    big = expand_shots(shots, 10, seed=0)
    assert len(big) == 10 and big.images.shape == (10, 3, 16, 16)
    for i in range(10):
        src = shots.images[i % 3]
        variants = [torch.rot90(v, q, dims=(-2, -1)) for v in (src, src.transpose(-1, -2)) for q in range(4)]
        assert any(torch.equal(big.images[i], v) for v in variants)
        assert big.categories[i] == shots.categories[i % 3]
    assert torch.equal(big.images, expand_shots(shots, 10, seed=0).images)


def test_fewshot_table_mean_and_std():
    rows = [{"dataset": "d", "method": "m", "k": 1, "image_auroc": v, "pixel_auroc": 0.5, "pro": None}
            for v in (0.6, 0.8)]
    rows.append({"dataset": "d", "method": "m", "k": 2, "image_auroc": 0.9, "pixel_auroc": 0.7, "pro": 0.4})
    table = fewshot_table(rows)
    assert [(r["k"], r["n"]) for r in table] == [(1, 2), (2, 1)]
    assert table[0]["image_auroc_mean"] == pytest.approx(0.7)
    assert table[0]["image_auroc_std"] == pytest.approx(0.1414214, rel=1e-5)   # ddof = 1
    assert table[0]["pro_mean"] is None and table[1]["pro_std"] == 0.0
    text = format_fewshot_table(table)
    assert "70.0 ± 14.1" in text and "| - |" in text
    lines = text.splitlines()
    assert lines[0] == "| dataset | method | shots k | seeds | image AUROC | pixel AUROC | PRO |"
    assert lines[2].startswith("| d | m | 1 | 2 | 70.0 ± 14.1 | 50.0 ± 0.0 | - |")


def test_run_fewshot_smoke():
    cfg = FewShotConfig(num_images=8, epochs=1, prior_steps=2, head=True, head_steps=2, size=32)
    rows = run_fewshot("synthetic", 1, seeds=(0,), cfg=cfg)
    assert [r["method"] for r in rows] == ["pvqae", "pvqae+head"]
    for r in rows:
        assert r["k"] == 1 and len(r["shots"]) == 3
        assert 0 <= r["image_auroc"] <= 1 and 0 <= r["pixel_auroc"] <= 1
