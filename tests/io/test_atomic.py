"""Atomic files and folders: complete or absent, and a destination that cannot take the data is one line."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ovformer_core.errors import OutputError
from ovformer_core.io.atomic import atomic_dir, atomic_path, write_text_atomic

ROOT = Path(__file__).resolve().parents[2]


def test_a_file_appears_only_when_complete(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    with atomic_path(target) as tmp:
        tmp.write_text("half")
        assert not target.exists() and tmp.parent == target.parent and tmp.name.startswith(".out.json.")
    assert target.read_text() == "half"
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    with pytest.raises(RuntimeError, match="boom"), atomic_path(target) as tmp:
        tmp.write_text("replacement")
        raise RuntimeError("boom")
    assert target.read_text() == "half" and sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_full_disk_is_an_output_error(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    with pytest.raises(OutputError) as info, atomic_path(target):
        raise OSError(errno.ENOSPC, "No space left on device")
    assert (
        str(info.value)
        == f"cannot write {target}: no space left on device; free some disk space or choose another output folder"
    )
    assert list(tmp_path.iterdir()) == []
    # An error of reading something else passes through untouched.
    with pytest.raises(FileNotFoundError), atomic_path(target):
        raise FileNotFoundError(errno.ENOENT, "No such file", "input.mp4")


def test_a_folder_in_the_way_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "out.json").mkdir()
    with pytest.raises(OutputError, match="out.json: a folder of that name is in the way"):
        write_text_atomic(tmp_path / "out.json", "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_folder_appears_only_when_complete_and_replaces_only_when_allowed(tmp_path: Path) -> None:
    target = tmp_path / "masks"
    with atomic_dir(target) as staging:
        (staging / "a.png").write_bytes(b"1")
        assert not target.exists()
    assert [p.name for p in target.iterdir()] == ["a.png"]
    with pytest.raises(OutputError, match="already exists"), atomic_dir(target):
        pass
    with pytest.raises(KeyboardInterrupt), atomic_dir(target, replaceable=True) as staging:
        (staging / "b.png").write_bytes(b"2")
        raise KeyboardInterrupt
    assert [p.name for p in target.iterdir()] == ["a.png"] and sorted(p.name for p in tmp_path.iterdir()) == ["masks"]
    with atomic_dir(target, replaceable=True) as staging:
        (staging / "b.png").write_bytes(b"2")
    assert [p.name for p in target.iterdir()] == ["b.png"] and sorted(p.name for p in tmp_path.iterdir()) == ["masks"]


@pytest.mark.parametrize("writer", ["torch", "safetensors"])
def test_a_library_that_loses_the_errno_is_still_diagnosed(tmp_path: Path, writer: str) -> None:
    # torch.save reports a failed write as RuntimeError("unexpected pos ...") and safetensors as its own
    # error type; under a file-size limit (a real EFBIG from the kernel) the cause must still be named.
    save = {
        "torch": "torch.save({'w': torch.zeros(100_000)}, tmp)",
        "safetensors": "safetensors.torch.save_file({'w': torch.zeros(100_000)}, str(tmp))",
    }[writer]
    code = (
        "import resource, torch, safetensors.torch\n"
        "from ovformer_core.io.atomic import atomic_path\n"
        "from ovformer_core.errors import OutputError\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))\n"
        "try:\n"
        f"    with atomic_path({str(tmp_path / 'w.bin')!r}) as tmp:\n"
        f"        {save}\n"
        "except OutputError as err:\n"
        "    print(err)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"cannot write {tmp_path / 'w.bin'}: file too large;"), done.stdout
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", ["", "é"])
def test_a_name_near_the_length_limit_is_written(tmp_path: Path, suffix: str) -> None:
    """The staging names are cut to fit: any name the file system takes can be written, a file or a folder."""
    name = "v" * (255 - len(".json") - len(suffix.encode())) + suffix + ".json"
    assert len(os.fsencode(name)) == 255
    write_text_atomic(tmp_path / name, "{}")
    write_text_atomic(tmp_path / name, "[]")  # replacing it too
    assert [p.name for p in tmp_path.iterdir()] == [name] and (tmp_path / name).read_text() == "[]"
    folder = tmp_path / ("m" * 255)
    for _ in range(2):
        with atomic_dir(folder, replaceable=True) as staging:
            (staging / "a.png").write_bytes(b"x")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, folder.name])


def test_an_unwritable_folder_is_not_called_a_folder_in_the_way(tmp_path: Path, monkeypatch) -> None:
    def refused(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied")  # what a folder without write access gives

    monkeypatch.setattr("tempfile.mkstemp", refused)
    with pytest.raises(OutputError) as info:
        write_text_atomic(tmp_path / "out.json", "{}")
    assert str(info.value) == f"cannot write to {tmp_path}: permission denied; choose a writable output location"
