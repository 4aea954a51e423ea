"""Frames sent to the page are the frames asked for, whatever the order of the requests."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ovformer_core.errors import VideoError
from ovformer_core.view.frames import FrameDecoder
from tests.conftest import identify, write_frame_folder, write_video

NUM_FRAMES = 70


def shown(decoder: FrameDecoder, index: int) -> int:
    return identify(np.asarray(Image.open(io.BytesIO(decoder.jpeg(index))).convert("RGB")))


@pytest.mark.parametrize("kind", ["video", "frames"])
def test_every_order_of_requests_gets_the_right_frames(tmp_path: Path, kind: str):
    if kind == "video":
        source = tmp_path / "clip.mp4"
        write_video(source, num_frames=NUM_FRAMES, height=48, width=64)
    else:
        source = tmp_path / "frames"
        write_frame_folder(source, num_frames=NUM_FRAMES, height=48, width=64)
    decoder = FrameDecoder(source)
    rng = np.random.default_rng(0)
    orders = [
        list(range(NUM_FRAMES)),  # playing
        list(range(NUM_FRAMES - 1, -1, -1)),  # stepping back, past the frames kept
        [int(i) for i in rng.integers(0, NUM_FRAMES, size=40)],  # jumps
        [0, 60, 10, 11, 9, 59, 69, 1],
    ]
    for order in orders:
        assert [shown(decoder, i) for i in order] == [i % 31 for i in order]
    with pytest.raises(VideoError, match="has no frame 70; point the page at the right video"):
        decoder.jpeg(NUM_FRAMES)
    assert shown(decoder, 5) == 5  # still serving after the error
