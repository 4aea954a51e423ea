"""The one reader of weight files: formats told by content, hostile and damaged files as one line, nothing run."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from ovformer_core.errors import CheckpointError
from ovformer_core.io.tensor_files import read_safetensors, read_state_dict, read_tensor_file, sniff_format
from tests.clip_fixtures import save_openai_archive, save_trojan_archive, tiny_clip

WHAT, HINT = "test weights", "use another file"


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: a file appears if anything runs it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, ...]:
        return (open, (str(self.marker), "w"))


def _safetensors_with_header(header: bytes | dict, body: bytes = b"") -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def _zip_with_sizes(path: Path, record: str, size: int) -> None:
    """Patch the central directory so ``record`` declares ``size`` bytes (compressed and not)."""
    data = bytearray(path.read_bytes())
    position = data.find(b"PK\x01\x02")
    while position != -1:
        length = int.from_bytes(data[position + 28 : position + 30], "little")
        if data[position + 46 : position + 46 + length].decode().endswith(record):
            data[position + 20 : position + 28] = size.to_bytes(4, "little") * 2
        position = data.find(b"PK\x01\x02", position + 4)
    path.write_bytes(bytes(data))


def _deflate_bomb(path: Path) -> None:
    """A torch.save zip whose data record inflates to 256 MiB of zeros from ~250 KB."""
    torch.save({"w": torch.zeros(4)}, path)
    with zipfile.ZipFile(path) as source:
        records = [(info.filename, source.read(info)) for info in source.infolist()]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as target:
        for name, data in records:
            if name.endswith("data/0"):
                with target.open(name, "w", force_zip64=True) as handle:
                    for _ in range(256):
                        handle.write(bytes(1 << 20))
            else:
                target.writestr(name, data)


def _make(case: str, tmp_path: Path, marker: Path) -> Path:
    path = tmp_path / f"{case}.pt"
    state = {k: v.contiguous() for k, v in tiny_clip().state_dict().items()}
    good = tmp_path / "good.safetensors"
    if not good.exists():
        save_file(state, str(good))
    builders: dict[str, Callable[[], None]] = {
        "truncated-safetensors": lambda: path.write_bytes(good.read_bytes()[:5000]),
        "zero-bytes": lambda: path.write_bytes(b""),
        "random-bytes": lambda: path.write_bytes(os.urandom(4096)),
        "directory": lambda: path.mkdir(),
        "broken-symlink": lambda: path.symlink_to(tmp_path / "nowhere"),
        "symlink-loop": lambda: path.symlink_to(path),
        "pickle-reduce": lambda: path.write_bytes(pickle.dumps({"w": _WritesMarker(marker)}, protocol=2)),
        "pickle-reduce-protocol-5": lambda: path.write_bytes(pickle.dumps({"w": _WritesMarker(marker)}, protocol=5)),
        "torch-save-reduce": lambda: torch.save({"w": _WritesMarker(marker)}, path),
        "legacy-torch-save-reduce": lambda: torch.save(
            {"w": _WritesMarker(marker)}, path, _use_new_zipfile_serialization=False
        ),
        "torchscript-trojan": lambda: save_trojan_archive(tiny_clip(), path, marker),
        "safetensors-huge-shape": lambda: path.write_bytes(
            _safetensors_with_header({"w": {"dtype": "F32", "shape": [10**6, 10**6, 10**3], "data_offsets": [0, 16]}})
            + bytes(16)
        ),
        "safetensors-overflowing-shape": lambda: path.write_bytes(
            _safetensors_with_header({"w": {"dtype": "F32", "shape": [2**62, 2**62], "data_offsets": [0, 0]}})
        ),
        "safetensors-offset-past-end": lambda: path.write_bytes(
            _safetensors_with_header({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, bytes(8))
        ),
        "safetensors-header-length-huge": lambda: path.write_bytes(struct.pack("<Q", 2**62) + b"{}"),
        "safetensors-invalid-json": lambda: path.write_bytes(_safetensors_with_header(b"{not json}")),
        "safetensors-deep-json": lambda: path.write_bytes(
            _safetensors_with_header(b'{"a":' * 5000 + b"1" + b"}" * 5000)
        ),
        "zip-absurd-sizes": lambda: (
            torch.save({"w": torch.zeros(4)}, path),
            _zip_with_sizes(path, "data/0", 2**32 - 16),
        ),
        "zip-deflate-bomb": lambda: _deflate_bomb(path),
        "torchscript-absurd-sizes": lambda: (
            save_openai_archive(tiny_clip(), path),
            _zip_with_sizes(path, "data/0", 2**32 - 16),
        ),
    }
    builders[case]()
    return path


EXPECTED = {
    "truncated-safetensors": "cannot read test weights",
    "zero-bytes": "truncated or not a PyTorch file: EOFError",
    "random-bytes": "cannot read test weights",
    "directory": "is a folder, not a file",
    "broken-symlink": "is a broken symbolic link (to",
    "symlink-loop": "is a symbolic link loop",
    "pickle-reduce": "refusing to load test weights",
    "pickle-reduce-protocol-5": "cannot read test weights",
    "torch-save-reduce": "refusing to load test weights",
    "legacy-torch-save-reduce": "refusing to load test weights",
    "torchscript-trojan": "runs its own code on load (__setstate__); nothing from it was run",
    "safetensors-huge-shape": "corrupt safetensors file",
    "safetensors-overflowing-shape": "corrupt safetensors file: overflow",
    "safetensors-offset-past-end": "corrupt safetensors file",
    "safetensors-header-length-huge": "corrupt safetensors file: header too large",
    "safetensors-invalid-json": "corrupt safetensors file: invalid JSON",
    "safetensors-deep-json": "corrupt safetensors file",
    "zip-absurd-sizes": "cannot read test weights",
    "zip-deflate-bomb": "far more than the",
    "torchscript-absurd-sizes": "cannot read test weights",
}


@pytest.mark.parametrize("case", list(EXPECTED))
def test_hostile_and_damaged_files_are_one_line_and_run_nothing(tmp_path: Path, case: str) -> None:
    marker = tmp_path / "pwned"
    path = _make(case, tmp_path, marker)
    with pytest.raises(CheckpointError) as info:
        read_tensor_file(path, WHAT, HINT)
    message = str(info.value)
    assert EXPECTED[case] in message and str(path) in message and message.endswith(HINT), message
    assert "\n" not in message
    assert not marker.exists()


def test_formats_are_told_by_content_not_by_name(tmp_path: Path) -> None:
    state = {"a": torch.arange(3.0), "b": torch.ones(2, dtype=torch.int64)}
    save_file(state, str(tmp_path / "weights.pt"))  # safetensors under a .pt name
    with (tmp_path / "weights.safetensors").open("wb") as handle:
        torch.save(state, handle)  # a torch.save zip under a .safetensors name
    torch.save(state, tmp_path / "legacy.safetensors", _use_new_zipfile_serialization=False)
    save_openai_archive(tiny_clip(), tmp_path / "clip.bin")
    expected = {
        "weights.pt": "safetensors",
        "weights.safetensors": "torch-zip",
        "legacy.safetensors": "pickle",
        "clip.bin": "torchscript",
    }
    for name, kind in expected.items():
        assert sniff_format(tmp_path / name) == kind, name
        if name != "clip.bin":
            loaded = read_state_dict(tmp_path / name, WHAT, HINT)
            assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], v) for k, v in state.items())


def test_state_dicts_are_unwrapped_and_checked(tmp_path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "wrapped.pt")
    assert list(read_state_dict(tmp_path / "wrapped.pt", WHAT, HINT)) == ["w"]
    torch.save({"state_dict": {"w": torch.zeros(1), "step": 3}}, tmp_path / "mixed.pt")
    with pytest.raises(CheckpointError, match="not a state dict of tensors \\('step' is a int\\)"):
        read_state_dict(tmp_path / "mixed.pt", WHAT, HINT)
    save_file({}, str(tmp_path / "empty.safetensors"))
    with pytest.raises(CheckpointError, match="not a state dict of tensors"):
        read_state_dict(tmp_path / "empty.safetensors", WHAT, HINT)


def test_safetensors_metadata_is_returned(tmp_path: Path) -> None:
    save_file({"e": torch.ones(2, 3)}, str(tmp_path / "c.safetensors"), metadata={"format": "x"})
    tensors, metadata = read_safetensors(tmp_path / "c.safetensors", WHAT, HINT)
    assert metadata == {"format": "x"} and torch.equal(tensors["e"], torch.ones(2, 3))
    (tmp_path / "bad.safetensors").write_bytes(b"\x01" * 20)
    with pytest.raises(CheckpointError, match="corrupt safetensors file"):
        read_safetensors(tmp_path / "bad.safetensors", WHAT, HINT)
