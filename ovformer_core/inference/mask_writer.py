"""Clip masks -> RLEs in the ``MaskStore`` on a worker thread, so the network does not wait for them.

Upsampling every query's mask to the original frame size and RLE-encoding it costs a sizeable part of a
window (most of it on a GPU, where the network is fast). The worker takes clips in order from a bounded
queue: memory stays flat, and the store still receives frames in video order.

On a GPU the upsampling and the search for run boundaries run in the caller's thread (all kernels stay on
one thread and stream); only the boundaries cross to the host, where the worker writes the RLE strings.
On a CPU the worker does everything, with pycocotools' encoder (faster there than the boundary search).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ovformer_core.inference.mask_store import MaskStore
from ovformer_core.inference.postprocess import mask_columns, run_starts
from ovformer_core.io.rle import empty_rle, encode_columns, rles_from_run_starts
from ovformer_core.model.preprocess import PreprocessInfo

#: Clips that may wait for the worker before ``submit`` blocks (bounds host memory).
MAX_PENDING_CLIPS = 2


@dataclass
class _Clip:
    """One clip's work: low-resolution logits (CPU), or run boundaries found on a GPU."""

    info: PreprocessInfo
    num_slots: int
    mask_logits: Tensor | None = None
    present: np.ndarray | None = None
    runs: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None


class MaskWriter:
    """Upsample, threshold and RLE-encode each clip's masks in order, into a ``MaskStore``.

    Args:
        device: where the mask logits live; on CUDA the upsampling stays there.
        max_pending: clips queued for the worker before ``submit`` blocks.
        background: False encodes in the caller's thread (the same results, one thread).
        runs_on_device: upsample and find run boundaries in the caller's thread, on ``device``, and send only
            the boundaries to the worker; None: on CUDA devices (the same results either way).
    """

    def __init__(
        self,
        device: torch.device,
        max_pending: int = MAX_PENDING_CLIPS,
        background: bool = True,
        runs_on_device: bool | None = None,
    ) -> None:
        self.device = device
        self.runs_on_device = device.type == "cuda" if runs_on_device is None else runs_on_device
        self.store: MaskStore | None = None
        #: Seconds the caller spent blocked on the worker (a full queue, or draining at ``finish``).
        self.wait_seconds = 0.0
        #: Seconds the worker spent on masks.
        self.work_seconds = 0.0
        self._error: BaseException | None = None
        self._queue: queue.Queue[_Clip | None] | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=max_pending)
            self._thread = threading.Thread(target=self._run, name="ovformer-masks", daemon=True)
            self._thread.start()

    def submit(self, mask_logits: Tensor, info: PreprocessInfo) -> None:
        """Queue one clip's permuted mask logits ``[Q, t, h, w]`` (slot order); frames are stored in call order."""
        self._raise_worker_error()
        clip = _Clip(info=info, num_slots=int(mask_logits.shape[0]))
        if self.runs_on_device:
            columns, present = mask_columns(mask_logits, info)
            mask_index, positions, first = run_starts(columns)
            clip.runs = (mask_index.cpu().numpy(), positions.cpu().numpy(), first.cpu().numpy())
            clip.present = present.cpu().numpy()
        else:
            clip.mask_logits = mask_logits
        if self._queue is None:
            self._write(clip)
            return
        started = time.perf_counter()
        self._put(clip)
        self.wait_seconds += time.perf_counter() - started

    def finish(self) -> MaskStore | None:
        """Wait until every submitted clip is stored; the store (None if nothing was submitted)."""
        if self._thread is not None and self._queue is not None:
            started = time.perf_counter()
            self._put(None)
            self._thread.join()
            self._thread = None
            self.wait_seconds += time.perf_counter() - started
        self._raise_worker_error()
        return self.store

    def close(self) -> None:
        """Stop the worker (dropping queued clips) and free the store."""
        if self._thread is not None and self._queue is not None:
            self._error = self._error or _Closed()
            while True:  # make room so the end marker fits even if the worker is busy
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self.store is not None:
            self.store.close()

    # -- worker ---------------------------------------------------------------------------------
    def _put(self, clip: _Clip | None) -> None:
        assert self._queue is not None and self._thread is not None
        while True:
            try:
                self._queue.put(clip, timeout=0.1)
                return
            except queue.Full:
                if not self._thread.is_alive():
                    self._raise_worker_error()
                    raise RuntimeError("the mask worker stopped") from None

    def _run(self) -> None:
        assert self._queue is not None
        while True:
            clip = self._queue.get()
            if clip is None:
                return
            if self._error is not None:
                continue  # failed or closed: drain until the end marker
            try:
                with torch.inference_mode():
                    self._write(clip)
            except BaseException as err:  # noqa: B036 - every failure must reach the caller
                self._error = err

    def _write(self, clip: _Clip) -> None:
        started = time.perf_counter()
        height, width = clip.info.original_size
        if clip.runs is not None:
            encoded_list = rles_from_run_starts(*clip.runs, height, width)
        else:
            assert clip.mask_logits is not None
            columns, present = mask_columns(clip.mask_logits, clip.info)
            encoded_list, clip.present = encode_columns(columns.numpy(), height), present.numpy()
        assert clip.present is not None
        if self.store is None:
            self.store = MaskStore(clip.num_slots)
        empty = empty_rle(height, width)
        encoded = iter(encoded_list)
        for frame in clip.present:
            self.store.append_rles([next(encoded) if here else empty for here in frame], (height, width))
        self.work_seconds += time.perf_counter() - started

    def _raise_worker_error(self) -> None:
        if self._error is not None and not isinstance(self._error, _Closed):
            raise self._error


class _Closed(Exception):
    """Marks a writer closed by its owner (not an error to report)."""
