"""The helpers chapters share (pvqae_lib.book): one definition each, checked here."""
import numpy as np
import pandas as pd
import pytest

import pvqae_lib as pv


def test_first_index_finds_the_first_match_and_names_a_missing_one():
    data = pv.data.make_synthetic("test", 32, num_per_category=3, seed=0)
    kinds = list(data.kinds)
    for category in data.category_names:
        for kind in set(kinds):
            c = data.category_names.index(category)
            expected = [i for i in range(len(kinds)) if int(data.categories[i]) == c and kinds[i] == kind]
            if expected:
                assert pv.book.first_index(data, category, kind) == expected[0]
    with pytest.raises(ValueError, match="no image of category 'tile' and kind 'nothing'"):
        pv.book.first_index(data, "tile", "nothing")


def test_per_image_max_and_moving_average():
    maps = np.stack([np.full((2, 2), 2.0), np.arange(4.0).reshape(2, 2), np.zeros((2, 2))])
    out = pv.book.per_image_max(maps)
    assert out[0].max() == 1 and out[1].max() == 1 and out[1, 0, 1] == pytest.approx(1 / 3)
    assert np.all(out[2] == 0)                              # an all-zero map stays zero, no NaN
    np.testing.assert_allclose(pv.book.moving_average([1, 2, 3, 4, 5], 2), [1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(pv.book.moving_average([1, 3], 10), [2.0])


def test_check_fails_naming_the_claim():
    pv.book.check(2 > 1, "two exceeds one")
    with pytest.raises(pv.book.ClaimFailed, match="the chapter says: 'one exceeds two'"):
        pv.book.check(1 > 2, "one exceeds two")


def test_show_table_formats_percent_and_floats(monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda obj: shown.append(obj))
    pv.book.show_table(pd.DataFrame({"auroc": [0.5, 0.25], "name": ["a", "b"], "loss": [1.23456, np.nan]}),
                       percent=("auroc",), digits=2, caption="Table 1")
    html = shown[0].data
    assert "50.0" in html and "25.0" in html and "1.23" in html and "1.2346" not in html
    assert "Table 1" in html and "nan" not in html
    assert html.startswith('<div style="overflow-x: auto">')      # a wide table scrolls, never overflows
    assert "padding: 0.2em 0.8em" in html and "white-space: nowrap" in html


def test_code_version_hashes_the_package_unless_pinned(monkeypatch):
    monkeypatch.delenv("PVQAE_CODE_VERSION", raising=False)
    real = pv.book.code_version()
    assert len(real) == 12 and not real.startswith("pinned")
    monkeypatch.setenv("PVQAE_CODE_VERSION", "dev")
    assert pv.book.code_version() == "pinned-dev" != real


def test_the_profile_is_quick_unless_asked_for(monkeypatch):
    monkeypatch.delenv("PVQAE_PROFILE", raising=False)
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)     # a GPU does not choose the full profile
    assert pv.get_profile().name == "quick"
    monkeypatch.setenv("PVQAE_PROFILE", "full")
    assert pv.get_profile().name == "full"
    assert pv.get_profile("quick").name == "quick"
    with pytest.raises(ValueError, match="profile must be 'quick' or 'full'"):
        pv.get_profile("fast")


@pytest.mark.slow
def test_book_training_is_deterministic_on_one_machine(tmp_path, monkeypatch):
    """Issue 23: a chapter's model is the same on every rebuild with the same thread count; trained
    twice into two empty caches, the weights, both priors and the scores are bit-identical."""
    import torch
    from conftest import tiny_profile, tiny_train_set
    profile = tiny_profile()
    data, test = tiny_train_set(), pv.data.make_synthetic("test", 32, num_per_category=2)
    runs = []
    for name in ("a", "b"):
        monkeypatch.setenv("PVQAE_CACHE", str(tmp_path / name))
        torch.manual_seed(123 if name == "a" else 456)           # whatever ran before must not matter
        runs.append(pv.book.trained_model(profile, data, progress=False))
    (a, b) = runs
    for key, value in a.model.state_dict().items():
        assert torch.equal(value, b.model.state_dict()[key]), key
    for kind in a.priors:
        for key, value in a.priors[kind].state_dict().items():
            assert torch.equal(value, b.priors[kind].state_dict()[key]), (kind, key)
    np.testing.assert_array_equal(pv.pipeline.score(a, test)["image"], pv.pipeline.score(b, test)["image"])


def test_book_model_trains_on_named_categories_under_their_own_key(monkeypatch):
    """``categories`` changes the training data and is part of the cache key; without it the
    call is the one every chapter makes (no extra key)."""
    import pvqae_lib.book as book

    calls = []
    monkeypatch.setattr(book, "trained_model", lambda profile, data, dataset, **kw: calls.append(
        (data.category_names, kw["extra"])))
    profile = book.get_profile("quick")
    book.book_model(profile, "pvqae", categories="label", lambda_max=2.5)
    book.book_model(profile, "pvqae")
    assert calls == [(["label"], {"categories": ["label"]}), (["tile", "weave", "disc"], None)]
