"""The book's sources, checked without executing anything: notebooks stored without outputs, the
python3 kernel (the Colab set-up cell and the one repository URL: tests/test_colab_cell.py)."""
import re
from pathlib import Path

import nbformat
import pytest
import yaml
from conftest import load_tool

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
CHAPTERS = load_tool("time_chapters").chapters_from_toc()     # the notebooks of _toc.yml, in order
URL = re.compile(r"git\+(https://github\.com/[\w.-]+/[\w.-]+)")


def test_every_chapter_of_the_plan_is_in_the_toc():
    # the ten chapters of the plan, chapter 3b (trained routers, split from 3 by issue 31) after 3,
    # chapter 7b (evaluation, split from 7 by issue 23) after 7, and chapter 8b (PVQAE on a
    # pretrained feature pyramid) after 8
    stems = [p.stem for p in CHAPTERS]
    assert stems.index("03b_trained_routers") == stems.index("03_routing") + 1
    assert len(CHAPTERS) == 13 and stems.index("08b_pretrained_features") == stems.index("08_real_datasets") + 1
    assert stems.index("07b_evaluation") == stems.index("07_scoring_evaluation") + 1


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_stored_clean_with_the_python3_kernel(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has stored outputs"


