"""Official precomputed inputs: DetPro .npy classifiers and per-frame CLIP feature pickles, loaded safely."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from ovformer_core.errors import OVFormerError, VocabularyError
from ovformer_core.io.precomputed import clip_features_for_files, load_clip_features, load_text_classifier_npy
from tests.reference_fixtures import VIDEO_TINY

ROOT = "datasets/LVVIS/val/JPEGImages/"


class _Evil:
    """Pickles to a call of os.system: must never run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def _features(seed: int = 0) -> dict[str, torch.Tensor]:
    """A feature dict as the official script writes it: path -> [1, 512] (float16, as on a GPU)."""
    generator = torch.Generator().manual_seed(seed)
    names = ["00000/00000.jpg", "00000/00001.jpg", "00001/00000.jpg"]
    return {ROOT + name: torch.randn(1, 512, generator=generator).half() for name in names}


def test_classifier_npy() -> None:
    classifier = load_text_classifier_npy(VIDEO_TINY / "text_classifier.npy")
    assert classifier.shape == (12, 512) and classifier.dtype == torch.float32
    assert torch.equal(classifier, torch.from_numpy(np.load(VIDEO_TINY / "text_classifier.npy")))


def test_bad_classifier_npy(tmp_path: Path) -> None:
    np.save(tmp_path / "wrong_dim.npy", np.zeros((3, 256), np.float32))
    np.save(tmp_path / "ints.npy", np.zeros((3, 512), np.int64))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    nan = np.zeros((2, 512), np.float32)
    nan[1, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    (tmp_path / "garbage.npy").write_bytes(b"\x93NUMPY garbage")
    expected = {
        "wrong_dim": "shape",
        "ints": "floats",
        "objects": "cannot read",
        "nan": "NaN",
        "garbage": "cannot read",
        "missing": "does not exist",
    }
    for name, message in expected.items():
        with pytest.raises(VocabularyError, match=message) as info:
            load_text_classifier_npy(tmp_path / f"{name}.npy")
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("writer", ["torch_zip", "torch_legacy", "pickle2", "pickle5", "numpy_values"])
def test_feature_files_in_every_format(tmp_path: Path, writer: str) -> None:
    features = _features()
    path = tmp_path / "lvvis_val_clip_feature.pkl"
    if writer == "torch_zip":
        torch.save(features, path)
    elif writer == "torch_legacy":
        torch.save(features, path, _use_new_zipfile_serialization=False)
    elif writer == "pickle2":
        path.write_bytes(pickle.dumps(features, protocol=2))
    elif writer == "pickle5":
        path.write_bytes(pickle.dumps(features, protocol=5))
    else:
        path.write_bytes(pickle.dumps({k: v.numpy() for k, v in features.items()}))
    loaded = load_clip_features(path)
    assert set(loaded) == set(features)
    for key, value in features.items():
        assert loaded[key].shape == (512,) and loaded[key].dtype == torch.float32
        assert torch.equal(loaded[key], value.float().reshape(512))


def test_lookup_by_dataset_file_names(tmp_path: Path) -> None:
    features = _features()
    loaded = {**{k: v.float().reshape(512) for k, v in features.items()}, 7: torch.zeros(512)}
    rows = clip_features_for_files(loaded, ["00001/00000.jpg", "00000/00000.jpg", ROOT + "00000/00001.jpg"])
    assert rows.shape == (3, 512)
    assert torch.equal(rows[0], loaded[ROOT + "00001/00000.jpg"])
    assert torch.equal(rows[1], loaded[ROOT + "00000/00000.jpg"])
    assert torch.equal(rows[2], loaded[ROOT + "00000/00001.jpg"])
    with pytest.raises(OVFormerError, match="no CLIP feature for frame '00002/00000.jpg'"):
        clip_features_for_files(loaded, ["00002/00000.jpg"])
    with pytest.raises(OVFormerError, match="2 CLIP features"):
        clip_features_for_files(loaded, ["00000.jpg"])  # ambiguous: two videos have it


def test_evil_pickles_are_refused_without_running(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({ROOT + "a.jpg": _Evil(marker)}))
    zipped = tmp_path / "zipped.pkl"
    torch.save({ROOT + "a.jpg": _Evil(marker)}, zipped)
    legacy = tmp_path / "legacy.pkl"
    torch.save({ROOT + "a.jpg": _Evil(marker)}, legacy, _use_new_zipfile_serialization=False)
    for path in (plain, zipped, legacy):
        with pytest.raises(OVFormerError, match="refusing to load .*system") as info:
            load_clip_features(path)
        assert "\n" not in str(info.value)
    assert not marker.exists()


def test_corrupt_and_wrong_feature_files(tmp_path: Path) -> None:
    good = tmp_path / "good.pkl"
    torch.save(_features(), good)
    data = good.read_bytes()
    (tmp_path / "truncated.pkl").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pkl").write_bytes(b"garbage\x00\x01")
    (tmp_path / "list.pkl").write_bytes(pickle.dumps([1, 2]))
    torch.save({ROOT + "a.jpg": torch.zeros(1, 256)}, tmp_path / "dim.pkl")
    expected = {
        "truncated": "cannot read",
        "garbage": "cannot read",
        "list": "not a dict",
        "dim": r"\[1, 256\]",
        "missing": "does not exist",
    }
    for name, message in expected.items():
        with pytest.raises(OVFormerError, match=message) as info:
            load_clip_features(tmp_path / f"{name}.pkl")
        assert "\n" not in str(info.value)
