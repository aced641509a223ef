"""``pip install .`` gives a package that works without the repository beside it (issue #29 item 4).

The package is built from a copy of ``pyproject.toml``, ``README.md`` and ``pvqae_lib/`` (so that
the build leaves nothing in the checkout) and installed, offline (``--no-index --no-deps
--no-build-isolation``), into a fresh virtual environment. Its dependencies (torch, pandas, ...)
come from the environment running the tests, put on the new environment's path by a ``.pth`` line
after its own site-packages: a plain path, so that an editable install of pvqae_lib there is not
activated and the copy installed in the new environment is the one imported. Then, from an empty
folder outside the repository and without PYTHONPATH, every module ``pkgutil.walk_packages`` finds
in the installed package imports, the installed modules are the repository's modules (so the
package discovery of pyproject.toml keeps every subpackage), and the command line's help runs.
"""
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow

IMPORT_EVERYTHING = """
import importlib, json, pkgutil, sys, traceback
import pvqae_lib
failed = {}
names = []
for info in pkgutil.walk_packages(pvqae_lib.__path__, "pvqae_lib."):
    names.append(info.name)
    if info.name.endswith(".__main__"):      # runs the command line: `python -m pvqae_lib` below
        continue
    try:
        importlib.import_module(info.name)
    except Exception:
        failed[info.name] = traceback.format_exc(limit=3)
print(json.dumps({"file": pvqae_lib.__file__, "modules": names, "failed": failed}))
"""


def repository_modules() -> set:
    """The module names of the checkout's pvqae_lib/ (every .py file; packages by their __init__)."""
    names = set()
    for path in (ROOT / "pvqae_lib").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names - {"pvqae_lib", "pvqae_lib.__main__"}


def test_pip_install_gives_a_package_that_imports_and_runs_without_the_repository(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "pvqae_lib", source / "pvqae_lib", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True, timeout=60).stdout.strip())
    (site / "zz_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PIP_INDEX_URL",
                                                          "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS")}
    env.update(PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1", OMP_NUM_THREADS="1")
    elsewhere = tmp_path / "elsewhere"          # an empty working directory: no repository beside it
    elsewhere.mkdir()

    def run(*args, timeout=300):
        done = subprocess.run([str(python), *args], cwd=elsewhere, env=env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"{args}: {done.stdout[-3000:]}{done.stderr[-3000:]}"
        return done.stdout

    # --ignore-installed: never touch the pvqae_lib installed where the dependencies come from
    run("-m", "pip", "install", "--quiet", "--no-index", "--no-deps", "--no-build-isolation", "--ignore-installed",
        str(source))

    report = json.loads(run("-c", IMPORT_EVERYTHING).strip().splitlines()[-1])
    installed = Path(report["file"]).resolve()
    assert installed.is_relative_to(venv.resolve()), f"imported {installed}, not the installed copy"
    assert report["failed"] == {}, "\n".join(report["failed"].values())
    assert set(report["modules"]) - {"pvqae_lib.__main__"} == repository_modules()

    assert "usage:" in run("-m", "pvqae_lib", "--help")
    assert "--backbone" in run("-m", "pvqae_lib", "train", "--help")
    scripts = python.parent
    assert "usage:" in subprocess.run([str(scripts / "pvqae"), "--help"], cwd=elsewhere, env=env,
                                      capture_output=True, text=True, timeout=300, check=True).stdout
