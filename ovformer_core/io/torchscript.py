"""The tensors of a TorchScript archive (``torch.jit.save``, e.g. OpenAI's CLIP ``ViT-B-32.pt``), never run.

``torch.jit.load`` compiles the archive's code and runs it (a class's ``__setstate__`` runs while the
file loads), so a crafted archive runs code. This reader never does: it only reads records.

Layout (PyTorchStreamWriter zip, every record under one folder ``<root>/``, torch >= 1.4):

- ``data.pkl``: the module tree, a protocol-2 pickle. Each TorchScript object is
  ``GLOBAL __torch__.<module> <Class>`` + ``NEWOBJ`` + ``BUILD`` with its state (for modules: a dict
  of attribute name -> value, in slot order). Tensors are
  ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict())``
  where ``storage`` is a persistent id ``("storage", torch.<Type>Storage, key, device, numel)``
  pointing at the raw little-endian bytes in record ``data/<key>`` (stored, not compressed).
  Lists of ints/floats/bools may be wrapped in ``torch.jit._pickle.build_*list`` (old torch) or
  ``restore_type_tag`` (typed containers), devices in ``torch.device``.
- ``code/<module path>.py``: each class's source. Its header lists which attributes are
  parameters and buffers (``__parameters__ = ["weight", ]``, ``__buffers__`` since torch 1.6);
  only those are ``state_dict()`` entries. It is read as text for those lines, never compiled.
- ``constants.pkl``, ``constants/``, ``version``, ``byteorder``, ``.data/``, ``extra/``: not needed.

The unpickler (``io.restricted_pickle``) builds only containers, numbers, strings and tensors;
``__torch__.*`` objects become inert ``ScriptObject`` holders. The tree is then flattened as
``Module.state_dict()`` does: per module its parameters, then its buffers, then its submodules,
names joined with dots. Refused with one line, never guessed: the pre-1.4 format
(``model.json`` + ``tensors/``), big-endian archives, quantized or sparse tensors, any other
global, and any object whose class defines ``__setstate__`` or whose state is not an attribute
dict (its meaning is whatever its code would compute).
"""

from __future__ import annotations

import ast
import collections
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ovformer_core.io.restricted_pickle import RefusedGlobalError, RestrictedUnpickler

#: TorchScript's namespace for compiled classes (the ``__torch__`` prefix of every class name).
SCRIPT_NAMESPACE = "__torch__"
#: Largest ``data.pkl`` read: a module tree pickle is a few KB per hundred tensors (ViT-B/32: ~60 KB).
MAX_PICKLE_BYTES = 16 << 20
#: Largest class source file scanned for its parameter and buffer lists.
MAX_CODE_BYTES = 16 << 20
#: Deepest module nesting followed (real networks nest < 20 deep).
MAX_MODULE_DEPTH = 256
#: Bytes copied per read from a tensor record.
CHUNK_BYTES = 1 << 24

#: ``torch.<Name>Storage`` globals of the TorchScript pickler -> element type (c10 ScalarType names).
STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64,
    "FloatStorage": torch.float32,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128,
}

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RECORD_KEY = re.compile(r"[A-Za-z0-9_]+")
_CLASS_LINE = re.compile(r"class ([A-Za-z_][A-Za-z0-9_]*)(?:\(([A-Za-z_][A-Za-z0-9_.]*)\))?:\s*$")
_DECLARATION_LINE = re.compile(r"\s+(__parameters__|__buffers__) = (\[.*\])\s*$")
_SETSTATE_LINE = re.compile(r"\s+def __setstate__\(")


class TorchScriptRefused(Exception):
    """The archive holds something that only its code could interpret (or that runs code); one line."""


class TorchScriptUnreadable(Exception):
    """The archive is damaged or in a layout this reader does not know; one line."""


def is_torchscript_archive(archive: zipfile.ZipFile) -> bool:
    """True for a ``torch.jit.save`` archive (compiled code or constants next to the pickles).

    ``torch.save`` zips hold only ``data.pkl``, ``data/``, ``version``, ``byteorder`` and ``.data/``.
    """
    for name in archive.namelist():
        parts = name.split("/")
        if len(parts) >= 2 and (parts[1] in ("code", "constants.pkl", "model.json", "attributes.pkl")):
            return True
    return False


@dataclass(frozen=True)
class ScriptStorage:
    """A ``torch.<Type>Storage`` global: only its element type matters."""

    dtype: torch.dtype

    def __setstate__(self, state: object) -> None:
        raise TorchScriptUnreadable("a storage type given a state")


class ScriptObject:
    """An inert stand-in for a TorchScript object: remembers its class name and its pickled state.

    Subclassed once per class name (``NEWOBJ`` needs a class); nothing of the archive's code runs.
    """

    qualified_name = ""

    def __init__(self, *args: object) -> None:
        # REDUCE on a class calls it: TorchScript objects are only ever built by NEWOBJ + BUILD.
        raise TorchScriptUnreadable(f"unexpected construction of {self.qualified_name}")

    def __setstate__(self, state: object) -> None:
        if "_state" in self.__dict__:
            raise TorchScriptUnreadable(f"{self.qualified_name} is given its state twice")
        self.__dict__["_state"] = state

    @property
    def state(self) -> object:
        """What the archive's BUILD gave this object (an attribute dict for modules)."""
        return self.__dict__.get("_state")


@dataclass
class _ClassInfo:
    """What a class's source header declares (read as text, never compiled)."""

    is_module: bool
    parameters: list[str] = field(default_factory=list)
    buffers: list[str] | None = None  # None: archive older than ``__buffers__`` (torch < 1.6)
    defines_setstate: bool = False


def read_torchscript_tensors(path: str | Path) -> dict[str, Tensor]:
    """The ``state_dict()`` of a TorchScript archive, read without compiling or running anything.

    Args:
        path: a ``torch.jit.save`` zip.

    Returns:
        ``state_dict()`` names -> CPU tensors with the stored dtypes (views of shared storages
        where the archive shares them), in ``state_dict()`` order.

    Raises:
        TorchScriptRefused: the archive needs its code to be understood (``__setstate__``, custom
            state, objects or tensor kinds outside the allow-list).
        TorchScriptUnreadable: damaged or unknown layout.
        zipfile.BadZipFile, OSError: the zip itself is unreadable.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        reader = _ArchiveReader(archive, path.stat().st_size)
        root = reader.load_tree()
        return reader.flatten(root)


class _ArchiveReader:
    def __init__(self, archive: zipfile.ZipFile, archive_bytes: int) -> None:
        self.archive = archive
        self.archive_bytes = archive_bytes
        names = archive.namelist()
        if not names or "/" not in names[0]:
            raise TorchScriptUnreadable("no archive folder (not written by torch.jit.save)")
        self.root = names[0].split("/")[0]
        self.names = set(names)
        self.storages: dict[str, Tensor] = {}
        self.objects: list[ScriptObject] = []
        self.classes: dict[str, type[ScriptObject]] = {}
        self.class_info: dict[str, _ClassInfo] = {}

    def record(self, name: str) -> str:
        return f"{self.root}/{name}"

    # ----------------------------------------------------------------------------- the pickle

    def load_tree(self) -> ScriptObject:
        data_pkl = self.record("data.pkl")
        if data_pkl not in self.names:
            if self.record("model.json") in self.names or self.record("attributes.pkl") in self.names:
                raise TorchScriptUnreadable(
                    "TorchScript format of torch < 1.4 (model.json), which cannot be read without running it"
                )
            raise TorchScriptUnreadable("no data.pkl in the archive")
        byteorder = self.record("byteorder")
        if byteorder in self.names and self._read_small(byteorder, 16).strip() != b"little":
            raise TorchScriptUnreadable("a big-endian archive")
        info = self.archive.getinfo(data_pkl)
        if info.file_size > MAX_PICKLE_BYTES:
            raise TorchScriptUnreadable(f"data.pkl declares {info.file_size} bytes (at most {MAX_PICKLE_BYTES})")
        allowed: dict[tuple[str, str], Any] = {
            ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
            ("collections", "OrderedDict"): collections.OrderedDict,
            ("torch.jit._pickle", "build_intlist"): _as_list,
            ("torch.jit._pickle", "build_doublelist"): _as_list,
            ("torch.jit._pickle", "build_boollist"): _as_list,
            ("torch.jit._pickle", "build_tensorlist"): _as_list,
            ("torch.jit._pickle", "restore_type_tag"): _restore_type_tag,
            ("torch", "device"): _device,
        }
        for storage_name, dtype in STORAGE_DTYPES.items():
            allowed[("torch", storage_name)] = ScriptStorage(dtype)
        with self.archive.open(info) as handle:
            unpickler = RestrictedUnpickler(
                handle, allowed, persistent_load=self._storage, namespaces={SCRIPT_NAMESPACE: self._script_class}
            )
            try:
                root = unpickler.load()
            except RefusedGlobalError as err:
                raise TorchScriptRefused(f"it references {err.qualified_name}, which is not plain weights") from None
        if not isinstance(root, ScriptObject):
            raise TorchScriptUnreadable(f"data.pkl holds a {type(root).__name__}, not a module")
        for obj in self.objects:
            info_of = self._info(obj.qualified_name)
            if info_of.defines_setstate:
                raise TorchScriptRefused(f"class {obj.qualified_name} runs its own code on load (__setstate__)")
            if not isinstance(obj.state, dict) or not all(isinstance(key, str) for key in obj.state):
                raise TorchScriptRefused(f"{obj.qualified_name} has custom state that only its code can interpret")
        return root

    def _script_class(self, module: str, name: str) -> type[ScriptObject]:
        qualified = f"{module}.{name}"
        if not all(_IDENTIFIER.fullmatch(part) for part in qualified.split(".")):
            raise TorchScriptUnreadable(f"malformed class name {qualified[:80]!r}")
        cls = self.classes.get(qualified)
        if cls is None:
            objects = self.objects

            def new(klass: type[ScriptObject], *args: object) -> ScriptObject:
                if args:
                    raise TorchScriptUnreadable(f"unexpected construction arguments for {qualified}")
                obj = object.__new__(klass)
                objects.append(obj)
                return obj

            cls = type(name, (ScriptObject,), {"qualified_name": qualified, "__new__": new})
            self.classes[qualified] = cls
        return cls

    def _storage(self, pid: Any) -> Tensor:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise TorchScriptUnreadable(f"unknown persistent id {str(pid)[:80]}")
        _, kind, key, _location, numel = pid
        if not isinstance(kind, ScriptStorage):
            raise TorchScriptRefused(f"storage type {kind!r} is not a plain tensor type")
        if not (isinstance(key, str) and _RECORD_KEY.fullmatch(key)) or not isinstance(numel, int) or numel < 0:
            raise TorchScriptUnreadable(f"malformed storage reference {str(pid)[:80]}")
        if key not in self.storages:
            self.storages[key] = self._read_storage(key)
        raw = self.storages[key]
        itemsize = torch.empty(0, dtype=kind.dtype).element_size()
        if raw.numel() % itemsize or raw.numel() < numel * itemsize:
            raise TorchScriptUnreadable(f"record data/{key} has {raw.numel()} bytes, fewer than {numel} elements")
        return raw.view(kind.dtype)

    def _read_storage(self, key: str) -> Tensor:
        name = self.record(f"data/{key}")
        if name not in self.names:
            raise TorchScriptUnreadable(f"tensor record data/{key} is missing")
        info = self.archive.getinfo(name)
        if info.compress_type != zipfile.ZIP_STORED or info.header_offset + info.file_size > self.archive_bytes:
            raise TorchScriptUnreadable(
                f"tensor record data/{key} declares {info.file_size} bytes the file does not hold (or is compressed)"
            )
        buffer = torch.empty(info.file_size, dtype=torch.uint8)
        target = buffer.numpy()
        done = 0
        with self.archive.open(info) as handle:
            while done < info.file_size:
                chunk = handle.read(min(CHUNK_BYTES, info.file_size - done))
                if not chunk:
                    raise TorchScriptUnreadable(f"tensor record data/{key} is truncated")
                target[done : done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
                done += len(chunk)
        return buffer

    def _read_small(self, name: str, limit: int) -> bytes:
        info = self.archive.getinfo(name)
        if info.file_size > limit:
            raise TorchScriptUnreadable(f"{name.split('/', 1)[-1]} declares {info.file_size} bytes (at most {limit})")
        return self.archive.read(info)

    # ----------------------------------------------------------------------------- class headers

    def _info(self, qualified: str) -> _ClassInfo:
        if qualified not in self.class_info:
            self.class_info[qualified] = self._read_class_info(qualified)
        return self.class_info[qualified]

    def _read_class_info(self, qualified: str) -> _ClassInfo:
        module, _, name = qualified.rpartition(".")
        source_name = self.record("code/" + module.replace(".", "/") + ".py")
        info = None
        if source_name in self.names:
            try:
                info = _find_class(self._read_small(source_name, MAX_CODE_BYTES).decode("utf-8"), name)
            except UnicodeDecodeError:
                raise TorchScriptUnreadable(f"the code of {qualified} is not text") from None
        if info is None:
            raise TorchScriptUnreadable(f"no code for class {qualified}")
        return info

    # ----------------------------------------------------------------------------- flattening

    def flatten(self, root: ScriptObject) -> dict[str, Tensor]:
        """``state_dict()`` of the module tree: parameters, buffers, then submodules, per module."""
        if not self._info(root.qualified_name).is_module:
            raise TorchScriptUnreadable(f"the archive's root {root.qualified_name} is not a module")
        state: dict[str, Tensor] = {}
        self._flatten_into(state, root, "", (id(root),))
        return state

    def _flatten_into(self, state: dict[str, Tensor], module: ScriptObject, prefix: str, path: tuple[int, ...]) -> None:
        if len(path) > MAX_MODULE_DEPTH:
            raise TorchScriptUnreadable(f"modules nested deeper than {MAX_MODULE_DEPTH}")
        info = self._info(module.qualified_name)
        attributes = module.state
        assert isinstance(attributes, dict)  # checked for every object in load_tree
        tensors = {name: value for name, value in attributes.items() if isinstance(value, Tensor)}
        parameters = [name for name in tensors if name in info.parameters]
        if info.buffers is None:  # before torch 1.6 every non-parameter tensor attribute was a buffer
            buffers = [name for name in tensors if name not in info.parameters]
        else:
            buffers = [name for name in tensors if name in info.buffers]
        for name in parameters + buffers:
            tensor = tensors[name]
            if type(tensor) is not Tensor or tensor._backward_hooks:  # BUILD can set hooks on a tensor
                raise TorchScriptRefused(f"tensor {prefix + name} carries hooks or is not a plain tensor")
            state[prefix + name] = tensor
        for name, value in attributes.items():
            if isinstance(value, ScriptObject) and self._info(value.qualified_name).is_module:
                if id(value) in path:
                    raise TorchScriptUnreadable(f"module {prefix + name} contains itself")
                self._flatten_into(state, value, f"{prefix}{name}.", (*path, id(value)))


def _find_class(text: str, name: str) -> _ClassInfo | None:
    """Scan ``class <name>(...)`` in a TorchScript source file: module or not, declarations, ``__setstate__``."""
    info: _ClassInfo | None = None
    for line_no, line in enumerate(text.splitlines(), start=1):
        if info is None:
            match = _CLASS_LINE.match(line)
            if match is not None and match[1] == name:
                info = _ClassInfo(is_module=match[2] == "Module")
            continue
        if line and not line[0].isspace():
            break  # the class body ended
        if _SETSTATE_LINE.match(line):
            info.defines_setstate = True
            continue
        declaration = _DECLARATION_LINE.match(line)
        if declaration is None:
            continue
        try:
            names = ast.literal_eval(declaration[2])  # a list of strings; literal_eval evaluates literals only
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            names = None
        if not (isinstance(names, list) and all(isinstance(item, str) for item in names)):
            raise TorchScriptUnreadable(f"unreadable {declaration[1]} of class {name} (line {line_no})")
        if declaration[1] == "__parameters__":
            info.parameters = names
        else:
            info.buffers = names
    return info


def _rebuild_tensor(
    storage: Tensor,
    storage_offset: int,
    size: tuple[int, ...],
    stride: tuple[int, ...],
    requires_grad: bool,
    backward_hooks: dict[Any, Any],
    metadata: object = None,
) -> Tensor:
    """Stand-in for ``torch._utils._rebuild_tensor_v2``: a bounds-checked strided view of the storage."""
    if not isinstance(storage, Tensor):
        raise TorchScriptUnreadable("a tensor without a storage record")
    dims = (size, stride)
    if not all(isinstance(d, tuple) and all(type(v) is int and v >= 0 for v in d) for d in dims) or len(size) != len(
        stride
    ):
        raise TorchScriptUnreadable(f"malformed tensor geometry {str(size)[:60]} / {str(stride)[:60]}")
    if type(storage_offset) is not int or storage_offset < 0 or not isinstance(requires_grad, bool):
        raise TorchScriptUnreadable("malformed tensor header")
    if backward_hooks or metadata:
        raise TorchScriptRefused("a tensor carries hooks or metadata")
    if all(extent > 0 for extent in size):
        last = storage_offset + sum((extent - 1) * step for extent, step in zip(size, stride, strict=True))
        if last >= storage.numel():
            raise TorchScriptUnreadable(f"a tensor reaches element {last} of a storage of {storage.numel()}")
    elif storage_offset > storage.numel():
        raise TorchScriptUnreadable(f"a tensor starts at element {storage_offset} of a storage of {storage.numel()}")
    return storage.as_strided(size, stride, storage_offset)


def _as_list(values: object) -> list[Any]:
    """Stand-in for ``torch.jit._pickle.build_*list``: the list itself."""
    if not isinstance(values, list):
        raise TorchScriptUnreadable("a typed list that is not a list")
    return values


def _restore_type_tag(value: object, type_name: object) -> object:
    """Stand-in for ``torch.jit._pickle.restore_type_tag``: the container itself (the tag is for the compiler)."""
    if not isinstance(value, (list, dict)) or not isinstance(type_name, str):
        raise TorchScriptUnreadable("a malformed typed container")
    return value


def _device(name: object) -> str:
    """Stand-in for ``torch.device``: its name (tensors are always read to the CPU)."""
    if not isinstance(name, str) or len(name) > 64:
        raise TorchScriptUnreadable("a malformed device")
    return name
