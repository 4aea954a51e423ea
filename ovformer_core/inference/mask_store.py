"""Per-(frame, track) masks kept as compressed RLE in a spooled temporary file.

The final top-k over tracks is only known after the last window, but it needs nothing but
scores; so every track slot's mask of every frame is RLE-encoded as soon as it is produced and
parked here (in memory up to ``SPOOL_BYTES``, on disk beyond), keeping memory flat on long videos.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence

import numpy as np

from ovformer_core.io.rle import Rle, empty_rle, encode_rles

#: Bytes kept in memory before the store spills to a temporary file.
SPOOL_BYTES = 32 * 1024 * 1024


class MaskStore:
    """Append-only RLE store indexed by (frame, track slot)."""

    def __init__(self, num_slots: int) -> None:
        self.num_slots = num_slots
        self._file = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)
        self._offsets: list[np.ndarray] = []  # per frame: [num_slots + 1] byte offsets
        self._sizes: list[tuple[int, int]] = []
        self._end = 0

    def __len__(self) -> int:
        return len(self._offsets)

    def append_frame(self, masks: np.ndarray) -> None:
        """Store one frame's masks, bool ``[num_slots, H, W]`` in track-slot order."""
        if masks.shape[0] != self.num_slots:
            raise ValueError(f"expected {self.num_slots} masks, got {masks.shape[0]}")
        self.append_rles(encode_rles(masks), (int(masks.shape[1]), int(masks.shape[2])))

    def append_rles(self, rles: Sequence[Rle], size: tuple[int, int]) -> None:
        """Store one frame's already encoded masks (``num_slots`` RLEs of ``size`` (H, W), slot order)."""
        if len(rles) != self.num_slots:
            raise ValueError(f"expected {self.num_slots} masks, got {len(rles)}")
        blobs = [r["counts"].encode("ascii") for r in rles]
        offsets = np.empty(self.num_slots + 1, dtype=np.int64)
        offsets[0] = self._end
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        offsets[1:] += self._end
        self._file.seek(self._end)
        self._file.write(b"".join(blobs))
        self._end = int(offsets[-1])
        self._offsets.append(offsets)
        self._sizes.append(size)

    def rle(self, frame: int, slot: int) -> dict:
        """The stored RLE of ``slot`` in ``frame``."""
        start, stop = self._offsets[frame][slot], self._offsets[frame][slot + 1]
        self._file.seek(int(start))
        counts = self._file.read(int(stop - start)).decode("ascii")
        return {"size": list(self._sizes[frame]), "counts": counts}

    def empty_rle(self, frame: int) -> dict:
        """RLE of an all-background mask of ``frame``'s size."""
        return empty_rle(*self._sizes[frame])

    def close(self) -> None:
        self._file.close()
