"""Hostile input, round two (issue #30): device nodes, racing predicts, diverging priors, outputs
inside datasets, models and checkpoints of other runs, spreadsheet-breaking file names, stale
temporaries, widget values, devices, tampered configurations, models and results, link loops,
out-of-range seeds and real data with empty masks.

Each command-line case asserts the exit code, the one-line first line on stderr (no traceback) and
that every file of the watched folder is unchanged (as tests/test_hostile.py does).
"""
import csv
import json
import os
import shutil
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_tool, run_cli
from PIL import Image
from test_data import make_mtsd
from test_hostile import ONE_STEP, refused, run_cli_plain, snapshot

from pvqae_lib.book.widgets.budget import budget_explorer
from pvqae_lib.book.widgets.tau import tau_explorer
from pvqae_lib.commands import predict as predict_command
from pvqae_lib.nn.prior import BudgetPrior
from pvqae_lib.runs.results import ResultsError, build_index, load_index, read_result

pytestmark = pytest.mark.usefixtures("one_thread", "cpu_quick")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two finished tiny runs: PVQAE (32 px, width 8) and one of width 16; and a VQ-VAE."""
    base = tmp_path_factory.mktemp("round2")
    made = {}
    for name, extra in (("pvqae", []), ("wide", ["--width", "16"]), ("vqvae", ["--model", "vqvae"]),
                        ("px64", ["--image-size", "64"])):
        args = [a for a in ONE_STEP]
        if name == "px64":
            args[args.index("--image-size") + 1] = "64"
            extra = []
        assert run_cli_plain(["train", "--out", base / name, *args, *extra]) == 0
        made[name] = base / name
    images = base / "images"
    images.mkdir()
    for n in ("plain", "a,b", 'say "hi"', "=cmd|calc"):
        Image.fromarray((np.random.default_rng(len(n)).random((32, 32, 3)) * 255).astype(np.uint8)).save(
            images / f"{n}.png")
    made["images"] = images
    return made


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# --------------------------------------------------------------------------------- data lost

def test_evaluate_refuses_to_replace_a_device_node(runs, tmp_path, capsys):
    node = tmp_path / "null"
    try:
        os.mknod(node, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod needs root")
    refused(["evaluate", "--run", runs["pvqae"], "--json", node, "--force"], capsys, str(node), "not a regular file")
    assert stat.S_ISCHR(os.lstat(node).st_mode)


def test_evaluate_refuses_to_replace_a_link_or_a_fifo(runs, tmp_path, capsys):
    target = tmp_path / "precious.json"
    target.write_text("{}")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    refused(["evaluate", "--run", runs["pvqae"], "--json", link, "--force"], capsys, "symbolic link", watch=tmp_path)
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    refused(["evaluate", "--run", runs["pvqae"], "--json", fifo, "--force"], capsys, "not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_predict_checks_for_predictions_again_under_the_lock(runs, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    assert run_cli_plain(["predict", "--run", runs["pvqae"], "--images", runs["images"], "--out", out]) == 0
    # the other predict checked --out before this one's predictions existed (the race)
    monkeypatch.setattr(predict_command, "check_out", lambda args, out: set())
    monkeypatch.setattr(predict_command, "check_names", lambda *args: None)
    refused(["predict", "--run", runs["pvqae"], "--images", runs["images"], "--out", out], capsys,
            "already holds predictions", "written while this one started", watch=out)


# ----------------------------------------------------------------------------- silently wrong

def test_a_diverging_prior_fails_the_run(tmp_path, capsys, monkeypatch):
    """A prior whose loss stops being finite ends the run with a line naming --prior-lr, and no
    model.pt (its weights would score every image NaN)."""
    real = BudgetPrior.forward

    def diverging(self, *args, **kwargs):
        logits, loss = real(self, *args, **kwargs)
        return logits, loss * float("nan")
    monkeypatch.setattr(BudgetPrior, "forward", diverging)
    first = refused(["train", "--out", tmp_path / "r", *ONE_STEP], capsys, "prior's training stopped", "--prior-lr")
    assert "nan" in first
    assert not (tmp_path / "r" / "model.pt").exists()


def test_train_and_predict_refuse_an_output_inside_the_dataset(runs, tmp_path, capsys):
    root = make_mtsd(tmp_path / "mtsd")
    refused(["train", "--dataset", "mtsd", "--root", root, "--out", root / "MT_Crack" / "run", *ONE_STEP], capsys,
            "inside the dataset folder", watch=root)
    run = copy_run(runs["pvqae"], tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    config["data"]["root"] = str(tmp_path / "synthetic_root")        # a run whose data lives in a folder
    (run / "config.json").write_text(json.dumps(config))
    (tmp_path / "synthetic_root").mkdir()
    refused(["predict", "--run", run, "--images", runs["images"], "--out", tmp_path / "synthetic_root" / "test"],
            capsys, "inside the dataset folder", watch=tmp_path / "synthetic_root")


@pytest.mark.parametrize("other,words", [("vqvae", ("model 'vqvae' in model.pt vs 'pvqae'",)),
                                         ("px64", ("image_size 64 in model.pt vs 32",)),
                                         ("wide", ("width 16 in model.pt vs 8",))])
def test_a_model_of_another_run_is_refused(runs, tmp_path, capsys, other, words):
    run = copy_run(runs["pvqae"], tmp_path / "run")
    shutil.copy(runs[other] / "model.pt", run / "model.pt")
    refused(["evaluate", "--run", run, "--prior", "none", "--json", tmp_path / "e.json"], capsys,
            "is not the model its config.json describes", *words, watch=run)
    assert not (tmp_path / "e.json").exists()


def test_resume_refuses_a_checkpoint_of_another_run(runs, tmp_path, capsys):
    run = copy_run(runs["pvqae"], tmp_path / "run")
    (run / "model.pt").unlink()
    shutil.copy(runs["wide"] / "checkpoint.pt", run / "checkpoint.pt")
    refused(["train", "--out", run, "--resume"], capsys, "cannot resume", "model.width 16 vs 8", watch=run)


def test_resume_refuses_changed_training_images(tmp_path, capsys):
    root = make_mtsd(tmp_path / "mtsd", n_free=12)
    run = tmp_path / "run"
    args = ["train", "--dataset", "mtsd", "--root", root, "--out", run, "--epochs", "2", "--image-size", "32",
            "--batch-size", "4", "--prior-steps", "2", "--quiet"]
    assert run_cli_plain(args) == 0
    assert "fingerprint" in json.loads((run / "config.json").read_text())["data"]
    (run / "model.pt").unlink()                  # as if killed before the end
    Image.open(root / "MT_Free" / "Imgs" / "free_00.jpg").transpose(Image.FLIP_LEFT_RIGHT).save(
        root / "MT_Free" / "Imgs" / "free_00.jpg")
    refused(["train", "--out", run, "--resume"], capsys, "training images changed", watch=run)


def test_predictions_csv_quotes_every_field_and_defuses_formulas(runs, tmp_path):
    out = tmp_path / "out"
    assert run_cli_plain(["predict", "--run", runs["pvqae"], "--images", runs["images"], "--out", out]) == 0
    rows = list(csv.DictReader((out / "predictions.csv").open(newline="")))
    assert len(rows) == 4
    names = sorted(Path(r["image"].lstrip("'")).name for r in rows)
    assert names == sorted(["plain.png", "a,b.png", 'say "hi".png', "=cmd|calc.png"])
    assert all(not r["image"].startswith("=") for r in rows)
    assert all(r["map"].startswith("maps/") and (out / r["map"]).is_file() for r in rows)


def test_predict_removes_a_killed_predicts_temporary_folder(runs, tmp_path):
    out = tmp_path / "out"
    stale = out / ".maps.abc123.partial"
    stale.mkdir(parents=True)
    (stale / "0000_x.png").write_bytes(b"half")
    assert run_cli_plain(["predict", "--run", runs["pvqae"], "--images", runs["images"], "--out", out]) == 0
    assert not stale.exists() and not list(out.glob(".maps.*"))


@pytest.mark.parametrize("tau", [float("inf"), 1e300, float("nan"), 1e-320, 0.0, -1.0])
def test_tau_explorer_refuses_temperatures_it_cannot_sample(tau):
    with pytest.raises(ValueError, match="tau must be a number in"):
        tau_explorer([0.0, 1.0, 2.0], tau)


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), float("inf")])
def test_budget_explorer_refuses_eps_outside_its_range(eps):
    with pytest.raises(ValueError, match="eps must be a number in"):
        budget_explorer(torch.rand(3, 64, 64), np.zeros((2, 2), int), 32, eps=eps)


# ---------------------------------------------------------------------------------- tracebacks

@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
@pytest.mark.parametrize("device,words", [("cuda", ("--device cuda", "no CUDA GPU")),
                                          ("meta", ("--device meta", "cpu, cuda or mps"))])
@pytest.mark.parametrize("command", ["train", "evaluate", "predict"])
def test_devices_this_machine_has_not(runs, tmp_path, capsys, device, words, command):
    args = {"train": ["train", "--out", tmp_path / "r", *ONE_STEP],
            "evaluate": ["evaluate", "--run", runs["pvqae"], "--json", tmp_path / "e.json"],
            "predict": ["predict", "--run", runs["pvqae"], "--images", runs["images"], "--out", tmp_path / "p"]}
    refused(args[command] + ["--device", device], capsys, *words, watch=runs["pvqae"])
    assert not (tmp_path / "r").exists() and not (tmp_path / "p").exists() and not (tmp_path / "e.json").exists()


@pytest.mark.parametrize("flags,words", [(["--prior-heads", "3"], ("--prior-heads 3", "must divide")),
                                         (["--prior-mask-ratio", "0.9", "0.1"], ("--prior-mask-ratio", "low <= high")),
                                         (["--lr", "1e308"], ("--lr", "lr must be in (0, 10]")),
                                         (["--prior-lr", "1e308"], ("--prior-lr", "lr must be in")),
                                         (["--seed", str(2 ** 70)], ("--seed", "seed must be in [0, 4294967295]"))])
def test_train_settings_are_checked_before_anything_is_written(tmp_path, capsys, flags, words):
    refused(["train", "--out", tmp_path / "r", *ONE_STEP, *flags], capsys, *words)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["evaluate", "predict"])
@pytest.mark.parametrize("sigma", ["1e308", "1e6"])
def test_smoothing_beyond_the_image_is_refused(runs, tmp_path, capsys, command, sigma):
    args = (["evaluate", "--run", runs["pvqae"], "--json", tmp_path / "e.json"] if command == "evaluate" else
            ["predict", "--run", runs["pvqae"], "--images", runs["images"], "--out", tmp_path / "p"])
    refused(args + ["--smooth-sigma", sigma], capsys, "--smooth-sigma", "must be in [0, 64]", watch=runs["pvqae"])


def _tamper(config: dict, how: str):
    if how == "tau string":
        config["profile"]["model"]["tau"] = "hot"
    elif how == "image_size 1e6":
        config["data"]["image_size"] = 1000000
    elif how == "empty":
        return {}
    elif how == "no command":
        del config["command"]
    elif how == "data a list":
        config["data"] = [1, 2]
    elif how == "dataset unknown":
        config["data"]["dataset"] = "imagenet"
    return config


@pytest.mark.parametrize("how,words", [("tau string", ("profile", "not a valid configuration")),
                                       ("image_size 1e6", ("data.image_size", "[8, 4096]")),
                                       ("empty", ("profile", "missing")),
                                       ("no command", ("command", "missing")),
                                       ("data a list", ("data", "not a JSON object")),
                                       ("dataset unknown", ("data.dataset", "imagenet"))])
def test_a_tampered_run_configuration_is_refused_before_scoring(runs, tmp_path, capsys, how, words):
    run = copy_run(runs["pvqae"], tmp_path / "run")
    config = _tamper(json.loads((run / "config.json").read_text()), how)
    (run / "config.json").write_text(json.dumps(config))
    refused(["evaluate", "--run", run, "--json", tmp_path / "e.json"], capsys, "config.json", *words, watch=run)
    refused(["predict", "--run", run, "--images", runs["images"], "--out", tmp_path / "p"], capsys, "config.json",
            watch=run)


def test_a_deeply_nested_configuration_is_refused(runs, tmp_path, capsys):
    run = copy_run(runs["pvqae"], tmp_path / "run")
    (run / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    refused(["evaluate", "--run", run, "--json", tmp_path / "e.json"], capsys, "config.json", watch=run)


@pytest.mark.parametrize("how,words", [("weight removed", ("not a complete pvqae_lib model",)),
                                       ("model_config a list", ("not a complete pvqae_lib model",)),
                                       ("prior of another length", ("prior covers", "patches"))])
def test_a_tampered_model_file_is_refused(runs, tmp_path, capsys, how, words):
    run = copy_run(runs["pvqae"], tmp_path / "run")
    ckpt = torch.load(run / "model.pt", weights_only=True)
    if how == "weight removed":
        ckpt["model"].pop(next(iter(ckpt["model"])))
    elif how == "model_config a list":
        ckpt["model_config"] = [1, 2, 3]
    else:
        ckpt["priors"]["universal"]["num_tokens"] = 7
    torch.save(ckpt, run / "model.pt")
    refused(["evaluate", "--run", run, "--json", tmp_path / "e.json"], capsys, "model.pt", *words, watch=run)


def test_a_root_that_is_a_link_loop_is_named(tmp_path, capsys):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    refused(["train", "--dataset", "mtsd", "--root", tmp_path / "a", "--out", tmp_path / "r", *ONE_STEP], capsys,
            "--root", "loop")
    assert not (tmp_path / "r").exists()


def test_fewshot_seeds_out_of_range_name_the_flag(tmp_path, capsys):
    code, _, err = run_cli(["fewshot", "--seeds", "-1", "--json", tmp_path / "f.json"], capsys)
    assert code == 2 and "--seeds" in err and "[0, 4294967295]" in err and "Traceback" not in err


# ------------------------------------------------------------------------------ the results tool

GOOD = {"image_auroc": 0.9, "pixel_auroc": 0.8, "pro": 0.7, "dataset": "synthetic", "profile": "quick",
        "config": {"name": "quick"}}


@pytest.mark.parametrize("content,words", [(b"{not json", "not valid JSON"),
                                           ('{"a": "caf\u00e9"}'.encode("latin-1"), "not UTF-8"),
                                           (b"", "is empty"),
                                           (b"[1, 2]", "JSON list, not an object"),
                                           (json.dumps({**GOOD, "image_auroc": "high"}).encode(), "image_auroc"),
                                           (json.dumps({**GOOD, "config": None}).encode(), "config must be"),
                                           (b'{"image_auroc": NaN}', "finite number"),
                                           (b'{"image_auroc": true}', "image_auroc"),
                                           (b'{"seconds": "fast"}', "seconds")])
def test_the_results_tool_names_a_broken_result(tmp_path, content, words):
    (tmp_path / "good.json").write_text(json.dumps(GOOD))
    (tmp_path / "bad.json").write_bytes(content)
    with pytest.raises(ResultsError, match="bad.json") as info:
        build_index(tmp_path)
    assert words in str(info.value)
    assert read_result(tmp_path / "good.json")["image_auroc"] == 0.9


def test_the_results_tool_names_a_missing_folder_and_a_garbled_index(tmp_path, capsys, monkeypatch):
    with pytest.raises(ResultsError, match="folder .* is missing"):
        build_index(tmp_path / "nowhere")
    (tmp_path / "index.csv").write_text('a,b\n1,"2\n')
    with pytest.raises(ResultsError, match="index.csv"):
        load_index(tmp_path / "index.csv")
    with pytest.raises(ResultsError, match="gone.csv is missing"):
        load_index(tmp_path / "gone.csv")
    pages = load_tool("results_pages")
    assert pages.main([], root=tmp_path) == 2               # a checkout without book/_static/results
    assert pages.main(["--check"], root=tmp_path) == 2
    assert capsys.readouterr().err.startswith("error: results folder")


# ---------------------------------------------------------------------------- empty masks, real data

def test_the_full_mtsd_layout_with_empty_masks_trains_and_evaluates(tmp_path, capsys):
    """The official MTSD download has four MT_Uneven masks that mark nothing: train and evaluate
    accept them, say so in one warning line, and count them as defective images."""
    root = make_mtsd(tmp_path / "mtsd", n_free=12, defects=(("Blowhole", 2), ("Uneven", 2)))
    Image.new("L", Image.open(root / "MT_Uneven" / "Imgs" / "Uneven_1.png").size).save(
        root / "MT_Uneven" / "Imgs" / "Uneven_1.png")                 # all 0, as exp3_num_45042.png
    run = tmp_path / "run"
    code, _, err = run_cli(["train", "--dataset", "mtsd", "--root", root, "--out", run, "--epochs", "1",
                            "--image-size", "32", "--batch-size", "4", "--prior-steps", "2", "--quiet"], capsys)
    assert code == 0, err
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "Uneven_1.png" in warning[0] and "counted as defective" in warning[0]
    code, _, err = run_cli(["evaluate", "--run", run, "--prior", "none", "--json", tmp_path / "e.json"], capsys)
    assert code == 0, err
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["num_test"] == 2 + 4 and result["image_auroc"] is not None and result["pixel_auroc"] is not None
    uneven = [r for r in result["per_kind"] if r["kind"] == "Uneven"][0]
    assert uneven["n"] == 2


def test_train_list_pins_the_mtsd_split(tmp_path, capsys):
    root = make_mtsd(tmp_path / "mtsd", n_free=10)
    listed = tmp_path / "train.txt"
    listed.write_text("# MTD protocol\nfree_00.jpg\nfree_01\nfree_02.jpg\nfree_03.jpg\nfree_04.jpg\nfree_05.jpg\n")
    run = tmp_path / "run"
    assert run_cli_plain(["train", "--dataset", "mtsd", "--root", root, "--train-list", listed, "--out", run,
                          "--epochs", "1", "--image-size", "32", "--batch-size", "4", "--prior-steps", "2",
                          "--quiet"]) == 0
    split = json.loads((run / "split.json").read_text())
    assert [Path(p).stem for p in split["train"]] == [f"free_{i:02d}" for i in range(6)]
    assert sum(p.startswith("MT_Free") for p in split["test"]) == 4
    refused(["train", "--train-list", listed, "--out", tmp_path / "r3", *ONE_STEP], capsys, "--train-list",
            "--dataset mtsd")


@pytest.mark.parametrize("text,words", [("free_00.jpg\nfree_00\n", "twice"), ("nope.jpg\n", "not in"),
                                        ("\n# only a comment\n", "names no"), ("../x.jpg\n", "not a file name"),
                                        (None, "not UTF-8"), ("", "names no")])
def test_a_bad_train_list_is_named_and_nothing_is_written(tmp_path, capsys, text, words):
    root = make_mtsd(tmp_path / "mtsd", n_free=10)
    listed = tmp_path / "train.txt"
    listed.write_bytes(b"\xff\xfe\x00caf\xe9" if text is None else text.encode())
    before = snapshot(tmp_path)
    refused(["train", "--dataset", "mtsd", "--root", root, "--train-list", listed, "--out", tmp_path / "r2",
             *ONE_STEP], capsys, "train list", words)
    assert snapshot(tmp_path) == before


def _folder_dataset(root: Path, n_train: int, normals_in_test: bool = True) -> Path:
    rng = np.random.default_rng(0)
    for split, kind, n in (("train", "good", n_train), ("test", "good", 2 if normals_in_test else 0),
                           ("test", "dent", 2)):
        for i in range(n):
            folder = root / split / kind
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(folder / f"{i:03d}.png")
            if kind == "dent":
                m = np.zeros((40, 40), np.uint8)
                m[:20] = 255
                (root / "ground_truth" / kind).mkdir(parents=True, exist_ok=True)
                Image.fromarray(m).save(root / "ground_truth" / kind / f"{i:03d}_mask.png")
    return root


def test_patchcore_and_the_code_bank_train_on_a_few_images(tmp_path):
    root = _folder_dataset(tmp_path / "part", 5)
    for model in (["--model", "patchcore"], ["--model", "pvqae", "--bank-size", "8", "--painted-images", "2",
                                             "--prior-steps", "2", "--epochs", "1"]):
        assert run_cli_plain(["train", "--dataset", "folder", "--root", root, "--backbone", "efficientnet-lite0",
                              "--image-size", "64", *model, "--out", tmp_path / model[1], "--quiet"]) == 0


def test_too_few_images_for_the_batch_says_which_batch_size(tmp_path, capsys):
    root = _folder_dataset(tmp_path / "part", 5)
    refused(["train", "--dataset", "folder", "--root", root, "--image-size", "32", "--out", tmp_path / "r",
             "--quiet"], capsys, "only 5 training images", "--batch-size 5 or fewer")


def test_calibrated_predict_without_normal_test_images_says_no_calibrate(tmp_path, capsys):
    root = _folder_dataset(tmp_path / "part", 4, normals_in_test=False)
    run = tmp_path / "run"
    assert run_cli_plain(["train", "--dataset", "folder", "--root", root, "--out", run, "--epochs", "1",
                          "--image-size", "32", "--batch-size", "4", "--prior-steps", "2", "--quiet"]) == 0
    refused(["predict", "--run", run, "--images", root / "test" / "dent", "--out", tmp_path / "p"], capsys,
            "no normal image", "--no-calibrate")
    assert not (tmp_path / "p").exists()


def test_zip_members_colons_links_and_bombs(tmp_path):
    import zipfile

    from pvqae_lib.data import DataError, archives, extract
    ok = tmp_path / "ok.zip"
    with zipfile.ZipFile(ok, "w") as z:
        z.writestr("a:b.txt", "fine on POSIX")
    assert (extract(ok, tmp_path / "x") / "a:b.txt").read_text() == "fine on POSIX"
    drive = tmp_path / "drive.zip"
    with zipfile.ZipFile(drive, "w") as z:
        z.writestr("C:/windows.txt", "x")
    with pytest.raises(DataError, match="unsafe path"):
        extract(drive, tmp_path / "y")
    link = tmp_path / "link.zip"
    with zipfile.ZipFile(link, "w") as z:
        info = zipfile.ZipInfo("evil")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(info, "/etc/passwd")
    with pytest.raises(DataError, match="links are not extracted"):
        extract(link, tmp_path / "z")
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros", b"\0" * (4 << 20))
    old = archives.MAX_UNCHECKED
    try:
        archives.MAX_UNCHECKED = 1 << 20            # the real limit is 1 GiB: scaled down for the test
        with pytest.raises(DataError, match="decompression bomb"):
            extract(bomb, tmp_path / "w")
    finally:
        archives.MAX_UNCHECKED = old
    assert not (tmp_path / "w" / "zeros").exists()


@pytest.mark.parametrize("flags,words", [
    (["--backbone", "efficientnet-lite0", "--bank-size", "0"], ("--bank-size", ">= 1")),
    (["--backbone", "efficientnet-lite0", "--bank-samples", "0"], ("--bank-samples", ">= 1")),
    (["--backbone", "efficientnet-lite0", "--kmeans-iters", "-1"], ("--kmeans-iters", ">= 0")),
    (["--backbone", "efficientnet-lite0", "--painted-images", "0"], ("--painted-images", ">= 1")),
    (["--backbone", "efficientnet-lite0", "--tau", "nan"], ("--tau",)),
    (["--backbone", "efficientnet-lite0", "--lambda-max", "inf"], ("--lambda-max",)),
    (["--model", "membank"], ("--model membank", "pixel backbone")),
    (["--backbone", "efficientnet-lite0", "--model", "vqvae", "--feature-model", "bank"],
     ("serves pvqae and membank",)),
])
def test_code_bank_settings_are_checked_before_anything_is_written(tmp_path, capsys, flags, words):
    refused(["train", "--out", tmp_path / "r", "--quiet", *flags], capsys, *words)
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("flags,words", [(["--route", "fine"], ("--route", "--feature-model bank")),
                                         (["--prior", "none", "--prior-power", "0.5"], ("--prior-power",)),
                                         (["--prior-power", "5"], ("--prior-power", "[0, 4]")),
                                         (["--prior-power", "nan"], ("--prior-power",))])
def test_scoring_settings_that_do_not_apply_are_refused(runs, tmp_path, capsys, flags, words):
    refused(["evaluate", "--run", runs["pvqae"], "--json", tmp_path / "e.json", *flags], capsys, *words,
            watch=runs["pvqae"])
    assert not (tmp_path / "e.json").exists()


def test_a_full_disk_names_what_was_being_written(tmp_path, monkeypatch):
    import errno

    from pvqae_lib.cli import describe_os_error
    from pvqae_lib.runs.folder import RunError, RunLock
    full = OSError(errno.ENOSPC, "No space left on device")
    said = describe_os_error(full, tmp_path / "out")
    assert said == f"[Errno 28] No space left on device (while writing {tmp_path / 'out'})"

    def no_space(fd, data):
        raise full
    monkeypatch.setattr(os, "write", no_space)
    with pytest.raises(RunError, match=r"cannot lock .*: writing .*run.lock failed: No space left on device"):
        RunLock(tmp_path).acquire()


@pytest.mark.parametrize("flags,words", [(["--epochs", str(10 ** 12)], ("--epochs", "at most 1,000,000")),
                                         (["--prior-steps", str(10 ** 9)], ("--prior-steps", "at most")),
                                         (["--num-train", str(10 ** 9)], ("--num-train", "at most 100,000")),
                                         (["--image-size", "100000"], ("--image-size", "at most 4,096")),
                                         (["--epochs", "1e12"], ("--epochs",))])
def test_sizes_no_machine_can_run_are_refused_at_once(tmp_path, capsys, flags, words):
    """Before: the run started and ran until killed, or tried to allocate terabytes."""
    args = [a for a in ONE_STEP if a not in ("--quiet",)]
    for flag in flags[::2]:                  # the flag under test replaces ONE_STEP's own value
        if flag in args:
            i = args.index(flag)
            del args[i:i + 2]
    code, _, err = run_cli(["train", "--out", tmp_path / "r", "--quiet", *args, *flags], capsys)
    assert code == 2 and "Traceback" not in err
    assert all(w in err.strip().splitlines()[0] for w in words), err
    assert not (tmp_path / "r").exists()


def test_resume_refuses_a_checkpoint_trained_on_another_dataset(tmp_path, capsys):
    """Same settings, other data: the checkpoint records what it was trained on."""
    runs_ = {}
    for name, n_free in (("a", 12), ("b", 14)):
        root = make_mtsd(tmp_path / f"mtsd_{name}", n_free=n_free)
        runs_[name] = tmp_path / f"run_{name}"
        assert run_cli_plain(["train", "--dataset", "mtsd", "--root", root, "--out", runs_[name], "--epochs", "1",
                              "--image-size", "32", "--batch-size", "4", "--prior-steps", "2", "--quiet"]) == 0
    (runs_["a"] / "model.pt").unlink()
    shutil.copy(runs_["b"] / "checkpoint.pt", runs_["a"] / "checkpoint.pt")
    refused(["train", "--out", runs_["a"], "--resume"], capsys, "cannot resume", "trained on other data",
            watch=runs_["a"])
