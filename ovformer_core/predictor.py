"""The public predictor: weights + CLIP + options -> ``segment(video, vocabulary) -> VideoResult``.

``load_model`` resolves weights (explicit path, cache, or download) and builds everything;
``Predictor.segment`` streams a video window by window; ``Predictor.iter_segment`` is the same as a
generator that reports every window, for progress bars and long videos.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ovformer_core.checkpoints import MODEL_RELEASES, check_fits, read_checkpoint
from ovformer_core.config import ModelConfig
from ovformer_core.devices import choose_device
from ovformer_core.errors import CheckpointError, OVFormerError, out_of_memory
from ovformer_core.inference.precision import Precision, ieee_float32, resolve_precision
from ovformer_core.inference.segment import SegmentOptions, StreamingSegmenter, TrackResult
from ovformer_core.io.results import Track, VideoResult
from ovformer_core.io.video import FrameWindow, ReadOptions, SourceSpec, VideoSource, open_source
from ovformer_core.model.build import build_model
from ovformer_core.model.clip import OPENAI_VIT_B_32, ClipFrameEncoder, ClipTextEncoderFactory, load_clip_encoders
from ovformer_core.model.ovformer import OVFormer
from ovformer_core.vocab import Vocabulary, check_vocabulary_clip, load_vocabulary
from ovformer_core.weights import WeightFile, fingerprint, ovformer_home, resolve_all

VocabularySpec = Vocabulary | str | os.PathLike[str] | Sequence[str]


#: Frame rate recorded for frames given in memory without one.
DEFAULT_FRAMES_FPS = 30.0
#: Frames per forward pass of the per-frame rule (only batching: results change in the last float bits).
PER_FRAME_WINDOW = 10


@dataclass
class SegmentProgress:
    """What ``iter_segment`` yields: one per window of frames processed; the last one carries the result.

    Attributes:
        frames_done: frames processed so far.
        frames_total: frames expected in the selection (0 if unknown); an estimate unless
            ``frames_total_exact`` (and even then the data may turn out truncated). The last item
            has the real count.
        seconds: wall-clock time of this window (of the final step, for the last item).
        frames_total_exact: ``frames_total`` is a count, not an estimate.
        result: the ``VideoResult``, on the last item only (None before).
    """

    frames_done: int
    frames_total: int
    seconds: float
    frames_total_exact: bool = False
    result: VideoResult | None = None


def segment_options_for(cfg: ModelConfig) -> SegmentOptions:
    """The official inference rule of a config: semi-online for video models, per-frame otherwise.

    Change it with ``SegmentOptions.updated`` (or ``dataclasses.replace``).
    """
    video = cfg.decoder.temporal_position
    return SegmentOptions(
        mode="semi-online" if video else "per-frame",
        window=cfg.inference.clip_length if video else PER_FRAME_WINDOW,
        top_k=cfg.inference.top_k,
        min_size=cfg.inference.min_size_test,
        max_size=cfg.inference.max_size_test,
    )


@dataclass
class _Run:
    """What one pass over a video's windows produced."""

    tracks: list[TrackResult]
    indices: list[int]
    times: list[float]
    final_seconds: float

    @property
    def num_frames(self) -> int:
        return len(self.indices)


class Predictor:
    """A loaded OVFormer with its CLIP encoders, ready to segment videos with any vocabulary.

    Args:
        model: the network (eval mode, on its device).
        cfg: its config.
        frame_encoder: CLIP image tower for the frames.
        text_encoder_factory: builds the CLIP text tower when a vocabulary must be encoded.
        model_id: written into results.
        options: default inference options.
        cache_dir: where encoded vocabularies are cached (None: no cache).
        weights_id: content identity of the model and CLIP weight files (``weights.fingerprint``);
            part of ``run_key``.
    """

    def __init__(
        self,
        model: OVFormer,
        cfg: ModelConfig,
        frame_encoder: ClipFrameEncoder,
        text_encoder_factory: ClipTextEncoderFactory | None,
        model_id: str = "",
        options: SegmentOptions | None = None,
        cache_dir: Path | None = None,
        weights_id: str = "",
    ) -> None:
        self.model = model
        self.cfg = cfg
        self.frame_encoder = frame_encoder
        self.text_encoder_factory = text_encoder_factory
        self.model_id = model_id
        self.options = options or segment_options_for(cfg)
        self.cache_dir = cache_dir
        self.weights_id = weights_id

    @property
    def device(self) -> torch.device:
        return self.model.device

    def run_key(self, options: SegmentOptions) -> str:
        """Names what computes results: the model, its weights' content, the kind of device it runs on and
        the precision ``options`` resolve to there ("auto" differs between CPUs and between GPUs).

        Saved results are reused only by a run with the same key (``inference.dataset``).
        """
        precision = resolve_precision(options.precision, self.device)
        return f"{self.model_id}#{self.weights_id}@{self.device.type}:{precision}"

    def vocabulary(self, spec: VocabularySpec) -> Vocabulary:
        """Load or text-encode a vocabulary (cached on disk per CLIP weights, templates and names).

        A saved vocabulary must have been encoded by this predictor's CLIP weights (same content
        fingerprint; the file may have been renamed): ``VocabularyError`` otherwise.
        """
        if isinstance(spec, Vocabulary):
            vocabulary = spec
        else:
            vocabulary = load_vocabulary(spec, self.text_encoder_factory, cache_dir=self.cache_dir)
        if self.text_encoder_factory is not None:
            source = str(spec) if isinstance(spec, (str, os.PathLike)) else "the vocabulary"
            factory = self.text_encoder_factory
            check_vocabulary_clip(vocabulary, factory.identity, source, str(factory.weights))
        if vocabulary.embed_dim != self.cfg.classifier.clip_dim:
            raise OVFormerError(
                f"vocabulary embeddings have {vocabulary.embed_dim} dimensions but the model expects "
                f"{self.cfg.classifier.clip_dim}; encode it with the CLIP ViT-B/32 text tower"
            )
        return vocabulary

    def iter_segment(
        self,
        source: str | os.PathLike[str] | SourceSpec | VideoSource,
        vocabulary: VocabularySpec,
        read_options: ReadOptions | None = None,
        options: SegmentOptions | None = None,
        prefetch: int = 2,
        video_id: int | None = None,
        category_ids: Sequence[int] | None = None,
    ) -> Iterator[SegmentProgress]:
        """Segment a video window by window; yields a ``SegmentProgress`` per window, the last with the result.

        In offline mode the windows are decoded and CLIP-encoded as they come and the network runs once,
        on the whole video, after the last one.

        A truncated or damaged video is segmented as far as it decodes; the result's ``decode``
        report says what was missed (``result.decode.complete`` is False) instead of an error.

        Args:
            source: a path (video file, frame folder, image), a ``SourceSpec`` or an opened source.
            vocabulary: a ``Vocabulary``, a ``.vocab``/``.txt`` path, a list of names or ``"a,b,c"``.
            read_options: frame selection (stride, max frames, start/end time).
            options: inference options; defaults to the model's official rule.
            prefetch: windows decoded ahead on a background thread.
            video_id: id written to results (default: the ``SourceSpec``'s, else 1).
            category_ids: id written for each vocabulary class (default 1..C; a dataset's own ids
                when its categories are the vocabulary).
        """
        options = options or self.options
        vocab = self.vocabulary(vocabulary)
        video = source if isinstance(source, VideoSource) else open_source(source, read_options)
        windows = video.iter_windows(options.window, prefetch=prefetch)
        try:
            run = yield from self._stream(
                windows,
                lambda chunk, start: self.frame_encoder(chunk),
                vocab,
                options,
                video.estimated_output_frames,
                video.output_frames_exact,
            )
        finally:
            windows.close()
        if video_id is None:
            video_id = source.video_id if isinstance(source, SourceSpec) else 1
        info = video.info
        size = (info.height, info.width)
        result = self._result(run, vocab, options, category_ids, video_id, info.name, str(info.path), info.fps, size)
        result = replace(result, decode=windows.report)
        yield SegmentProgress(run.num_frames, run.num_frames, run.final_seconds, True, result)

    def iter_segment_frames(
        self,
        frames: np.ndarray,
        vocabulary: VocabularySpec,
        clip_embeds: np.ndarray | torch.Tensor | None = None,
        options: SegmentOptions | None = None,
        fps: float = DEFAULT_FRAMES_FPS,
        name: str = "frames",
        video_id: int = 1,
        category_ids: Sequence[int] | None = None,
    ) -> Iterator[SegmentProgress]:
        """``iter_segment`` for frames already in memory, optionally with their CLIP image embeddings.

        Args:
            frames: uint8 ``[T, H, W, 3]`` RGB, in order.
            vocabulary: as for ``iter_segment``.
            clip_embeds: ``[T, D]`` CLIP image embeddings of the frames (e.g. precomputed with the same
                CLIP weights); None encodes the frames.
            options: inference options; defaults to the model's official rule.
            fps: frame rate recorded in the result (frame ``i`` is at ``i / fps`` seconds).
            name: the result's video name.
            video_id, category_ids: as for ``iter_segment``.
        """
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
            raise OVFormerError(
                f"`frames` must be uint8 [T, H, W, 3] RGB with T >= 1, not {frames.dtype} {frames.shape}"
            )
        embeds = None if clip_embeds is None else torch.as_tensor(clip_embeds, dtype=torch.float32)
        if embeds is not None and (embeds.ndim != 2 or embeds.shape[0] != len(frames)):
            raise OVFormerError(
                f"`clip_embeds` must be [{len(frames)}, D], one embedding per frame, not {list(embeds.shape)}"
            )
        options = options or self.options
        vocab = self.vocabulary(vocabulary)

        def windows() -> Iterator[FrameWindow]:
            for start in range(0, len(frames), options.window):
                chunk = frames[start : start + options.window]
                indices = np.arange(start, start + len(chunk), dtype=np.int64)
                yield FrameWindow(start, chunk, indices, indices / float(fps))

        def encode(chunk: np.ndarray, start: int) -> torch.Tensor:
            return self.frame_encoder(chunk) if embeds is None else embeds[start : start + len(chunk)]

        run = yield from self._stream(windows(), encode, vocab, options, len(frames), True)
        size = (int(frames.shape[1]), int(frames.shape[2]))
        result = self._result(run, vocab, options, category_ids, video_id, name, "", fps, size)
        yield SegmentProgress(run.num_frames, run.num_frames, run.final_seconds, True, result)

    def _stream(
        self,
        windows: Iterable[FrameWindow],
        encode: Callable[[np.ndarray, int], torch.Tensor],
        vocab: Vocabulary,
        options: SegmentOptions,
        total: int,
        total_exact: bool,
    ) -> Generator[SegmentProgress, None, _Run]:
        """Windows -> CLIP embeddings -> network -> tracks; yields progress, returns the run."""
        segmenter = StreamingSegmenter(self.model, self.cfg, vocab.text_classifier(), options)
        indices: list[int] = []
        times: list[float] = []
        whole_video: list[tuple[np.ndarray, torch.Tensor]] = []  # offline: every window, run at the end
        exact = resolve_precision(options.precision, self.device) == "fp32"
        try:
            for chunk in windows:
                started = time.perf_counter()
                with ieee_float32(self.device) if exact else contextlib.nullcontext():  # CLIP as the network
                    embeds = encode(chunk.frames, chunk.start)
                if options.mode == "offline":
                    whole_video.append((chunk.frames, embeds))
                else:
                    segmenter.add_window(chunk.frames, embeds)
                indices.extend(int(i) for i in chunk.indices)
                times.extend(float(t) for t in chunk.times)
                yield SegmentProgress(len(indices), total, time.perf_counter() - started, total_exact)
            started = time.perf_counter()
            if whole_video:
                frames, embeds_list = zip(*whole_video, strict=True)
                whole_video.clear()
                segmenter.add_window(np.concatenate(frames), torch.cat(embeds_list))
            tracks = segmenter.finish()
        except RuntimeError as err:
            if out_of_memory(err) != "gpu":
                raise
            advice = "" if options.mode == "offline" else "lower `window`, "
            raise OVFormerError(
                f"CUDA out of memory; {advice}use `precision`='bf16', a smaller `min_size`, or `device`='cpu'"
                + ("; or `mode`='semi-online' (offline holds the whole video)" if options.mode == "offline" else "")
            ) from None
        finally:
            segmenter.close()
        return _Run(tracks, indices, times, time.perf_counter() - started)

    def _result(
        self,
        run: _Run,
        vocab: Vocabulary,
        options: SegmentOptions,
        category_ids: Sequence[int] | None,
        video_id: int,
        name: str,
        path: str,
        fps: float,
        size: tuple[int, int],
    ) -> VideoResult:
        """The ``VideoResult`` of a run (``size`` is (H, W)): tracks best first, ids 1..N."""
        if category_ids is None:
            category_ids = vocab.category_ids  # a dataset JSON's own ids
        ids = list(category_ids) if category_ids is not None else list(range(1, vocab.num_classes + 1))
        if len(ids) != vocab.num_classes:
            raise OVFormerError(f"{len(ids)} category ids for a vocabulary of {vocab.num_classes} classes")
        ordered = sorted(run.tracks, key=lambda t: -t.score)
        return VideoResult(
            video_name=name,
            video_path=path,
            video_id=video_id,
            width=size[1],
            height=size[0],
            num_frames=run.num_frames,
            fps=float(fps),
            frame_indices=run.indices,
            tracks=[
                Track(
                    track_id=i + 1,
                    label=t.label,
                    category_name=vocab.names[t.label],
                    category_id=ids[t.label],
                    score=t.score,
                    segmentations=list(t.rles),
                    query_slot=t.slot,
                )
                for i, t in enumerate(ordered)
            ],
            categories=[{"id": i, "name": name} for i, name in zip(ids, vocab.names, strict=True)],
            model_id=self.model_id,
            metadata={"mode": options.mode, "top_k": options.top_k, "score_threshold": options.score_threshold},
            frame_times=run.times,
        )

    def segment(
        self,
        source: str | os.PathLike[str] | SourceSpec | VideoSource,
        vocabulary: VocabularySpec,
        read_options: ReadOptions | None = None,
        options: SegmentOptions | None = None,
        video_id: int | None = None,
        category_ids: Sequence[int] | None = None,
    ) -> VideoResult:
        """Segment, track and name every object of the vocabulary's classes in a video."""
        items = self.iter_segment(
            source, vocabulary, read_options, options, video_id=video_id, category_ids=category_ids
        )
        for item in items:
            if item.result is not None:
                return item.result
        raise AssertionError("iter_segment ended without a result")


def weight_files() -> tuple[WeightFile, ...]:
    """Every file the releases may need: the four model checkpoints and the CLIP ViT-B/32 weights."""
    return (*(release.weights for release in MODEL_RELEASES.values()), OPENAI_VIT_B_32)


def loaded_model_id(release: str, own_config: ModelConfig | None, path: Path, cached: bool) -> str:
    """What a result records as its model: the release, or what a given file holds.

    A checkpoint that carries its own config (an ovformer checkpoint, e.g. a fine-tuned Swin) is named by
    that config, not by the release asked for: ``ovformer-swin-video:tuned.pt``.
    """
    if own_config is not None:
        rule = "video" if own_config.decoder.temporal_position else "image"
        return f"ovformer-{own_config.backbone.kind}-{rule}:{path.name}"
    return f"ovformer-{release}" if cached else f"ovformer-{release}:{path.name}"


def load_model(
    model: str = "r50-lvvis",
    weights: str | os.PathLike[str] | None = None,
    clip_weights: str | os.PathLike[str] | None = None,
    device: str | None = None,
    precision: Precision = "auto",
    home: str | os.PathLike[str] | None = None,
    allow_download: bool = True,
    progress: bool = True,
) -> Predictor:
    """Build a ready ``Predictor``.

    Args:
        model: a release name (``r50-lvvis``, ``swinb-lvvis``, ``r50-lvis``, ``swinb-lvis``); its
            config is used unless ``weights`` is an ovformer checkpoint, which carries its own.
        weights: path of the model weights; default: the release's file in the cache (downloaded
            when missing and online).
        clip_weights: path of the CLIP ViT-B/32 weights; default: the cache / OpenAI download.
        device: ``cuda``, ``cpu``, ``cuda:1``...; default cuda when available.
        precision: the network's precision; ``auto`` picks bf16 on CPUs and GPUs with bfloat16 units,
            else fp32 (``ovformer_core.inference.precision``).
        home: cache folder (default ``$OVFORMER_HOME`` or ``~/.cache/ovformer``).
    """
    if model not in MODEL_RELEASES:
        raise OVFormerError(f"unknown model {model!r}; choose one of {', '.join(MODEL_RELEASES)}")
    release = MODEL_RELEASES[model]
    torch_device = choose_device(device)
    weights_path, clip_path = resolve_all(
        [(release.weights, weights, "weights"), (OPENAI_VIT_B_32, clip_weights, "clip_weights")],
        home=home,
        allow_download=allow_download,
        progress=progress,
    )
    checkpoint = read_checkpoint(weights_path)
    cfg = checkpoint.config or release.config
    network = build_model(cfg)
    try:
        check_fits(checkpoint, network, cfg, weights_path)
    except CheckpointError as err:
        if weights is None:
            raise CheckpointError(f"{err}; if it was downloaded, delete {weights_path} and run again") from None
        raise
    network.load_state_dict(checkpoint.state_dict, strict=True)
    network.eval().to(torch_device)
    encoders = load_clip_encoders(clip_path, torch_device)
    options = segment_options_for(cfg).updated(precision=precision)
    return Predictor(
        network,
        cfg,
        encoders.frames,
        encoders.text,
        model_id=loaded_model_id(model, cfg if checkpoint.config is not None else None, weights_path, weights is None),
        options=options,
        cache_dir=ovformer_home(home) / "vocabularies",
        weights_id=f"{fingerprint(weights_path)}+{fingerprint(clip_path)}",
    )
