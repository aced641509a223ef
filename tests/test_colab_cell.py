"""The Colab set-up cell (tools/colab_cell.py): current in every chapter, harmless off Colab, and the
repository URL held by _config.yml alone."""
import json
import subprocess
import sys

from conftest import load_tool

cc = load_tool("colab_cell")


def test_every_chapter_starts_with_the_current_cell():
    assert cc.main(["--check"]) == 0, "run: python tools/colab_cell.py"
    for path in cc.chapters():
        code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        assert "".join(code[0]["source"]) == cc.cell_source(), path.name
        assert not any("google.colab" in "".join(c["source"]) for c in code[1:]), path.name


def test_the_url_comes_from_config_and_lives_nowhere_else():
    url, branch = cc.repository()
    assert url.startswith("https://") and branch
    assert url in cc.cell_source() and f'"--branch", "{branch}"' in cc.cell_source()
    for path in list(cc.ROOT.glob("book/*.md")) + [cc.ROOT / "README.md"] + cc.chapters():
        text = path.read_text()
        if path.suffix == ".ipynb":              # the generated cell is the one allowed copy
            text = text.replace(json.dumps(f'    repo, home = "{url}", "/content/pvqae-book"\n')[1:-1], "")
        assert url not in text, f"{path.name} spells the repository URL: use _config.yml"


def test_the_cell_does_nothing_off_colab(tmp_path):
    out = subprocess.run([sys.executable, "-c", cc.cell_source() + "\nprint(os.getcwd())"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == str(tmp_path) and not list(tmp_path.iterdir())


def test_updated_moves_the_old_installer_into_one_cell():
    old = ('import sys\n\nif "google.colab" in sys.modules:  # on Colab only: install the book\'s library\n'
           '    import subprocess\n    subprocess.run([sys.executable, "-m", "pip", "install", "-q",\n'
           '                    "git+https://example.org/x"],\n                   check=True)\n\n'
           'import pvqae_lib as pv\n')
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["# 1"]},
                    {"cell_type": "code", "metadata": {}, "outputs": [], "source": old.splitlines(True)}]}
    new = cc.updated(nb)
    assert [c["cell_type"] for c in new["cells"]] == ["markdown", "code", "code"]
    assert "".join(new["cells"][1]["source"]) == cc.cell_source()
    assert "".join(new["cells"][2]["source"]) == "import pvqae_lib as pv\n"
    assert cc.updated(new) == new                               # idempotent
