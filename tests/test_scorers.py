"""The one evaluation path (pvqae_lib.engine.scorers): every scorer gives maps and image scores of an
ImageSet, and evaluate, evaluate_head and score_files all go through the same scorers and the same
per-category aggregation."""
import numpy as np
import pytest
import torch
from conftest import tiny_model_config, tiny_prior_config

from pvqae_lib.config import ScoreConfig
from pvqae_lib.data import make_synthetic
from pvqae_lib.engine import metrics, pipeline
from pvqae_lib.engine.scorers import DetectorScorer, Standardized, normal_maps_of, per_category, per_kind
from pvqae_lib.engine.segmentation import HeadScorer, SegmentationHead, evaluate_head
from pvqae_lib.nn.factory import build_model
from pvqae_lib.nn.prior import BudgetPrior

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained():
    """Untrained parts (the plumbing is under test, not what they learned): a tiny PVQAE, both priors
    and a head, on the two categories of ``test_set``."""
    torch.manual_seed(0)
    cfg = tiny_model_config()
    tokens = (cfg.image_size // cfg.coarse_stride) ** 2
    priors = {"universal": BudgetPrior(3, tokens, 1, tiny_prior_config()).eval(),
              "per-class": BudgetPrior(3, tokens, 2, tiny_prior_config()).eval()}
    return pipeline.Trained(build_model(cfg).eval(), cfg, ["tile", "disc"], priors=priors,
                            head=SegmentationHead(8).eval())


@pytest.fixture(scope="module")
def test_set():
    return make_synthetic("test", 32, categories=["tile", "disc"], num_per_category=8, seed=0)


def test_every_scorer_gives_maps_and_image_scores(trained, test_set):
    prior = trained.priors["per-class"]
    for scorer in (DetectorScorer(trained.model), DetectorScorer(trained.model, prior, per_class=True),
                   HeadScorer(trained.head, trained.model),
                   Standardized(DetectorScorer(trained.model)).fit(
                       make_synthetic("train", 32, categories=["tile", "disc"], num_per_category=4))):
        maps, scores = scorer(test_set)
        assert maps.shape == (len(test_set), 32, 32) and scores.shape == (len(test_set),)
        assert np.isfinite(maps).all() and np.isfinite(scores).all()


def test_per_category_means_the_categories_and_pools_them(trained, test_set):
    sc = DetectorScorer(trained.model).score(test_set)
    result = per_category(sc, test_set)
    labels, cats = test_set.labels.numpy(), test_set.categories.numpy()
    by_hand = [metrics.image_auroc(sc["image"][cats == c], labels[cats == c]) for c in range(2)]
    assert result["image_auroc"] == pytest.approx(np.mean(by_hand))
    assert result["image_auroc_pooled"] == pytest.approx(metrics.image_auroc(sc["image"], labels))
    assert [r["category"] for r in result["per_category"]] == ["tile", "disc"]
    assert "resolution_share" not in result["per_category"][0]
    shares = per_category(sc, test_set, num_levels=3)["per_category"][0]["resolution_share"]
    assert sum(shares["normal"]) == pytest.approx(1, abs=1e-3)
    assert {r["kind"] for r in per_kind(sc, test_set)} == set(test_set.kinds) - {"good"}


def test_evaluate_and_evaluate_head_are_the_common_aggregation(trained, test_set):
    result = pipeline.evaluate(trained, test_set, "per-class")
    expected = per_category(DetectorScorer(trained.model, trained.priors["per-class"], per_class=True).score(test_set),
                            test_set, num_levels=3)
    for key in ("image_auroc", "pixel_auroc", "pro", "image_auroc_pooled", "per_category"):
        assert result[key] == expected[key], key
    head = evaluate_head(trained.head, trained.model, test_set)
    assert head == per_category(HeadScorer(trained.head, trained.model).score(test_set), test_set)
    via_pipeline = pipeline.evaluate(trained, test_set, "none", ScoreConfig(scorer="head", head_sigma=1.0))
    assert via_pipeline["image_auroc"] == head["image_auroc"]


def test_scorer_of_picks_the_runs_scorer_and_refuses_what_it_cannot(trained, test_set):
    assert isinstance(pipeline.scorer_of(trained, "none"), DetectorScorer)
    assert pipeline.scorer_of(trained, "universal").prior is trained.priors["universal"]
    assert isinstance(pipeline.scorer_of(trained, "none", ScoreConfig(scorer="head")), HeadScorer)
    with pytest.raises(ValueError, match="prior must be none"):
        pipeline.scorer_of(trained, "universal", ScoreConfig(scorer="head"))
    with pytest.raises(ValueError, match="prior must be none, universal or per-class"):
        pipeline.scorer_of(trained, "both")


def test_standardized_compares_each_category_with_its_own_normal_maps(trained, test_set):
    normal = make_synthetic("train", 32, categories=["tile", "disc"], num_per_category=4, seed=0)
    inner = DetectorScorer(trained.model)
    reference = normal_maps_of(inner, normal)
    assert sorted(reference) == ["disc", "tile"] and reference["tile"].shape == (4, 32, 32)
    fitted = Standardized(inner).fit(normal).score(test_set)
    given = Standardized(inner, reference).score(test_set)
    np.testing.assert_array_equal(fitted["s"], given["s"])
    np.testing.assert_array_equal(fitted["image"], fitted["s"].reshape(len(test_set), -1).max(1))
    with pytest.raises(ValueError, match="no images of category"):
        Standardized(inner, {"tile": reference["tile"]}).score(test_set)
    torch.testing.assert_close(torch.from_numpy(pipeline.score(trained, test_set, "none", ScoreConfig(standardize=True),
                                                               normal_set=normal)["s"]), torch.from_numpy(fitted["s"]))
