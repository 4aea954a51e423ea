"""The streaming loop: windows of frames -> network -> query association -> per-frame RLE -> tracks.

Two official inference rules share this loop:

- ``semi-online`` (VideoOVFormer, the LV-VIS checkpoints): clips of ``window`` frames run as
  one video clip each; consecutive clips are associated by Hungarian matching on the query
  embeddings (the reference is the previous clip's permuted embeddings). ``offline`` is the same
  network on the whole video as one clip (the caller gives all frames in one window).
- ``per-frame`` (OVFormerVideo, the zero-shot path of the LVIS checkpoints): every frame is an
  independent image; frames are associated against a momentum memory of embeddings; at the end
  frames whose own score is below ``frame_score_ratio`` x the track score are blanked and the
  track score is multiplied by a mask score.

Nothing grows with the video but the RLE store (spooled to disk) and a few numbers per frame.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from ovformer_core.config import ModelConfig
from ovformer_core.errors import OVFormerError
from ovformer_core.inference.mask_writer import MAX_PENDING_CLIPS, MaskWriter
from ovformer_core.inference.postprocess import pair_scores, top_k_pairs
from ovformer_core.inference.precision import Precision, precision_context, resolve_precision
from ovformer_core.inference.tracker import QueryTracks
from ovformer_core.model.ovformer import OVFormer, WindowOutput
from ovformer_core.model.preprocess import PreprocessInfo, normalize_and_pad, resize_frames, shortest_edge_size

#: Denominator guard of the official mask score.
MASK_SCORE_EPS = 1e-6
#: Frames of per-frame scores read back at once at the end of the per-frame rule (bounds memory).
STATS_FRAMES_PER_READ = 32
#: Logit written into blanked frames by the official per-frame rule (any negative value blanks).
BLANK_LOGIT = -1.0


Mode = Literal["semi-online", "offline", "per-frame"]


@dataclass(frozen=True)
class SegmentOptions:
    """How a video is run through the network.

    Attributes:
        mode: "semi-online" (video checkpoints), "offline" (the whole video as one clip) or
            "per-frame" (image checkpoints, zero-shot).
        window: frames per clip in semi-online mode (official: 5); frames per forward pass in per-frame
            mode (changes results only in the last float bits: a matmul's rounding depends on its row
            count); frames decoded at a time in offline mode (the clip is the whole video).
        top_k: candidates kept (official: 50 for LV-VIS, 10 YouTube-VIS, 20 OVIS).
        score_threshold: candidates scoring below are not reported.
        frame_score_ratio: per-frame blanking ratio of the per-frame mode (official: 0.1).
        min_size: shortest side fed to the network; None keeps the frames' own size.
        max_size: bound on the long side after resizing.
        precision: "fp32", "bf16", "fp16" (autocast; in fp16 the pixel decoder runs in fp32) or "auto", the
            fastest one that passes the accuracy guard on the model's device (see ``inference.precision``).
    """

    mode: Mode = "semi-online"
    window: int = 5
    top_k: int = 50
    score_threshold: float = 0.0
    frame_score_ratio: float = 0.1
    min_size: int | None = 360
    max_size: int = 1333
    precision: Precision = "auto"

    def __post_init__(self) -> None:
        if self.window < 1:
            raise OVFormerError(f"`window` must be at least 1 frame, not {self.window}")
        if self.top_k < 1:
            raise OVFormerError(f"`top_k` must be at least 1, not {self.top_k}")

    def updated(
        self,
        *,
        mode: Mode | None = None,
        window: int | None = None,
        top_k: int | None = None,
        score_threshold: float | None = None,
        min_size: int | None = None,
        precision: Precision | None = None,
    ) -> SegmentOptions:
        """A copy with the given fields changed; None keeps a field (``dataclasses.replace`` sets one to None)."""
        return replace(
            self,
            mode=self.mode if mode is None else mode,
            window=self.window if window is None else window,
            top_k=self.top_k if top_k is None else top_k,
            score_threshold=self.score_threshold if score_threshold is None else score_threshold,
            min_size=self.min_size if min_size is None else min_size,
            precision=self.precision if precision is None else precision,
        )


@dataclass
class TrackResult:
    """One reported object.

    Attributes:
        slot: the query slot of the track.
        label: class index into the vocabulary.
        score: final score.
        rles: one compressed RLE per processed frame, at the original frame size.
    """

    slot: int
    label: int
    score: float
    rles: list[dict]


class _FrameStats:
    """Per-frame numbers the per-frame rule needs at the end, spooled like the masks."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=32 * 1024 * 1024)
        self._frames = 0
        self._row: tuple[int, int] | None = None
        self.positive_sums: list[np.ndarray] = []
        self.positive_counts: list[np.ndarray] = []

    def append(self, class_logits: Tensor, object_logits: Tensor, mask_logits: Tensor) -> None:
        scores = pair_scores(class_logits, object_logits).float().cpu().numpy()  # [Q, C]
        self._row = scores.shape
        self._file.write(np.ascontiguousarray(scores, dtype=np.float32).tobytes())
        positive = mask_logits > 0  # [Q, h, w]
        self.positive_sums.append((mask_logits.sigmoid() * positive).flatten(1).sum(1).double().cpu().numpy())
        self.positive_counts.append(positive.flatten(1).sum(1).double().cpu().numpy())
        self._frames += 1

    def pair_scores_over_frames(self, slots: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Per-frame scores of the selected (slot, label) pairs: ``[K, F]``, read a few frames at a time."""
        assert self._row is not None
        frame_bytes = int(np.prod(self._row)) * 4
        out = np.empty((len(slots), self._frames), dtype=np.float32)
        self._file.seek(0)
        for start in range(0, self._frames, STATS_FRAMES_PER_READ):
            count = min(STATS_FRAMES_PER_READ, self._frames - start)
            chunk = np.frombuffer(self._file.read(count * frame_bytes), dtype=np.float32)
            out[:, start : start + count] = chunk.reshape(count, *self._row)[:, slots, labels].T
        return out

    def close(self) -> None:
        self._file.close()


class StreamingSegmenter:
    """Feed windows in order with ``add_window``; ``finish`` returns the tracks.

    Args:
        model: an ``OVFormer`` in eval mode on its device.
        cfg: its config (pixel mean/std, size divisibility).
        text_classifier: ``[512, C + 1]``.
        options: inference options.
        background_masks: upsample and RLE-encode masks on a worker thread, overlapped with the network;
            None: on a GPU only (on a CPU the network already keeps every core busy: measured no faster,
            ``benchmarks/bench_pipeline.py``). The results are the same either way.
    """

    def __init__(
        self,
        model: OVFormer,
        cfg: ModelConfig,
        text_classifier: Tensor,
        options: SegmentOptions,
        background_masks: bool | None = None,
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.options = options
        self.device = model.device
        self.text_classifier = text_classifier.to(self.device, torch.float32)
        self.tracks = QueryTracks(reference_update="momentum" if options.mode == "per-frame" else "last")
        # Per-frame mode submits every frame of a forward pass on its own: let a whole pass wait.
        pending = MAX_PENDING_CLIPS * (options.window if options.mode == "per-frame" else 1)
        background = self.device.type == "cuda" if background_masks is None else background_masks
        self.masks = MaskWriter(self.device, max_pending=pending, background=background)
        self.stats = _FrameStats() if options.mode == "per-frame" else None
        self.info: PreprocessInfo | None = None

    # -- per window -------------------------------------------------------------------------
    def add_window(self, frames: np.ndarray, clip_embeds: Tensor | np.ndarray) -> None:
        """Process consecutive frames.

        Args:
            frames: uint8 ``[T, H, W, 3]`` RGB at the original size. In semi-online mode a window is
                one clip: pass ``window`` frames (the last window may be shorter); in offline mode, the
                whole video.
            clip_embeds: ``[T, 512]`` CLIP image embeddings of these frames.
        """
        clip_embeds = torch.as_tensor(clip_embeds, dtype=torch.float32)
        if clip_embeds.shape[0] != frames.shape[0]:
            raise ValueError(f"{frames.shape[0]} frames but {clip_embeds.shape[0]} CLIP embeddings")
        pixels, info = self._preprocess(frames)
        clip_embeds = clip_embeds.to(self.device)
        if self.options.mode != "per-frame":
            out = self._forward(pixels[None], clip_embeds[None])
            self._add_clip(out.query_embeds[0], out.class_logits[0], out.object_logits[0], out.mask_logits[0], info)
        else:
            for start in range(0, pixels.shape[0], self.options.window):
                stop = start + self.options.window
                out = self._forward(pixels[start:stop, None], clip_embeds[start:stop, None])
                for i in range(out.class_logits.shape[0]):
                    self._add_clip(
                        out.query_embeds[i], out.class_logits[i], out.object_logits[i], out.mask_logits[i], info
                    )

    def _preprocess(self, frames: np.ndarray) -> tuple[Tensor, PreprocessInfo]:
        height, width = frames.shape[1:3]
        size = (height, width)
        if self.options.min_size is not None:
            size = shortest_edge_size(height, width, self.options.min_size, self.options.max_size)
        resized = resize_frames(frames, size)
        pixels = normalize_and_pad(
            torch.from_numpy(np.ascontiguousarray(resized)).to(self.device),
            self.cfg.pixel_mean,
            self.cfg.pixel_std,
            self.cfg.inference.size_divisibility,
        )
        padded_height, padded_width = pixels.shape[-2:]
        info = PreprocessInfo(
            original_size=(height, width), resized_size=size, padded_size=(padded_height, padded_width)
        )
        if self.info is not None and self.info.original_size != info.original_size:
            raise ValueError(f"frame size changed from {self.info.original_size} to {info.original_size}")
        self.info = info
        return pixels, info

    @torch.inference_mode()
    def _forward(self, pixels: Tensor, clip_embeds: Tensor) -> WindowOutput:
        with precision_context(resolve_precision(self.options.precision, self.device), self.device):
            return self.model(pixels, clip_embeds, self.text_classifier)

    @torch.inference_mode()
    def _add_clip(
        self,
        query_embeds: Tensor,
        class_logits: Tensor,
        object_logits: Tensor,
        mask_logits: Tensor,
        info: PreprocessInfo,
    ) -> None:
        """Associate one clip (``mask_logits [Q, t, h, w]``) and park its masks."""
        query_embeds, class_logits, object_logits = query_embeds.float(), class_logits.float(), object_logits.float()
        perm = self.tracks.update(query_embeds, class_logits, object_logits)
        index = torch.from_numpy(perm).to(mask_logits.device)
        mask_logits = mask_logits.float()[index]
        if self.stats is not None:
            self.stats.append(class_logits[index], object_logits[index], mask_logits[:, 0])
        self.masks.submit(mask_logits, info)

    # -- end of video -------------------------------------------------------------------------
    def finish(self) -> list[TrackResult]:
        """Choose the top-k (track, class) pairs and assemble their per-frame RLEs."""
        store = self.masks.finish()
        if store is None:
            return []
        class_logits, object_logits = self.tracks.mean_logits()
        scores, labels, slots = top_k_pairs(pair_scores(class_logits, object_logits), self.options.top_k)
        scores_np = scores.double().cpu().numpy()
        labels_np, slots_np = labels.cpu().numpy(), slots.cpu().numpy()
        num_frames = len(store)
        keep_frame = np.ones((len(slots_np), num_frames), dtype=bool)
        if self.stats is not None:
            per_frame = self.stats.pair_scores_over_frames(slots_np, labels_np)  # [K, F]
            keep_frame = ~(per_frame < (scores.float().cpu().numpy()[:, None] * self.options.frame_score_ratio))
            sums = np.stack(self.stats.positive_sums, 1)[slots_np]  # [K, F]
            counts = np.stack(self.stats.positive_counts, 1)[slots_np]
            mask_scores = (sums * keep_frame).sum(1) / ((counts * keep_frame).sum(1) + MASK_SCORE_EPS)
            scores_np = scores_np * mask_scores
        results = []
        for k in range(len(slots_np)):
            if scores_np[k] < self.options.score_threshold:
                continue
            slot = int(slots_np[k])
            rles = [store.rle(f, slot) if keep_frame[k, f] else store.empty_rle(f) for f in range(num_frames)]
            results.append(TrackResult(slot=slot, label=int(labels_np[k]), score=float(scores_np[k]), rles=rles))
        return results

    def close(self) -> None:
        self.masks.close()
        if self.stats is not None:
            self.stats.close()
