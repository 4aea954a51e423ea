"""End to end: `ovformer segment` and `ovformer export` on videos written with PyAV, tiny real-layout models."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from typer.testing import CliRunner

import ovformer_core.io.overlay as overlay_module
from ovformer_cli.app import app
from ovformer_core.errors import out_of_memory
from ovformer_core.io.results import load_result
from tests.conftest import write_video
from tests.reference_fixtures import VIDEO_TINY

runner = CliRunner()


def segment_args(weights: dict[str, Path], *extra: str) -> list[str]:
    return [
        "segment",
        *extra,
        "--vocab",
        "person,dog,car",
        "--weights",
        str(weights["model"]),
        "--clip-weights",
        str(weights["clip"]),
        "--device",
        "cpu",
        "--min-size",
        "64",
        "--threshold",
        "0",
        "--top-k",
        "5",
    ]


def read_video(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_segment_writes_every_format_and_export_reproduces_the_overlay(
    tmp_path: Path, weights, monkeypatch: pytest.MonkeyPatch
):
    # H.264 output varies between runs under CPU load (the encoder, not our drawing), so the overlay
    # is compared as rendered: every frame handed to the encoder, exactly.
    rendered: list[np.ndarray] = []
    original_draw = overlay_module.draw_tracks

    def recording_draw(*args, **kwargs):
        frame = original_draw(*args, **kwargs)
        rendered.append(frame.copy())
        return frame

    monkeypatch.setattr(overlay_module, "draw_tracks", recording_draw)
    video = tmp_path / "clip.mp4"
    write_video(video, num_frames=12, height=48, width=64)
    out = tmp_path / "out"
    args = segment_args(weights, str(video), "-o", str(out), "-f", "ytvis", "-f", "coco", "-f", "overlay", "-f", "png")
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output

    saved = load_result(out / "clip.json")
    assert saved.num_frames == 12 and (saved.height, saved.width) == (48, 64)
    assert len(saved.tracks) == 5
    assert [c["name"] for c in saved.categories] == ["person", "dog", "car"]

    entries = json.loads((out / "clip.ytvis.json").read_text())
    assert len(entries) == 5
    for entry in entries:
        assert entry["video_id"] == 1 and entry["category_id"] in (1, 2, 3)
        assert len(entry["segmentations"]) == 12
        for rle in entry["segmentations"]:
            decoded = mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()})
            assert decoded.shape == (48, 64)

    coco = json.loads((out / "clip.coco.json").read_text())
    assert len(coco["images"]) == 12
    assert (out / "clip_masks").is_dir()

    overlay = read_video(out / "clip.overlay.mp4")
    assert overlay.shape == (12, 48, 64, 3)
    from_segment = list(rendered)
    rendered.clear()

    exported = runner.invoke(
        app, ["export", str(out / "clip.json"), "--to", "overlay", "--video", str(video), "-o", str(tmp_path / "again")]
    )
    assert exported.exit_code == 0, exported.output
    again = read_video(tmp_path / "again" / "clip.overlay.mp4")
    assert again.shape == overlay.shape
    assert len(from_segment) == len(rendered) == 12
    for ours, theirs in zip(from_segment, rendered, strict=True):
        np.testing.assert_array_equal(ours, theirs)
    # and the drawing is visible: the rendered frames are not the plain source frames
    source = read_video(video)
    assert any(not np.array_equal(frame, plain) for frame, plain in zip(from_segment, source, strict=True))


def test_batch_with_a_corrupt_input_and_skip_existing(tmp_path: Path, weights):
    write_video(tmp_path / "a.mp4", num_frames=6)
    write_video(tmp_path / "b.mp4", num_frames=7)
    (tmp_path / "broken.mp4").write_bytes(b"this is not a video" * 100)
    out = tmp_path / "out"
    inputs = [str(tmp_path / "a.mp4"), str(tmp_path / "broken.mp4"), str(tmp_path / "b.mp4")]
    first = runner.invoke(app, segment_args(weights, *inputs, "-o", str(out), "--json", "--quiet"))
    assert first.exit_code == 1
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert [Path(r["input"]).name for r in summary["ok"]] == ["a.mp4", "b.mp4"]
    assert [Path(r["input"]).name for r in summary["failed"]] == ["broken.mp4"]
    assert "broken.mp4" in summary["failed"][0]["error"]
    assert (out / "a.json").is_file() and (out / "b.json").is_file() and not (out / "broken.json").exists()

    # The rerun must do no model work: weights that do not exist would fail if they were loaded.
    rerun_args = segment_args(weights, *inputs, "-o", str(out), "--json", "--quiet", "--skip-existing")
    rerun_args[rerun_args.index("--weights") + 1] = str(tmp_path / "missing.pt")
    rerun = runner.invoke(app, rerun_args)
    assert rerun.exit_code == 1
    summary = json.loads(rerun.stdout.strip().splitlines()[-1])
    assert len(summary["skipped"]) == 2 and summary["ok"] == [] and len(summary["failed"]) == 1


def one_error_line(output: str) -> str:
    lines = [line for line in output.strip().splitlines() if line.strip()]
    assert lines and "Traceback" not in output
    return lines[-1]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "does not exist"),
        ("corrupt", "broken.mp4"),
        ("no_frames", "no decodable"),
    ],
)
def test_bad_video_inputs(tmp_path: Path, weights, case: str, expected: str):
    path = tmp_path / ("empty.avi" if case == "no_frames" else "broken.mp4")
    if case == "corrupt":
        path.write_bytes(b"\x00\x01garbage" * 50)
    elif case == "no_frames":
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream("mpeg4", rate=10)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
            container.start_encoding()
    result = runner.invoke(app, segment_args(weights, str(path), "-o", str(tmp_path / "out")))
    assert result.exit_code != 0
    assert expected in result.output
    assert "Traceback" not in result.output
    leftovers = list((tmp_path / "out").glob("*")) if (tmp_path / "out").exists() else []
    assert leftovers == []


def test_empty_vocabulary(tmp_path: Path, weights):
    write_video(tmp_path / "a.mp4", num_frames=3)
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing here\n\n")
    args = segment_args(weights, str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out"))
    args[args.index("--vocab") + 1] = str(empty)
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert "error:" in one_error_line(result.output)
    assert not (tmp_path / "out" / "a.json").exists()


def test_unreadable_and_mismatched_weights(tmp_path: Path, weights):
    write_video(tmp_path / "a.mp4", num_frames=3)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(weights["model"].read_bytes()[:1000])
    args = segment_args(weights, str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out"))
    args[args.index("--weights") + 1] = str(truncated)
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "truncated or not a PyTorch file" in one_error_line(result.output)

    # official tiny Swin weights into the (default) R50 release config
    args[args.index("--weights") + 1] = str(VIDEO_TINY / "model.pth")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "Swin backbone weights but the model is ResNet-50" in result.output
    assert not (tmp_path / "out" / "a.json").exists()


def test_output_folder_not_writable(tmp_path: Path, weights):
    write_video(tmp_path / "a.mp4", num_frames=3)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, segment_args(weights, str(tmp_path / "a.mp4"), "-o", str(blocker)))
    assert result.exit_code == 2 and "is a file" in one_error_line(result.output)


@pytest.mark.parametrize(
    "error",
    [
        torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
        RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),  # a convolution's workspace did not fit
    ],
)
def test_cuda_out_of_memory_says_what_to_lower(
    tmp_path: Path, weights, monkeypatch: pytest.MonkeyPatch, error: RuntimeError
):
    from ovformer_core.model.ovformer import OVFormer

    def boom(*args, **kwargs):
        raise error

    monkeypatch.setattr(OVFormer, "forward", boom)
    write_video(tmp_path / "a.mp4", num_frames=3)
    result = runner.invoke(app, segment_args(weights, str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out")))
    assert result.exit_code == 2
    line = one_error_line(result.output)
    assert "out of memory" in line and "--precision bf16" in line
    assert not (tmp_path / "out" / "a.json").exists()


def test_host_out_of_memory_in_torch_is_one_line(tmp_path: Path, weights, monkeypatch: pytest.MonkeyPatch):
    from ovformer_core.model.ovformer import OVFormer

    def huge(*args, **kwargs):
        return torch.empty(1 << 60, dtype=torch.uint8)  # torch's CPU allocator raises RuntimeError, not MemoryError

    monkeypatch.setattr(OVFormer, "forward", huge)
    write_video(tmp_path / "a.mp4", num_frames=3)
    result = runner.invoke(app, segment_args(weights, str(tmp_path / "a.mp4"), "-o", str(tmp_path / "out")))
    assert result.exit_code == 1
    assert one_error_line(result.output).startswith("error: ran out of memory (the machine's")
    assert not (tmp_path / "out" / "a.json").exists()


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"), "gpu"),
        (RuntimeError("CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"), "gpu"),
        (torch.cuda.OutOfMemoryError("HIP out of memory. Tried to allocate 2.00 GiB"), "gpu"),  # ROCm's wording
        (RuntimeError("size mismatch, m1: [2 x 3], m2: [4 x 5]"), None),
        (MemoryError(), None),  # Python's own: the CLI handles it apart
    ],
)
def test_out_of_memory_is_told_from_other_errors(error: BaseException, kind: str | None):
    assert out_of_memory(error) == kind
    with pytest.raises(RuntimeError) as host:
        torch.empty(1 << 60, dtype=torch.uint8)
    assert out_of_memory(host.value) == "host"


def test_a_dataset_vocabulary_keeps_the_dataset_category_ids(tmp_path: Path, weights):
    """`--vocab GT.json` names results with GT's own ids (not 1..C), directly and through vocab-encode."""
    write_video(tmp_path / "a.mp4", num_frames=3)
    gt = tmp_path / "gt.json"
    categories = [{"id": 5, "name": "dog"}, {"id": 2, "name": "person"}, {"id": 40, "name": "car"}]
    gt.write_text(json.dumps({"videos": [], "annotations": [], "categories": categories}))
    encoded = tmp_path / "gt.vocab"
    made = runner.invoke(app, ["vocab-encode", str(gt), "-o", str(encoded), "--clip-weights", str(weights["clip"])])
    assert made.exit_code == 0, made.output
    for vocab in (gt, encoded):
        args = segment_args(weights, str(tmp_path / "a.mp4"), "-o", str(tmp_path / vocab.suffix[1:]), "-f", "ytvis")
        args[args.index("--vocab") + 1] = str(vocab)
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        tracks = load_result(tmp_path / vocab.suffix[1:] / "a.json").tracks
        assert tracks and {(t.category_name, t.category_id) for t in tracks} <= {("person", 2), ("dog", 5), ("car", 40)}
        ytvis = json.loads((tmp_path / vocab.suffix[1:] / "a.ytvis.json").read_text())
        assert {e["category_id"] for e in ytvis} <= {2, 5, 40}
