"""DistributedDataParallel training under torchrun: 2 CPU processes with gloo, tiny synthetic data.

Two launches of ``python -m torch.distributed.run --standalone --nproc_per_node=2`` (torchrun;
``--standalone`` picks a free port, so parallel test runs do not collide):

1. ``train`` through a small wrapper script that calls the CLI unchanged, but also saves each
   rank's final weights (outside the run directory) and keeps a copy of the run as it stood after
   epoch 1 (checkpoint + config), i.e. what an interruption after epoch 1 of 2 leaves behind;
2. plain ``python -m pvqae_lib train --resume`` on that copy.

About 20-40 s in all on a 2-core CPU, most of it process start-up.
"""
import os
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.distributed as dist

from pvqae_lib.engine.train import CHECKPOINT, load_checkpoint

pytestmark = [pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                 reason="torch.distributed with the gloo backend is not available in this build"),
              pytest.mark.slow]             # torchrun starts two processes per test

TRAIN = ["train", "--dataset", "synthetic", "--profile", "quick", "--epochs", "2", "--num-train", "4",
         "--image-size", "32", "--batch-size", "2", "--width", "8", "--codebook-size", "16",
         "--prior-steps", "5", "--quiet"]
STEPS = 12 // 2 // 2          # 3 categories x 4 images = 12, 6 per rank, batch 2: 3 steps per epoch
RUN_FILES = ["checkpoint.pt", "config.json", "history.json", "model.pt"]

WRAPPER = textwrap.dedent('''
    """``python -m pvqae_lib`` under torchrun, plus: each rank's final weights -> WEIGHTS/rank{r}.pt,
    and (rank 0) a copy of the run directory after epoch 1 -> INTERRUPTED."""
    import os, shutil, sys
    from pathlib import Path

    import torch

    import pvqae_lib.engine.pipeline as P
    import pvqae_lib.engine.train as T
    from pvqae_lib.cli import main

    weights, interrupted, argv = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
    out, rank = Path(argv[argv.index("--out") + 1]), int(os.environ["RANK"])
    discs = []

    class RecordedDiscriminator(T.PatchDiscriminator):       # to read each rank's discriminator afterwards
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            discs.append(self)

    def keep_epoch1(epoch, model):                             # called on rank 0 only
        if epoch == 0:
            interrupted.mkdir()
            for name in (T.CHECKPOINT, "config.json"):
                shutil.copy(out / name, interrupted / name)

    def fit(*args, **kwargs):
        trained = fit_unchanged(*args, epoch_callback=keep_epoch1, **kwargs)
        weights.mkdir(exist_ok=True)
        torch.save({"model": trained.model.state_dict(),
                    "disc": {k: v.detach().clone() for k, v in discs[0].named_parameters()},
                    "priors": {k: p.state_dict() for k, p in trained.priors.items()},
                    "loss": trained.history["loss"]}, weights / f"rank{rank}.pt")
        return trained

    T.PatchDiscriminator = RecordedDiscriminator
    fit_unchanged, P.fit = P.fit, fit
    sys.exit(main(argv))
''')


def torchrun(args, cwd, timeout=180):
    """torchrun with 2 processes; one intra-op thread each (2 cores), no inherited rank variables."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PVQAE_DEVICE="cpu")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args]
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One 2-epoch DDP training run: (work dir, run dir, per-rank weights dir, epoch-1 copy)."""
    work = tmp_path_factory.mktemp("ddp")
    (work / "wrapper.py").write_text(WRAPPER)
    out, weights, interrupted = work / "run", work / "weights", work / "interrupted"
    torchrun(["wrapper.py", str(weights), str(interrupted), *TRAIN, "--out", str(out)], cwd=work)
    return work, out, weights, interrupted


def test_only_rank0_writes_one_checkpoint_and_one_model(run):
    work, out, _, _ = run
    assert sorted(p.name for p in work.iterdir()) == ["interrupted", "run", "weights", "wrapper.py"]
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES           # no rank-1 files, no temporaries
    ckpt = load_checkpoint(out / CHECKPOINT, kind="pvqae")
    assert ckpt["epoch"] == 2 and len(ckpt["rng"]) == 2                  # one RNG state per rank
    assert len(ckpt["history"]["loss"]) == 2 * STEPS
    g_loss = ckpt["history"]["g_loss"]                                    # discriminator joins at half-time
    assert all(g == 0 for g in g_loss[:STEPS]) and all(g > 0 for g in g_loss[STEPS:])
    assert set(torch.load(out / "model.pt", weights_only=False)["priors"]) == {"universal", "per-class"}


def test_both_ranks_end_with_identical_weights(run):
    """Autoencoder (with codebook usage buffers), discriminator and both priors: bit-identical on
    both ranks, although each rank seeds seed + rank (DDP broadcasts rank 0's initial weights)."""
    _, out, weights, _ = run
    r0, r1 = (torch.load(weights / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    for part in ("model", "disc"):
        assert r0[part].keys() == r1[part].keys()
        for k in r0[part]:
            assert torch.equal(r0[part][k], r1[part][k]), f"{part}.{k} differs between ranks"
    for kind in r0["priors"]:
        for k, v in r0["priors"][kind].items():
            assert torch.equal(v, r1["priors"][kind][k]), f"{kind} prior {k} differs between ranks"
    assert r0["loss"] != r1["loss"]                                      # the ranks saw different images
    saved = torch.load(out / "model.pt", weights_only=False)["model"]
    assert all(torch.equal(saved[k], v) for k, v in r0["model"].items())


def test_resume_after_interruption_under_torchrun(run):
    """``train --resume`` on the run as it stood after epoch 1 of 2 finishes it, with the weights of
    the uninterrupted run (each rank's RNG state and the sampler order are restored)."""
    work, out, weights, interrupted = run
    assert load_checkpoint(interrupted / CHECKPOINT)["epoch"] == 1
    torchrun(["-m", "pvqae_lib", "train", "--out", str(interrupted), "--resume", "--quiet"], cwd=work)
    assert sorted(p.name for p in interrupted.iterdir()) == RUN_FILES
    ckpt = load_checkpoint(interrupted / CHECKPOINT, kind="pvqae")
    assert ckpt["epoch"] == 2
    straight = load_checkpoint(out / CHECKPOINT)
    torch.testing.assert_close(ckpt["history"]["loss"], straight["history"]["loss"], atol=1e-5, rtol=1e-5)
    resumed = torch.load(interrupted / "model.pt", weights_only=False)["model"]
    for k, v in torch.load(out / "model.pt", weights_only=False)["model"].items():
        torch.testing.assert_close(resumed[k], v, atol=1e-6, rtol=0, msg=f"resumed != straight at {k}")
