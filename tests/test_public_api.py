"""The top-level package: light to import, every public name reachable and visible to type checkers."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import ovformer_core

INIT = Path(ovformer_core.__file__)


def test_public_names_resolve_and_match_the_type_checking_imports() -> None:
    tree = ast.parse(INIT.read_text())
    guarded = next(node for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test))
    typed = {alias.name for node in guarded.body if isinstance(node, ast.ImportFrom) for alias in node.names}
    lazy = set(ovformer_core._LAZY)
    assert typed == lazy
    assert set(ovformer_core.__all__) == lazy | {"OVFormerError", "__version__"}
    for name in ovformer_core.__all__:
        assert getattr(ovformer_core, name) is not None


def test_import_stays_light() -> None:
    code = "import sys, ovformer_core; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_the_version_has_one_source() -> None:
    pyproject = (INIT.parent.parent / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and 'version = { attr = "ovformer_core.__version__" }' in pyproject
    assert "\nversion = " not in pyproject.split("[tool.setuptools.dynamic]")[0]
