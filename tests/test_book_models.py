"""Committed trained models (pvqae_lib.book): found in a checkout, absent elsewhere, never unpickled."""
import json

import pytest
import torch

from pvqae_lib import book
from pvqae_lib.engine.train import CheckpointError


def checkout(tmp_path):
    (tmp_path / "pvqae_lib").mkdir()
    (tmp_path / "_toc.yml").write_text("root: x\n")
    return tmp_path


def test_absent_model_is_none(tmp_path):
    root = checkout(tmp_path)
    assert book.committed_model("nothing", start=root) is None
    assert book.committed_provenance("nothing", start=root) == {}


def test_committed_model_loads_with_its_provenance(tmp_path):
    from pvqae_lib.config import ModelConfig
    from pvqae_lib.engine.pipeline import Trained, save_trained
    from pvqae_lib.nn.patchcore import PatchCore
    root = checkout(tmp_path)
    folder = root / book.MODELS_DIR / "pc"
    folder.mkdir(parents=True)
    cfg = ModelConfig(model="patchcore", backbone="efficientnet-lite0", image_size=64)
    pc = PatchCore()
    pc.memory = torch.randn(5, 152)
    save_trained(Trained(pc, cfg, ["tile"]), folder / "model.pt")
    (folder / "config.json").write_text(json.dumps({"command": "python -m pvqae_lib train ...", "git_commit": "abc"}))
    trained = book.committed_model("pc", start=root)
    assert torch.equal(trained.model.memory, pc.memory) and trained.model_config.model == "patchcore"
    assert book.committed_provenance("pc", start=root)["git_commit"] == "abc"


def test_crafted_committed_model_runs_no_code(tmp_path):
    root = checkout(tmp_path)
    folder = root / book.MODELS_DIR / "evil"
    folder.mkdir(parents=True)

    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "PWNED"), "w"))
    torch.save({"model": Payload()}, folder / "model.pt")
    with pytest.raises(CheckpointError):
        book.committed_model("evil", start=root)
    assert not (tmp_path / "PWNED").exists()
