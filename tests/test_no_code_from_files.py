"""No loader in the package can run code from a file: checked on the sources themselves.

Forbidden calls (however imported or aliased): ``torch.jit.load`` (runs the archive's TorchScript),
``pickle.load`` / ``pickle.loads`` / a bare ``pickle.Unpickler(...)`` (run any global the file
names; ``io.restricted_pickle`` subclasses the unpickler instead), ``torch.load`` without a literal
``weights_only=True``, and ``numpy.load`` with ``allow_pickle`` set.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGES = ("ovformer_core", "ovformer_cli")
ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "torch.jit.load",
    "torch.jit._load_for_lite_interpreter",
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "_pickle.Unpickler",
    "dill.load",
    "dill.loads",
    "joblib.load",
}


def _sources() -> list[Path]:
    return sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def _imported_names(tree: ast.Module) -> dict[str, str]:
    """Local name -> the dotted name it stands for, from every import in the file."""
    names: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                head = alias.name.split(".")[0]  # `import torch.jit` binds `torch`
                names[alias.asname or head] = alias.name if alias.asname else head
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                names[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return names


def _dotted(node: ast.expr, names: dict[str, str]) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(names.get(node.id, node.id))
    return ".".join(reversed(parts))


def violations(source: str, filename: str = "<test>") -> list[str]:
    """The forbidden loader calls in one file, as ``file:line name``."""
    tree = ast.parse(source, filename=filename)
    names = _imported_names(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func, names)
        keywords = {kw.arg: kw.value for kw in node.keywords}
        bad = name in FORBIDDEN
        if name == "torch.load":
            weights_only = keywords.get("weights_only")
            bad = not (isinstance(weights_only, ast.Constant) and weights_only.value is True)
        if name in ("numpy.load", "np.load"):
            bad = "allow_pickle" in keywords and not (
                isinstance(keywords["allow_pickle"], ast.Constant) and keywords["allow_pickle"].value is False
            )
        if bad:
            found.append(f"{filename}:{node.lineno} {name}")
    return found


def test_the_checker_catches_every_spelling() -> None:
    bad = """
import pickle, torch
import torch.jit as tj
from pickle import loads as undo
from torch.jit import load
import numpy as np
pickle.load(f); undo(b); load("m.pt"); tj.load("m.pt"); torch.jit.load("m.pt"); pickle.Unpickler(f).load()
torch.load("x"); torch.load("x", weights_only=False); np.load("a.npy", allow_pickle=True)
"""
    assert len(violations(bad)) == 9
    good = 'import torch, numpy as np\ntorch.load(f, weights_only=True); np.load("a.npy", allow_pickle=False)\n'
    assert violations(good) == []


def test_no_loader_in_the_package_runs_code_from_a_file() -> None:
    sources = _sources()
    assert len(sources) > 50  # the package was found
    assert [v for path in sources for v in violations(path.read_text(), str(path.relative_to(ROOT)))] == []
