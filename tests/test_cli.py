"""Tests for ``python -m pvqae_lib``: a tiny train + evaluate, and every bad input ends with exit code 2
and one line on stderr, never a traceback."""
import json
import os
import subprocess
import sys

import pytest
from conftest import TINY_TRAIN_ARGS, assert_usage_error, run_cli

from pvqae_lib.cli import main
from pvqae_lib.commands.parser import build_parser
from pvqae_lib.commands.train import profile_from_args
from pvqae_lib.paths import RESULTS_DIR
from pvqae_lib.runs.folder import git_commit

JSON_KEYS = ("image_auroc", "pixel_auroc", "pro", "per_category", "per_kind", "device", "profile", "seconds",
             "git_commit", "command", "resolution_share")

pytestmark = pytest.mark.usefixtures("one_thread", "cpu_quick")


@pytest.fixture(scope="module")
def vqvae_run(tmp_path_factory):
    """A finished (tiny) VQ-VAE run directory, made through the command line."""
    out = tmp_path_factory.mktemp("cli") / "vq"
    code = main(["train", "--out", str(out), "--model", "vqvae", "--width", "8", "--codebook-size", "16",
                 *TINY_TRAIN_ARGS])
    assert code == 0
    return out


def test_train_and_evaluate(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(["train", "--out", out, *TINY_TRAIN_ARGS], capsys)
    assert code == 0, err
    assert "Traceback" not in err
    for name in ("model.pt", "checkpoint.pt", "config.json", "history.json"):
        assert (out / name).is_file(), name
    assert not list(out.glob("*.tmp"))
    config = json.loads((out / "config.json").read_text())
    assert config["profile"]["model"]["image_size"] == 32 and config["profile"]["train"]["epochs"] == 1
    assert config["profile"]["prior"]["steps"] == 5 and config["data"]["num_train"] == 8

    result_path = tmp_path / "results" / "r.json"
    code, stdout, err = run_cli(["evaluate", "--run", out, "--json", result_path], capsys)
    assert code == 0, err
    result = json.loads(result_path.read_text())
    for key in JSON_KEYS:
        assert key in result, key
    assert result["device"] == "cpu" and result["profile"] == "quick" and result["model"] == "pvqae"
    assert result["command"].startswith("python -m pvqae_lib")
    assert isinstance(result["git_commit"], str) and result["git_commit"]
    assert 0 <= result["image_auroc"] <= 1
    assert [r["category"] for r in result["per_category"]] == ["tile", "weave", "disc"]
    assert sum(result["resolution_share"]["normal"]) == pytest.approx(1.0, abs=1e-3)
    assert str(result_path) in stdout

    # --standardize: scored against the training images, recorded in the result and its configuration
    std_path = tmp_path / "results" / "std.json"
    code, stdout, err = run_cli(["evaluate", "--run", out, "--prior", "none", "--standardize", "--json", std_path],
                                capsys)
    assert code == 0, err
    std = json.loads(std_path.read_text())
    assert std["standardized"] is True and std["config"]["score"]["standardize"] is True
    assert result["standardized"] is False and result["config"]["score"]["standardize"] is False
    assert "standardized" in stdout and std["image_auroc"] is not None

    # an existing JSON is not overwritten without --force
    before = result_path.read_text()
    assert_usage_error(run_cli(["evaluate", "--run", out, "--json", result_path], capsys), "--force")
    assert result_path.read_text() == before


def test_subprocess_bad_input_has_no_traceback(tmp_path):
    """The real entry point: ``python -m pvqae_lib`` with a bad --tau."""
    proc = subprocess.run([sys.executable, "-m", "pvqae_lib", "train", "--out", str(tmp_path / "r"), "--tau", "0"],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PVQAE_DEVICE": "cpu", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--tau" in proc.stderr
    assert not (tmp_path / "r").exists()


def test_mtsd_without_root(tmp_path, capsys):
    assert_usage_error(run_cli(["train", "--dataset", "mtsd", "--out", tmp_path / "r"], capsys), "--root")
    missing = tmp_path / "nowhere"
    assert_usage_error(run_cli(["train", "--dataset", "mtsd", "--root", missing, "--out", tmp_path / "r"], capsys),
                       str(missing))
    assert not (tmp_path / "r").exists()


def test_root_without_the_layout(tmp_path, capsys):
    root = tmp_path / "mtsd"
    root.mkdir()
    assert_usage_error(run_cli(["train", "--dataset", "mtsd", "--root", root, "--out", tmp_path / "r",
                                *TINY_TRAIN_ARGS], capsys), "MT_Free")
    (tmp_path / "mvtec").mkdir()
    line = assert_usage_error(run_cli(["train", "--dataset", "mvtec", "--root", tmp_path / "mvtec",
                                       "--out", tmp_path / "r2", *TINY_TRAIN_ARGS], capsys))
    assert "mvtec" in line.lower()


def test_unknown_category(tmp_path, capsys):
    assert_usage_error(run_cli(["train", "--category", "marble", "--out", tmp_path / "r", *TINY_TRAIN_ARGS], capsys),
                       "marble")


@pytest.mark.parametrize("flag,value", [("--tau", "0"), ("--tau", "-1"), ("--lambda-max", "-1"),
                                        ("--epochs", "0"), ("--batch-size", "abc")])
def test_bad_numbers(tmp_path, capsys, flag, value):
    assert_usage_error(run_cli(["train", "--out", tmp_path / "r", flag, value], capsys), flag)
    assert not (tmp_path / "r").exists()


def test_lfq_with_a_codebook_size_other_than_2_to_the_bits_is_a_clear_error(tmp_path, capsys):
    # lfq itself trains (tests/test_lfq.py); its codebook is 2**code_dim = 2**16 in the quick profile
    assert_usage_error(run_cli(["train", "--out", tmp_path / "r", "--quantizer", "lfq",
                               "--codebook-size", "64", *TINY_TRAIN_ARGS], capsys), "lfq", "65536", "64")
    assert not (tmp_path / "r").exists()


def test_evaluate_missing_or_empty_run(tmp_path, capsys):
    assert_usage_error(run_cli(["evaluate", "--run", tmp_path / "none", "--json", tmp_path / "r.json"], capsys),
                       "does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    line = assert_usage_error(run_cli(["evaluate", "--run", empty, "--json", tmp_path / "r.json"], capsys), "model.pt")
    assert "--resume" not in line
    assert not (tmp_path / "r.json").exists()


def test_evaluate_interrupted_run_hints_resume(tmp_path, capsys):
    run_dir = tmp_path / "half"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"")
    assert_usage_error(run_cli(["evaluate", "--run", run_dir, "--json", tmp_path / "r.json"], capsys), "--resume")


def test_resume_without_checkpoint(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    assert_usage_error(run_cli(["train", "--out", tmp_path / "r", "--resume"], capsys), "checkpoint.pt")


def test_existing_run_needs_force(vqvae_run, capsys):
    before = (vqvae_run / "model.pt").stat().st_mtime_ns
    assert_usage_error(run_cli(["train", "--out", vqvae_run, "--model", "vqvae", *TINY_TRAIN_ARGS], capsys), "--force")
    assert (vqvae_run / "model.pt").stat().st_mtime_ns == before
    # a finished run is not resumed either
    assert_usage_error(run_cli(["train", "--out", vqvae_run, "--resume"], capsys), "--force")


def test_resume_checkpoint_of_another_model(vqvae_run, tmp_path, capsys):
    """A vqvae run whose config.json was edited to say pvqae: --resume must refuse its checkpoint."""
    run_dir = tmp_path / "crafted"
    run_dir.mkdir()
    for name in ("checkpoint.pt", "config.json"):
        (run_dir / name).write_bytes((vqvae_run / name).read_bytes())
    config = json.loads((run_dir / "config.json").read_text())
    assert config["profile"]["model"]["model"] == "vqvae"
    config["profile"]["model"]["model"] = "pvqae"
    (run_dir / "config.json").write_text(json.dumps(config))
    assert_usage_error(run_cli(["train", "--out", run_dir, "--resume"], capsys), "vqvae", "pvqae")


def test_evaluate_vqvae_run(vqvae_run, tmp_path, capsys):
    code, _, err = run_cli(["evaluate", "--run", vqvae_run, "--json", tmp_path / "vq.json"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "vq.json").read_text())
    assert result["model"] == "vqvae" and result["prior"] == "none"
    assert result["resolution_share"]["normal"] == [0.0, 0.0, 1.0]


def test_git_commit_is_dirty_for_code_changes_but_not_for_results(tmp_path):
    def git(*args):
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()
    (tmp_path / RESULTS_DIR).mkdir(parents=True)
    (tmp_path / RESULTS_DIR / "run.json").write_text("{}")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "first")
    sha = git("rev-parse", "HEAD")
    assert git_commit(tmp_path / "pkg") == sha
    (tmp_path / RESULTS_DIR / "run.json").write_text('{"image_auroc": 0.5}')     # a run wrote its result
    assert git_commit(tmp_path / "pkg") == sha
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")                         # the code changed
    assert git_commit(tmp_path / "pkg") == sha + "-dirty"
    assert git_commit(tmp_path.parent / "not-a-repo-anywhere") == "unknown"


def test_training_overrides_reach_the_recorded_profile():
    """Each setting issue #5 asks to vary (size, λmax, τ, codebook, epochs, augmentation) lands in the profile."""
    args = build_parser().parse_args(["train", "--out", "x", "--profile", "quick", "--image-size", "128",
                                      "--lambda-max", "0.5", "--tau", "2", "--codebook-size", "512",
                                      "--epochs", "3", "--no-augment"])
    p = profile_from_args(args)
    assert (p.model.image_size, p.model.tau, p.model.codebook_size) == (128, 2.0, 512)
    assert (p.train.lambda_max, p.train.epochs, p.train.augment) == (0.5, 3, False)
    default = profile_from_args(build_parser().parse_args(["train", "--out", "x", "--profile", "quick"]))
    assert default.train.augment is True and default.model.vq_level == 2
    middle = profile_from_args(build_parser().parse_args(["train", "--out", "x", "--model", "vqvae",
                                                          "--vq-level", "1"]))
    assert middle.model.vq_level == 1


def test_vq_level_is_for_the_vqvae_only(tmp_path, capsys):
    assert_usage_error(run_cli(["train", "--out", tmp_path / "r", "--vq-level", "1"], capsys), "--vq-level", "vqvae")
    assert_usage_error(run_cli(["train", "--out", tmp_path / "r", "--model", "vqvae", "--vq-level", "3"], capsys),
                       "--vq-level")
    assert not (tmp_path / "r").exists()
