"""Per-frame PNG id masks: one grayscale PNG per processed frame, pixel value = track id.

Folder layout (written atomically: built in a hidden temporary folder next to the target, then
renamed into place)::

    <folder>/000000.png, 000002.png, ...   one per processed frame, named by source frame number
    <folder>/tracks.json                   legend: {"video_name", "frame_indices", "bit_depth",
                                           "tracks": [{track_id, category_id, category_name, score}]}

Pixels are 0 for background, else the ``track_id`` of the object. PNGs are 8-bit when every track id
is at most 255, else 16-bit. Where masks overlap, the track with the higher score wins (ties: the
higher track id). PNGs are encoded and decoded with PyAV's PNG codec (no extra dependency).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import av
import numpy as np

from ovformer_core.errors import OutputError, ResultsError
from ovformer_core.io.atomic import atomic_dir
from ovformer_core.io.json_input import read_json
from ovformer_core.io.results import VideoResult

#: Name of the legend file; its presence also marks a folder as ours (safe to replace).
LEGEND_NAME = "tracks.json"


def id_mask(result: VideoResult, position: int) -> np.ndarray:
    """The id mask of one processed frame.

    Args:
        result: the video's result.
        position: 0-based position among processed frames.

    Returns:
        uint16 ``[H, W]``: 0 = background, else the track id of the highest-scoring track there.
    """
    ids = np.zeros(result.frame_size, dtype=np.uint16)
    # Paint low scores first so higher scores overwrite them where masks overlap.
    for track in sorted(result.tracks, key=lambda t: (t.score, t.track_id)):
        if track.segmentations[position] is None:
            continue
        ids[track.mask(position)] = track.track_id
    return ids


def encode_png(image: np.ndarray) -> bytes:
    """Encode a uint8 or uint16 ``[H, W]`` grayscale image as PNG bytes."""
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_png expects uint8/uint16 [H, W], got {image.dtype} {image.shape}")
    pixel_format = "gray" if image.dtype == np.uint8 else "gray16be"
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format=pixel_format)
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height = image.shape[1], image.shape[0]
    codec.pix_fmt = pixel_format
    packets = codec.encode(frame) + codec.encode(None)
    return b"".join(bytes(packet) for packet in packets)


def read_png(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode a grayscale PNG to uint8 or uint16 ``[H, W]`` (by its bit depth)."""
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        pixel_format = "gray16le" if frame.format.name.startswith("gray16") else "gray"
        return frame.to_ndarray(format=pixel_format)


def read_png_masks(folder: str | os.PathLike[str]) -> tuple[list[int], np.ndarray]:
    """Read a folder written by ``write_png_masks``.

    Returns:
        ``(frame_indices, ids)`` with ``ids`` uint16 ``[T, H, W]``.
    """
    folder = Path(folder)
    legend = read_json(folder / LEGEND_NAME, "PNG mask legend", ResultsError)
    try:
        frame_indices = [int(i) for i in legend["frame_indices"]]
    except (ValueError, KeyError, TypeError) as err:
        raise ResultsError(f"{folder} is not a PNG mask folder written by ovformer ({err})") from err
    masks = [read_png(folder / f"{index:06d}.png").astype(np.uint16) for index in frame_indices]
    return frame_indices, np.stack(masks)


def is_png_mask_folder(folder: Path) -> bool:
    """True if ``folder`` (not a link) holds only a legend and PNGs, i.e. a previous ``write_png_masks`` output."""
    if folder.is_symlink() or not folder.is_dir() or not (folder / LEGEND_NAME).is_file():
        return False
    return all(p.name == LEGEND_NAME or (p.is_file() and p.suffix == ".png") for p in folder.iterdir())


def write_png_masks(folder: str | os.PathLike[str], result: VideoResult) -> Path:
    """Write one id-mask PNG per processed frame plus ``tracks.json`` into ``folder``; atomic.

    An existing folder is replaced only if it is a previous output of this function; any other
    existing path raises ``OutputError`` rather than being deleted.

    Returns:
        The folder's path.
    """
    target = Path(folder)
    if os.path.lexists(target) and not is_png_mask_folder(target):
        raise OutputError(f"{target} already exists and is not an ovformer PNG mask folder; choose a new folder name")
    max_id = max((track.track_id for track in result.tracks), default=0)
    if max_id > np.iinfo(np.uint16).max:
        raise ResultsError(f"track id {max_id} does not fit a 16-bit PNG; renumber the tracks from 1")
    bit_depth = 8 if max_id <= np.iinfo(np.uint8).max else 16
    with atomic_dir(target, replaceable=target.exists()) as staging:
        for position, frame_index in enumerate(result.frame_indices):
            ids = id_mask(result, position)
            image = ids.astype(np.uint8) if bit_depth == 8 else ids
            (staging / f"{frame_index:06d}.png").write_bytes(encode_png(image))
        legend = {
            "video_name": result.video_name,
            "frame_indices": [int(i) for i in result.frame_indices],
            "bit_depth": bit_depth,
            "tracks": [
                {
                    "track_id": track.track_id,
                    "category_id": track.category_id,
                    "category_name": track.category_name,
                    "score": track.score,
                }
                for track in sorted(result.tracks, key=lambda t: t.track_id)
            ],
        }
        (staging / LEGEND_NAME).write_text(json.dumps(legend, indent=1) + "\n", encoding="utf-8")
    return target
