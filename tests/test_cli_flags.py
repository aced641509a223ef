"""``train``'s flags are the config dataclasses' fields: every field has one, with its help text; a flag's
value reaches the recorded configuration; a bad value is one line naming the flag; the old spellings parse."""
import json
from dataclasses import fields
from pathlib import Path

import pytest
from conftest import TINY_TRAIN_ARGS, assert_usage_error, load_tool, run_cli

from pvqae_lib.commands.parser import build_parser, parse
from pvqae_lib.commands.train import check_resume_flags, profile_from_args
from pvqae_lib.flags import (
    PROFILE_FIELDS,
    SCORE_SECTIONS,
    SECTIONS,
    UsageError,
    config_settings,
    settings_table,
)

pytestmark = pytest.mark.usefixtures("one_thread", "cpu_quick")


def train_help() -> str:
    sub = next(a for a in build_parser()._actions if a.dest == "command").choices["train"]
    return sub.format_help()


def test_every_config_field_is_a_flag_with_help():
    settings = {(s.section, s.name): s for s in config_settings()}
    for section, cls, _ in SECTIONS:
        for f in fields(cls):
            if section == "profile" and f.name not in PROFILE_FIELDS:
                continue
            s = settings[(section, f.name)]
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help text (config.setting)"
            assert s.flag in train_help(), s.flag
    assert len({s.flag for s in settings.values()}) == len(settings)      # no two fields share a flag


def test_every_score_field_is_an_evaluate_and_predict_flag():
    subs = next(a for a in build_parser()._actions if a.dest == "command").choices
    for s in config_settings(SCORE_SECTIONS):
        assert s.help and all(s.flag in subs[c].format_help() for c in ("evaluate", "predict")), s.flag
    args = build_parser().parse_args(["evaluate", "--run", "r", "--json", "j", "--smooth-sigma", "0", "--standardize"])
    assert (args.smooth_sigma, args.standardize, args.scorer) == (0.0, True, None)


def test_generated_flags_reach_the_profile():
    args = build_parser().parse_args(["train", "--out", "x", "--beta", "0.5", "--disc-weight", "0.3",
                                      "--router-hidden", "12", "--code-dim", "8", "--prior-dim", "32",
                                      "--prior-mask-ratio", "0.2", "0.4", "--head", "--head-lr", "0.01",
                                      "--head-width", "4", "--no-amp", "--num-test", "7", "--stem-mults", "1", "2"])
    p = profile_from_args(args)
    assert (p.model.beta, p.model.router_hidden, p.model.code_dim, p.model.stem_mults) == (0.5, 12, 8, (1, 2))
    assert (p.train.disc_weight, p.train.amp, p.num_test) == (0.3, False, 7)
    assert (p.prior.dim, p.prior.mask_ratio) == (32, (0.2, 0.4))
    assert (p.head.enabled, p.head.lr, p.head.width) == (True, 0.01, 4)


def test_a_generated_flag_is_recorded_in_the_run(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["train", "--out", out, "--beta", "0.5", "--disc-weight", "0.2", *TINY_TRAIN_ARGS], capsys)
    assert code == 0, err
    run = json.loads((out / "config.json").read_text())
    assert run["profile"]["model"]["beta"] == 0.5 and run["profile"]["train"]["disc_weight"] == 0.2
    check_resume_flags(parse(["train", "--out", str(out), "--resume", "--beta", "0.5", "--no-amp"][:-1]), run, out)
    with pytest.raises(UsageError, match="--beta 0.3 differs from its 0.5; the saved run was made without --no-amp"):
        check_resume_flags(parse(["train", "--out", str(out), "--resume", "--beta", "0.3", "--no-amp"]), run, out)



def test_eval_every_writes_a_learning_curve_to_history(tmp_path, capsys):
    out = tmp_path / "run"
    args = [a if a != "1" else "2" for a in TINY_TRAIN_ARGS]            # two epochs
    code, _, err = run_cli(["train", "--out", out, "--eval-every", "1", *args], capsys)
    assert code == 0, err
    curve = json.loads((out / "history.json").read_text())["eval"]
    assert [p["epoch"] for p in curve] == [1, 2]
    assert all(0.0 <= p["image_auroc"] <= 1.0 and 0.0 <= p["pixel_auroc"] <= 1.0 for p in curve)
    code, _, err = run_cli(["train", "--out", tmp_path / "plain", *TINY_TRAIN_ARGS], capsys)
    assert code == 0 and "eval" not in json.loads((tmp_path / "plain" / "history.json").read_text())

@pytest.mark.parametrize("flag,value,words", [
    ("--beta", "0", ["--beta 0.0", "beta must be > 0"]),
    ("--disc-start", "2", ["--disc-start 2.0", "disc_start"]),
    ("--router-hidden", "0", ["--router-hidden 0", "router_hidden"]),
    ("--prior-dropout", "1.5", ["--prior-dropout 1.5", "dropout"]),
    ("--prior-lr", "nan", ["--prior-lr nan", "finite"]),
    ("--head-width", "0", ["--head-width 0", "width"]),
    ("--coreset-ratio", "2", ["--coreset-ratio 2.0", "coreset_ratio"]),
    ("--num-test", "0", ["--num-test 0", "num_test"]),
    ("--num-levels", "4", ["--num-levels 4", "level_mults needs one entry per level"]),
    ("--width", "0", ["--width 0", "width must be >= 1"]),
    ("--lr-schedule", "step", ["--lr-schedule", "invalid choice"]),
    ("--code-dim", "x", ["--code-dim", "invalid int value"]),
])
def test_a_bad_generated_value_is_one_line_naming_the_flag(tmp_path, capsys, flag, value, words):
    extra = ["--backbone", "efficientnet-lite0", "--model", "patchcore"] if flag == "--coreset-ratio" else []
    assert_usage_error(run_cli(["train", "--out", tmp_path / "r", *extra, flag, value], capsys), *words)
    assert not (tmp_path / "r").exists()


def test_the_old_spellings_still_parse():
    args = build_parser().parse_args(
        ["train", "--dataset", "synthetic", "--out", "x", "--profile", "quick", "--seed", "3", "--lambda-max", "0.5",
         "--tau", "2", "--schedule", "cosine", "--backbone", "pixel", "--model", "vqvae", "--quantizer", "vq",
         "--vq-level", "1", "--epochs", "2", "--batch-size", "4", "--lr", "0.01", "--lr-schedule", "constant",
         "--no-augment", "--restore-anomalies", "--image-size", "32", "--width", "8", "--codebook-size", "32",
         "--code-dim", "8", "--num-train", "9", "--prior-steps", "5", "--head", "--head-steps", "3", "--quiet"])
    p = profile_from_args(args)
    assert (p.train.seed, p.train.lambda_max, p.model.tau, p.train.schedule) == (3, 0.5, 2.0, "cosine")
    assert p.model.vq_level == 1
    assert (p.train.augment, p.train.restore_anomalies, p.num_train, p.prior.steps) == (False, True, 9, 5)
    assert (p.head.enabled, p.head.steps, p.model.codebook_size, p.train.lr_schedule) == (True, 3, 32, "constant")


def test_lfq_sizes_follow_the_code_dim():
    parse = build_parser().parse_args
    assert profile_from_args(parse(["train", "--out", "x", "--quantizer", "lfq"])).model.codebook_size == 2 ** 16
    lfq8 = profile_from_args(parse(["train", "--out", "x", "--quantizer", "lfq", "--code-dim", "8"])).model
    assert (lfq8.code_dim, lfq8.codebook_size) == (8, 256)


def test_the_documented_settings_table_is_current():
    """docs/command_line.md lists train's config flags as flags.settings_table() makes them (renew it with
    ``tools/settings_table.py``)."""
    tool = load_tool("settings_table")
    text = (Path(__file__).resolve().parents[1] / "docs" / "command_line.md").read_text()
    assert text.split(tool.BEGIN)[1].split(tool.END)[0].strip() == settings_table()
    assert tool.current() and tool.main(["--check"]) == 0
