"""The Colab set-up cell (tools/colab_cell.py): current in every chapter, harmless off Colab, and the
repository URL held by _config.yml alone."""
import json
import os
import subprocess
import sys

import pytest
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


# --- The cell on a simulated Colab ------------------------------------------------------------------

# Run before the cell: Colab's marker module, and "the internet" of the cell's one download (the MTSD
# archive on GitHub) answered by the test's server on 127.0.0.1, through the urlopen the library uses.
COLAB_PREAMBLE = '''
import sys, types, urllib.request
sys.modules["google"] = types.ModuleType("google")
sys.modules["google.colab"] = types.ModuleType("google.colab")
_urlopen = urllib.request.urlopen
def _local(request, *args, **kwargs):
    url = request.full_url if isinstance(request, urllib.request.Request) else request
    assert url.startswith("https://github.com/abin24/"), url     # the cell fetches MTSD only
    local = urllib.request.Request(ARCHIVE_URL, headers=dict(request.header_items()))
    return _urlopen(local, *args, **kwargs)
urllib.request.urlopen = _local
'''

# After the cell: where it left the kernel, and the chapters' view of MTSD.
COLAB_REPORT = '''
import json
import os
import pvqae_lib
mtsd = pv.data.load_dataset("mtsd", pv.paths.mtsd_root(), "test", 8)
print(json.dumps({"cwd": os.getcwd(), "mtsd": os.environ["PVQAE_MTSD"],
                  "mtsd_root": str(pv.paths.mtsd_root()), "library": pvqae_lib.__file__,
                  "kinds": mtsd.kinds, "n_test": len(mtsd)}))
'''


def _mtsd_zip(path) -> None:
    """A tiny archive in the layout of the MTSD GitHub branch archive (two normal tiles, one crack)."""
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    def image(value, mode):
        buffer = io.BytesIO()
        Image.fromarray(np.full((16, 20), value, np.uint8)).save(buffer, format=mode)
        return buffer.getvalue()

    prefix = "Magnetic-tile-defect-datasets.-master/"
    with zipfile.ZipFile(path, "w") as z:
        for i in range(6):
            z.writestr(prefix + f"MT_Free/Imgs/f{i}.jpg", image(90 + i, "JPEG"))
            z.writestr(prefix + f"MT_Free/Imgs/f{i}.png", image(0, "PNG"))
        z.writestr(prefix + "MT_Crack/Imgs/c0.jpg", image(30, "JPEG"))
        z.writestr(prefix + "MT_Crack/Imgs/c0.png", image(255, "PNG"))


@pytest.mark.slow
def test_the_cell_on_a_simulated_colab(tmp_path):
    """The generated cell, run as Colab would run it: it clones the repository (a local clone of this
    checkout's commit, on a branch named as _config.yml says), installs the library with pip
    (resolved offline against the installed packages, dry run: it fails if the library's requirements
    would replace the installed torch), fetches MTSD with the library's downloader (from a server on
    127.0.0.1) and leaves the kernel in the clone's book/ folder with the chapters finding MTSD.
    A second run of the cell (a re-run on Colab) clones and downloads nothing again."""
    from conftest import QuietHandler, serve_locally

    url, branch = cc.repository()
    remote, content, home = tmp_path / "remote", tmp_path / "content", tmp_path / "home"
    content.mkdir()
    home.mkdir()
    git = ["git", "-c", "advice.detachedHead=false"]
    subprocess.run(git + ["clone", "-q", "--depth", "1", cc.ROOT.as_uri(), str(remote)], check=True)
    subprocess.run(git + ["-C", str(remote), "checkout", "-q", "-B", branch], check=True)

    www = tmp_path / "www"
    www.mkdir()
    _mtsd_zip(www / "mtsd.zip")
    requests = []

    class Handler(QuietHandler):
        def do_GET(self):
            data = (www / "mtsd.zip").read_bytes()
            requests.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd, base = serve_locally(Handler)
    try:
        cell = cc.cell_source()
        pip = '"install", "-q", "-e", home]'
        assert url in cell and pip in cell and '"/content/pvqae-book"' in cell and '"/content/data"' in cell
        cell = (cell.replace(url, remote.as_uri())
                    .replace(pip, '"install", "-q", "--dry-run", "--no-index", "--no-build-isolation",'
                                  ' "-e", home]')
                    .replace('"/content/', f'"{content}/'))
        script = (f"ARCHIVE_URL = {base + 'mtsd.zip'!r}\n" + COLAB_PREAMBLE + cell + "\n" + COLAB_REPORT)
        env = {k: v for k, v in os.environ.items() if k not in ("PVQAE_MTSD", "PYTHONPATH")}
        env["HOME"] = str(home)
        outs = [subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300) for _ in range(2)]
    finally:
        httpd.shutdown()
        httpd.server_close()
    for out in outs:
        assert out.returncode == 0, out.stderr[-3000:]
    first, again = (json.loads(out.stdout.strip().splitlines()[-1]) for out in outs)
    clone = content / "pvqae-book"
    assert first == again
    assert first["cwd"] == str(clone / "book")
    assert first["library"] == str(clone / "pvqae_lib" / "__init__.py")       # the clone's library
    assert first["mtsd"] == first["mtsd_root"] == str(
        content / "data" / "mtsd" / "Magnetic-tile-defect-datasets.-master")
    assert first["kinds"] == ["good", "Crack"] and first["n_test"] >= 2
    assert requests == ["/mtsd.zip"]                     # downloaded once: the re-run found it
