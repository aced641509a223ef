"""Tests for ``python -m pvqae_lib fewshot`` (Chapter 10): a tiny run writes the JSON with its rows,
table and provenance; bad input ends with exit code 2 and one line on stderr, never a traceback."""
import json

import pytest
from conftest import assert_usage_error, run_cli

TINY = ["--shots", "1", "--seeds", "0", "--image-size", "32", "--num-images", "8", "--epochs", "1",
        "--prior-steps", "5", "--head-steps", "3", "--quiet"]
JSON_KEYS = ("dataset", "shots", "seeds", "rows", "table", "device", "profile", "seconds", "git_commit",
             "command", "machine", "config", "fewshot_config")

pytestmark = pytest.mark.usefixtures("one_thread", "cpu_quick")


def test_tiny_fewshot_run_writes_json(tmp_path, capsys):
    out = tmp_path / "fewshot.json"
    code, stdout, err = run_cli(["fewshot", "--dataset", "synthetic", "--head", "--json", out, *TINY], capsys)
    assert code == 0, err
    result = json.loads(out.read_text())
    for key in JSON_KEYS:
        assert key in result, key
    assert result["profile"] == "quick" and result["device"] == "cpu"
    assert result["command"].startswith("python -m pvqae_lib")
    assert result["fewshot_config"]["size"] == 32 and result["fewshot_config"]["head"] is True
    assert {r["method"] for r in result["rows"]} == {"pvqae", "pvqae+head"}
    assert all(r["k"] == 1 and r["seed"] == 0 and len(r["shots"]) == 3 for r in result["rows"])
    assert [(t["method"], t["k"], t["n"]) for t in result["table"]] == [("pvqae", 1, 1), ("pvqae+head", 1, 1)]
    for t in result["table"]:
        assert 0 <= t["image_auroc_mean"] <= 1 and t["image_auroc_std"] == 0.0
    assert "| synthetic | pvqae | 1 | 1 |" in stdout

    # an existing JSON is not overwritten without --force ...
    before = out.read_text()
    assert_usage_error(run_cli(["fewshot", "--json", out, *TINY], capsys), "--force")
    assert out.read_text() == before


def test_real_dataset_needs_root(tmp_path, capsys):
    assert_usage_error(run_cli(["fewshot", "--dataset", "mtsd", "--json", tmp_path / "f.json", *TINY], capsys),
                       "--root")
    assert_usage_error(run_cli(["fewshot", "--dataset", "mtsd", "--root", tmp_path / "nope", "--json",
                                tmp_path / "f.json", *TINY], capsys), "not a directory")
    assert not (tmp_path / "f.json").exists()


@pytest.mark.parametrize("args", [["--shots", "0"], ["--shots", "1", "1"], ["--seeds", "x"], ["--dataset", "nope"]])
def test_bad_numbers_and_names(tmp_path, capsys, args):
    assert_usage_error(run_cli(["fewshot", "--json", tmp_path / "f.json", *args], capsys))
    assert not (tmp_path / "f.json").exists()
