"""pv.book.synthetic_runs: the committed synthetic runs that kept the profile's settings but the named ones."""
import pandas as pd

import pvqae_lib as pv


def row(**changes):
    p = pv.get_profile("quick")
    base = {"file": "x.json", "kind": "evaluate", "dataset": "synthetic", "profile": p.name, "model.quantizer": "vq",
            "model.width": p.model.width, "model.codebook_size": p.model.codebook_size,
            "train.epochs": p.train.epochs, "train.seed": p.train.seed, "train.lambda_max": p.train.lambda_max,
            "train.schedule": p.train.schedule, "head.enabled": False, "score.scorer": "pvqae",
            "standardized": False}
    return {**base, **changes}


def test_keeps_only_runs_that_vary_the_named_settings():
    profile = pv.get_profile("quick")
    index = pd.DataFrame([row(file="a"), row(file="b", **{"train.epochs": 100}),
                          row(file="c", **{"train.seed": 1}), row(file="d", **{"model.quantizer": "lfq"}),
                          row(file="e", standardized=True), row(file="f", kind="benchmark")])
    assert list(pv.book.synthetic_runs(index, profile)["file"]) == ["a"]
    assert list(pv.book.synthetic_runs(index, profile, ("train.epochs",))["file"]) == ["a", "b"]
    assert list(pv.book.synthetic_runs(index, profile, ("train.seed", "standardized"))["file"]) == ["a", "c", "e"]
