"""The linter configured in pyproject.toml ([tool.ruff]) finds nothing in the library, the tests, the
tools or the chapters' code cells."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ruff_is_clean():
    done = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "pvqae_lib", "tests", "tools", "book"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
