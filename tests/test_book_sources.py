"""The book's sources, checked without executing anything: notebooks stored without outputs, the
python3 kernel, the Colab install cell, and one repository URL (the one in _config.yml)."""
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
    # DESIGN §4's ten chapters, chapter 7b (evaluation, split from 7 by issue 23) after 7, and chapter 8b
    # (PVQAE on a pretrained feature pyramid) after 8
    stems = [p.stem for p in CHAPTERS]
    assert len(CHAPTERS) == 12 and stems.index("08b_pretrained_features") == stems.index("08_real_datasets") + 1
    assert stems.index("07b_evaluation") == stems.index("07_scoring_evaluation") + 1


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_is_stored_clean_with_the_python3_kernel(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has stored outputs"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_install_cell_is_colab_only_and_uses_the_configured_repository(path):
    nb = nbformat.read(path, as_version=4)
    first_code = next(c.source for c in nb.cells if c.cell_type == "code")
    assert '"google.colab" in sys.modules' in first_code
    assert "print(f\"profile=" in first_code
    urls = {u for c in nb.cells for u in URL.findall(c.source)}
    assert urls == {CONFIG["repository"]["url"]}, f"{path.name}: {urls}"


def test_readme_install_line_uses_the_configured_repository():
    assert set(URL.findall((ROOT / "README.md").read_text())) == {CONFIG["repository"]["url"]}
