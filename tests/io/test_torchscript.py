"""TorchScript archives read as tensors only: parity with ``torch.jit.load(...).state_dict()`` on archives
this test makes itself, trojans that never run, and one-line refusals of crafted or unknown layouts.

Crafted archives are written with ``torch.save`` (the same pickle and record layout as TorchScript's
``data.pkl`` + ``data/<key>``) of stand-in ``__torch__.*`` classes, plus hand-written class headers.
"""

from __future__ import annotations

import copyreg
import os
import pickle
import re
import subprocess
import sys
import types
import warnings
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from ovformer_core.checkpoints import read_clip_state_dict
from ovformer_core.io import torchscript
from ovformer_core.io.torchscript import TorchScriptRefused, TorchScriptUnreadable, read_torchscript_tensors
from tests.clip_fixtures import save_openai_archive, save_trojan_archive, tiny_clip


def jit_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """What ``torch.jit.load`` gives, on an archive the test made itself (never on a trojan)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return dict(torch.jit.load(str(path), map_location="cpu").state_dict())


def assert_identical(ours: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> None:
    assert list(ours) == list(reference)
    for name, value in reference.items():
        got = ours[name]
        assert got.dtype == value.dtype and got.shape == value.shape and got.stride() == value.stride(), name
        assert torch.equal(got, value), name


def test_openai_layout_archive_is_bit_identical_to_torch_jit_load(tmp_path: Path) -> None:
    model = tiny_clip(seed=3)
    archive = save_openai_archive(model, tmp_path / "ViT-tiny.pt")
    ours = read_torchscript_tensors(archive)
    reference = jit_state_dict(archive)
    assert_identical(ours, reference)
    assert ours["visual.conv1.weight"].dtype == torch.float16 and ours["context_length"].dtype == torch.int64
    assert set(ours) == set(model.state_dict()) | {"input_resolution", "context_length", "vocab_size"}
    widened = read_clip_state_dict(archive)  # the CLIP slot: settings dropped, float32
    assert set(widened) == set(model.state_dict())
    assert all(torch.equal(widened[k], reference[k].float()) for k in widened)


class _Nested(nn.Module):
    """Every kind of attribute a module tree carries: containers, shared storages, views, non-tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.bn = nn.BatchNorm1d(4)
        self.seq = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2))
        self.blocks = nn.ModuleList([nn.Linear(2, 2), nn.LayerNorm(2)])
        self.heads = nn.ModuleDict({"a": nn.Linear(2, 2, bias=False)})
        self.transposed = nn.Parameter(torch.randn(2, 3).t())  # non-contiguous
        self.register_buffer("half_view", torch.arange(8, dtype=torch.float16)[2:6])  # offset into a storage
        self.register_buffer("flags", torch.tensor([True, False]))
        self.plain = torch.arange(3)  # a tensor attribute that is neither parameter nor buffer
        self.sizes: list[int] = [1, 2, 3]
        self.scales: list[float] = [0.5]
        self.named: dict[str, torch.Tensor] = {"x": torch.ones(1)}
        self.maybe: torch.Tensor | None = None
        self.label = "nested"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.seq(self.bn(self.lin(x)))
        for block in self.blocks:
            x = block(x)
        return self.heads["a"](x) + self.plain.sum() + self.transposed.sum()


@pytest.mark.parametrize("how", ["script", "trace"])
def test_nested_module_trees_match_torch_jit_load(tmp_path: Path, how: str) -> None:
    torch.manual_seed(0)
    module = _Nested().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        compiled = torch.jit.script(module) if how == "script" else torch.jit.trace(module, torch.randn(2, 3))
        torch.jit.save(compiled, str(tmp_path / "nested.pt"))
    ours = read_torchscript_tensors(tmp_path / "nested.pt")
    assert_identical(ours, jit_state_dict(tmp_path / "nested.pt"))
    assert "plain" not in ours and list(ours) == list(module.state_dict())


def rewrite_zip(path: Path, change: Callable[[str, bytes], bytes | None], compress: set[str] | None = None) -> None:
    """Rewrite every record through ``change(name, data)`` (None drops the record)."""
    with zipfile.ZipFile(path) as source:
        records = [(info.filename, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w") as target:
        for name, data in records:
            new = change(name, data)
            if new is not None:
                kind = zipfile.ZIP_DEFLATED if compress and name in compress else zipfile.ZIP_STORED
                target.writestr(name, new, compress_type=kind)


def test_archive_older_than_buffer_declarations_reads_every_tensor_attribute(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = _Nested().eval()
    path = tmp_path / "old.pt"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(module), str(path))
    # torch < 1.6 wrote no __buffers__ line; then every tensor attribute that is no parameter was a buffer.
    rewrite_zip(
        path, lambda name, data: re.sub(rb"\n *__buffers__ = \[.*\]", b"", data) if name.endswith(".py") else data
    )
    ours = read_torchscript_tensors(path)
    assert set(ours) == set(module.state_dict()) | {"plain"}
    assert all(torch.equal(ours[k], v) for k, v in module.state_dict().items())


@pytest.mark.parametrize("dict_state", [False, True], ids=["tuple-state", "dict-state"])
def test_trojan_archive_runs_under_torch_jit_load_but_never_here(tmp_path: Path, dict_state: bool) -> None:
    marker = tmp_path / "pwned"
    archive = save_trojan_archive(tiny_clip(), tmp_path / "ViT-B-32.pt", marker, dict_state=dict_state)
    # The trojan is real: loading it the way the old code did writes the marker (in another process).
    loaded = subprocess.run(
        [sys.executable, "-c", f"import torch; print(len(torch.jit.load({str(archive)!r}).state_dict()))"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert marker.exists() and loaded.returncode == 0, loaded.stderr
    assert int(loaded.stdout) == len(tiny_clip().state_dict()) + 3  # the archive holds valid weights only
    marker.unlink()
    with pytest.raises(TorchScriptRefused, match=r"_\w+Payload runs its own code on load \(__setstate__\)"):
        read_torchscript_tensors(archive)
    assert not marker.exists()


# ----------------------------------------------------------------------------- crafted archives


class _Stand:
    """A stand-in TorchScript object: pickled as ``GLOBAL <module> <name>`` + NEWOBJ + BUILD(state)."""

    state: Any = None

    def __reduce_ex__(self, protocol: object) -> tuple[Any, ...]:
        return (copyreg.__newobj__, (type(self),), self.state)


@pytest.fixture
def script_classes(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], type[_Stand]]]:
    """Makes stand-in classes ``__torch__.<module>.<Name>`` that pickle can name (modules registered)."""

    def make(qualified: str) -> type[_Stand]:
        module_name, _, name = qualified.rpartition(".")
        parts = module_name.split(".")
        for depth in range(1, len(parts) + 1):
            package = ".".join(parts[:depth])
            if package not in sys.modules:
                monkeypatch.setitem(sys.modules, package, types.ModuleType(package))
        cls = type(name, (_Stand,), {"__module__": module_name, "__qualname__": name})
        setattr(sys.modules[module_name], name, cls)
        return cls

    yield make


def module_header(name: str, parameters: list[str], buffers: list[str], extra: str = "") -> str:
    quoted = lambda names: "[" + "".join(f'"{n}", ' for n in names) + "]"  # noqa: E731
    return (
        f"class {name}(Module):\n  __parameters__ = {quoted(parameters)}\n  __buffers__ = {quoted(buffers)}\n"
        f"  training : bool\n{extra}  def forward(self: __torch__.{name}) -> NoneType:\n    return None\n"
    )


def write_archive(path: Path, root: _Stand, code: dict[str, str]) -> Path:
    """``torch.save`` the stand-in tree, then add TorchScript's code records and constants.

    Records lie under ``archive/`` (torch.save of a file object), as the damage tests expect.
    """
    with path.open("wb") as handle:
        torch.save(root, handle)
    with zipfile.ZipFile(path, "a") as archive:
        folder = archive.namelist()[0].split("/")[0]
        assert folder == "archive"
        for module, text in code.items():
            archive.writestr(f"{folder}/code/{module.replace('.', '/')}.py", text)
        archive.writestr(f"{folder}/constants.pkl", b"\x80\x02).")
    return path


def _simple_archive(
    path: Path, make: Callable[[str], type[_Stand]], code: dict[str, str] | None = None, **state: Any
) -> Path:
    root = make("__torch__.Root")()
    root.state = {"training": False, "w": torch.arange(4.0), **state}
    return write_archive(path, root, {"__torch__": module_header("Root", ["w"], []), **(code or {})})


def test_crafted_archive_with_plain_modules_loads(
    tmp_path: Path, script_classes: Callable[[str], type[_Stand]]
) -> None:
    child = script_classes("__torch__.m.Child")()
    child.state = {"b": torch.ones(2, dtype=torch.float16), "n": 3, "t": (1, "x")}
    path = _simple_archive(tmp_path / "ok.pt", script_classes, child=child)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("archive/code/__torch__/m.py", module_header("Child", [], ["b"]))
    state = read_torchscript_tensors(path)
    assert list(state) == ["w", "child.b"] and state["child.b"].dtype == torch.float16


@pytest.mark.parametrize(
    ("case", "error", "message"),
    [
        ("custom-state", TorchScriptRefused, "custom state that only its code can interpret"),
        ("os-system", TorchScriptRefused, "references posix.system"),
        ("cycle", TorchScriptUnreadable, "contains itself"),
        ("no-code", TorchScriptUnreadable, "no code for class __torch__.m.Child"),
        ("setstate", TorchScriptRefused, "runs its own code on load"),
        ("quantized", TorchScriptRefused, "not plain weights"),
    ],
)
def test_crafted_archives_are_refused(
    tmp_path: Path, script_classes: Callable[[str], type[_Stand]], case: str, error: type, message: str
) -> None:
    marker = tmp_path / "pwned"
    extra: dict[str, Any] = {}
    code_extra = ""
    if case == "custom-state":
        child = script_classes("__torch__.Root2")()
        child.state = ("a", torch.ones(1))
        extra["child"] = child
    elif case == "os-system":

        class Evil:
            def __reduce__(self) -> tuple[Any, ...]:
                return (os.system, (f"touch {marker}",))

        extra["evil"] = Evil()
    elif case == "no-code":
        child = script_classes("__torch__.m.Child")()
        child.state = {"b": torch.ones(1)}
        extra["child"] = child
    elif case == "setstate":
        code_extra = (
            "  def __setstate__(self: __torch__.Root, state: Dict[str, Tensor]) -> NoneType:\n    return None\n"
        )
    elif case == "quantized":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # quantized tensors are deprecated, still a layout a file may hold
            extra["q"] = torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)
    root_cls = script_classes("__torch__.Root")
    root = root_cls()
    root.state = {"training": False, "w": torch.arange(4.0), **extra}
    if case == "cycle":
        root.state["again"] = root
    code = {"__torch__": module_header("Root", ["w"], [], code_extra)}
    if case == "custom-state":
        code["__torch__"] += module_header("Root2", [], [])
    path = write_archive(tmp_path / f"{case}.pt", root, code)
    with pytest.raises(error, match=message):
        read_torchscript_tensors(path)
    assert not marker.exists()


def _patch_pickle(path: Path, old: bytes, new: bytes) -> None:
    def change(name: str, data: bytes) -> bytes:
        if name.endswith("data.pkl"):
            assert data.count(old) == 1, (old, data)
            return data.replace(old, new)
        return data

    rewrite_zip(path, change)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("view-out-of-bounds", "reaches element 8 of a storage of 4"),
        ("record-too-short", "fewer than 4 elements"),
        ("record-missing", "record data/0 is missing"),
        ("record-compressed", "or is compressed"),
        ("big-endian", "big-endian"),
        ("legacy-layout", "torch < 1.4"),
        ("no-data-pkl", "no data.pkl"),
        ("huge-pickle", "data.pkl declares"),
        ("negative-stride", "malformed tensor geometry"),
    ],
)
def test_damaged_and_unknown_layouts_are_one_line(
    tmp_path: Path,
    script_classes: Callable[[str], type[_Stand]],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    message: str,
) -> None:
    path = _simple_archive(tmp_path / f"{case}.pt", script_classes)
    read_torchscript_tensors(path)  # intact before the damage
    if case == "view-out-of-bounds":  # size (4,) -> (9,) over a 4-element storage
        _patch_pickle(path, b"K\x00K\x04\x85", b"K\x00K\x09\x85")
    elif case == "negative-stride":
        _patch_pickle(path, b"K\x01\x85", b"J\xff\xff\xff\xff\x85")
    elif case == "record-too-short":
        rewrite_zip(path, lambda name, data: data[:8] if name.endswith("data/0") else data)
    elif case == "record-missing":
        rewrite_zip(path, lambda name, data: None if name.endswith("data/0") else data)
    elif case == "record-compressed":
        rewrite_zip(path, lambda name, data: data, compress={"archive/data/0"})
    elif case == "big-endian":
        rewrite_zip(path, lambda name, data: b"big" if name.endswith("byteorder") else data)
    elif case == "legacy-layout":
        rewrite_zip(path, lambda name, data: None if name.endswith("data.pkl") else data)
        with zipfile.ZipFile(path, "a") as archive:
            archive.writestr("archive/model.json", "{}")
    elif case == "no-data-pkl":
        rewrite_zip(path, lambda name, data: None if name.endswith("data.pkl") else data)
    elif case == "huge-pickle":
        monkeypatch.setattr(torchscript, "MAX_PICKLE_BYTES", 16)
    with pytest.raises(TorchScriptUnreadable, match=re.escape(message)) as info:
        read_torchscript_tensors(path)
    assert "\n" not in str(info.value)


def test_archive_records_are_read_not_inflated(tmp_path: Path, script_classes: Callable[[str], type[_Stand]]) -> None:
    """A record may not claim more bytes than the file holds (the check runs before any read)."""
    path = _simple_archive(tmp_path / "claims.pt", script_classes)
    data = bytearray(path.read_bytes())
    name = b"archive/data/0"
    position = data.find(b"PK\x01\x02")
    while position != -1:  # central directory entries: patch the sizes of data/0 to 1 GB
        length = int.from_bytes(data[position + 28 : position + 30], "little")
        if data[position + 46 : position + 46 + length] == name:
            data[position + 20 : position + 28] = (1 << 30).to_bytes(4, "little") * 2
        position = data.find(b"PK\x01\x02", position + 4)
    path.write_bytes(bytes(data))
    with pytest.raises((TorchScriptUnreadable, zipfile.BadZipFile)):
        read_torchscript_tensors(path)


def _unicode(text: str) -> bytes:
    return b"X" + len(text).to_bytes(4, "little") + text.encode()


def test_build_cannot_put_hooks_on_a_tensor(tmp_path: Path, script_classes: Callable[[str], Any]) -> None:
    """A hand-made data.pkl whose BUILD gives the tensor backward hooks (torch.save never writes that)."""
    path = _simple_archive(tmp_path / "hooks.pt", script_classes)
    storage = b"(" + _unicode("storage") + b"ctorch\nFloatStorage\n" + _unicode("0") + _unicode("cpu") + b"K\x04tQ"
    empty_hooks = b"ccollections\nOrderedDict\n)R"
    tensor = b"ctorch._utils\n_rebuild_tensor_v2\n(" + storage + b"K\x00(K\x04t(K\x01t\x89" + empty_hooks + b"tR"
    hooks = b"ccollections\nOrderedDict\n)RK\x01ctorch.jit._pickle\nbuild_intlist\ns"  # {1: a callable}
    build_hooks = b"(\x89N" + hooks + b"tb"  # Tensor.__setstate__((False, None, hooks))
    root = b"c__torch__\nRoot\n)\x81}(" + _unicode("training") + b"\x89" + _unicode("w") + tensor + build_hooks + b"ub."
    rewrite_zip(path, lambda name, data: b"\x80\x02" + root if name.endswith("data.pkl") else data)
    with pytest.raises(TorchScriptRefused, match="tensor w carries hooks"):
        read_torchscript_tensors(path)


def test_build_cannot_modify_an_allowed_function(tmp_path: Path, script_classes: Callable[[str], Any]) -> None:
    """BUILD on an allowed global would set e.g. ``__defaults__`` of our rebuilder for the whole process."""
    path = _simple_archive(tmp_path / "defaults.pt", script_classes)
    defaults_before = torchscript._rebuild_tensor.__defaults__
    tamper = b"ctorch._utils\n_rebuild_tensor_v2\n(N}" + _unicode("__defaults__") + b"(K\x01tstb0"
    root = b"\x80\x02" + tamper + b"c__torch__\nRoot\n)\x81}(" + _unicode("training") + b"\x89ub."
    rewrite_zip(path, lambda name, data: root if name.endswith("data.pkl") else data)
    with pytest.raises(pickle.UnpicklingError, match="refusing to modify an allowed global"):
        read_torchscript_tensors(path)
    assert torchscript._rebuild_tensor.__defaults__ == defaults_before
