"""Display orientation: phone footage tagged with a display matrix comes out as a player shows it."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from ovformer_core.io.orientation import Orientation, orientation_from_matrix
from ovformer_core.io.video import open_source
from tests.io.timed_videos import evenly, write_timed_video

#: The eight right-angle display matrices (unit entries a, b, c, d; FFmpeg layout a b u c d v x y w).
UNIT_MATRICES = [
    (1, 0, 0, 1),
    (0, 1, -1, 0),
    (-1, 0, 0, -1),
    (0, -1, 1, 0),
    (-1, 0, 0, 1),
    (1, 0, 0, -1),
    (0, 1, 1, 0),
    (0, -1, -1, 0),
]


def _lossless() -> str:
    if "libx264rgb" not in av.codecs_available:
        pytest.skip("this PyAV build has no libx264rgb encoder")
    return "libx264rgb"


def _pattern(height: int = 32, width: int = 48) -> np.ndarray:
    """An image no rotation or mirror maps onto itself: a block in one corner, a bar along one edge."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    image[:8, :16] = (255, 0, 0)
    image[-8:, -8:] = (0, 0, 255)
    image[:4, -24:] = (0, 255, 0)
    return image


def _display_by_definition(stored: np.ndarray, a: int, b: int, c: int, d: int) -> np.ndarray:
    """Where FFmpeg's definition puts each pixel (libavutil/display.h: p' = a p + c q, q' = b p + d q,
    ``p`` right and ``q`` down), computed pixel by pixel, independently of ``Orientation.apply``."""
    height, width = stored.shape[:2]
    xs = [a * p + c * q for p in (0, width - 1) for q in (0, height - 1)]
    ys = [b * p + d * q for p in (0, width - 1) for q in (0, height - 1)]
    out_w, out_h = max(xs) - min(xs) + 1, max(ys) - min(ys) + 1
    shown = np.zeros((out_h, out_w, 3), dtype=stored.dtype)
    for q in range(height):
        for p in range(width):
            shown[b * p + d * q - min(ys), a * p + c * q - min(xs)] = stored[q, p]
    return shown


@pytest.mark.parametrize("unit", UNIT_MATRICES)
def test_every_display_matrix_is_applied(tmp_path: Path, unit: tuple[int, int, int, int]) -> None:
    a, b, c, d = unit
    stored = _pattern()
    path = tmp_path / "tagged.mp4"
    matrix = [a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30]
    write_timed_video(path, evenly(2), codec=_lossless(), images=np.stack([stored, stored]), display_matrix=matrix)
    expected = _display_by_definition(stored, a, b, c, d)
    source = open_source(path)
    assert (source.info.width, source.info.height) == (expected.shape[1], expected.shape[0])
    reader = source.iter_frames()
    frames = [f.image for f in reader]
    for frame in frames:
        np.testing.assert_array_equal(frame, expected)
    assert reader.report is not None
    orientation = source.info.orientation
    assert (reader.report.rotation, reader.report.mirrored) == (orientation.degrees, orientation.mirror)


def test_a_portrait_phone_video_comes_out_upright(tmp_path: Path) -> None:
    upright = _pattern(height=48, width=32)  # portrait, as the user held the phone
    # The sensor stores it lying on its side (turned a quarter counter-clockwise) and tags the track
    # "show turned a quarter clockwise", which PyAV writes as -90 (counter-clockwise degrees).
    stored = np.ascontiguousarray(np.rot90(upright, k=1))
    path = tmp_path / "phone.mp4"
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream(_lossless(), rate=10)
        stream.width, stream.height, stream.pix_fmt = stored.shape[1], stored.shape[0], "rgb24"
        stream.options = {"qp": "0"}
        stream.set_display_rotation(-90)
        for packet in stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")) + stream.encode(None):
            container.mux(packet)
    source = open_source(path)
    assert (source.info.width, source.info.height) == (32, 48)
    assert source.info.orientation == Orientation(turns=1)
    windows = list(source.iter_windows(5))
    np.testing.assert_array_equal(windows[0].frames[0], upright)


def test_orientation_from_matrix_edge_cases() -> None:
    assert orientation_from_matrix([65536, 0, 0, 0, 65536, 0, 0, 0, 1 << 30]) == Orientation()
    # A scaled matrix still says which way is up.
    assert orientation_from_matrix([0, 2 << 16, 0, -(2 << 16), 0, 0, 0, 0, 1 << 30]) == Orientation(turns=1)
    # A free rotation (30 degrees) is not a right angle; a wrong length is no matrix.
    assert orientation_from_matrix([56756, -32768, 0, 32768, 56756, 0, 0, 0, 1 << 30]) is None
    assert orientation_from_matrix([0] * 9) is None
    assert orientation_from_matrix([1, 2, 3]) is None
    for turns in range(4):
        for mirror in (False, True):
            orientation = Orientation(turns, mirror)
            assert orientation_from_matrix(_scaled(orientation.matrix())) == orientation
            assert orientation.display_size(48, 32) == ((32, 48) if turns % 2 else (48, 32))


def _scaled(unit: tuple[int, int, int, int]) -> list[int]:
    a, b, c, d = unit
    return [a << 16, b << 16, 0, c << 16, d << 16, 0, 0, 0, 1 << 30]
