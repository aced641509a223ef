"""The package's shape (pvqae_lib/__init__.py): layers that import only downward and no
import circle (import-linter's contracts in pyproject.toml), no module over 400 lines, and the
backbone decides things only in the detector factory."""
import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "pvqae_lib"
MAX_LINES = 400


def test_import_linter_contracts_are_kept():
    done = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.argv = ['lint-imports', '--no-cache']; sys.exit(lint_imports_command())"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "2 kept, 0 broken" in done.stdout


def test_the_contracts_name_every_layer_folder():
    """A new folder of the package must be placed in a layer (else import-linter would not see it)."""
    text = (ROOT / "pyproject.toml").read_text()
    listed = set(re.findall(r"pvqae_lib\.(\w+)", text))
    on_disk = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    on_disk |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert on_disk <= listed, f"not in a layer of pyproject.toml: {sorted(on_disk - listed)}"


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, long


def backbone_tests(path: Path) -> list[int]:
    """Lines of ``path`` that compare a backbone (``.backbone == ...``, ``!= PIXEL``, ...)."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            names = [n for n in [node.left, *node.comparators] if isinstance(n, (ast.Attribute, ast.Name))]
            if any(getattr(n, "attr", getattr(n, "id", "")) in ("backbone", "PIXEL") for n in names):
                lines.append(node.lineno)
    return lines


def test_the_maths_and_the_engine_branch_on_the_backbone_only_in_the_factory():
    found = {str(p.relative_to(ROOT)): backbone_tests(p)
             for layer in ("nn", "engine") for p in (PACKAGE / layer).rglob("*.py")}
    found = {k: v for k, v in found.items() if v and not k.endswith("nn/factory.py")}
    assert not found, found
    assert backbone_tests(PACKAGE / "nn" / "factory.py")      # the check finds what it looks for
