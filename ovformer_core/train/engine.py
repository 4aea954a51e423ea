"""The training loop: one process, or several under ``torchrun`` (DistributedDataParallel).

One iteration takes ``run.batch_size`` clips from the global sample stream, split into micro-batches
(``batches.MicroBatchPlan``); each process accumulates gradients over its micro-batches, DDP averages
them over processes, then AdamW steps once. The mask losses of every micro-batch are normalised by
the iteration's ground-truth count divided by the number of micro-batches, and every random choice is
seeded from (seed, iteration, micro-batch), so the update does not depend on how the batch is spread
over processes and accumulation steps, and a resumed run continues exactly.
"""

from __future__ import annotations

import json
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ovformer_core.checkpoints import save_checkpoint
from ovformer_core.devices import ProcessGroup, choose_device, process_group
from ovformer_core.errors import TrainingError
from ovformer_core.io.atomic import write_text_atomic
from ovformer_core.io.precomputed import load_text_classifier_npy
from ovformer_core.model.build import build_model
from ovformer_core.model.clip import OPENAI_VIT_B_32, ClipEncoders, load_clip_encoders
from ovformer_core.train.batches import (
    ClipSamples,
    MicroBatchPlan,
    MicroBatchSampler,
    TrainSample,
    check_plan,
    collate,
    keep_list,
)
from ovformer_core.train.checkpointing import (
    FINAL_MODEL,
    checkpoint_name,
    latest_checkpoint,
    load_backbone_weights,
    load_init_weights,
    record_checkpoint,
    restore_train_state,
    rng_states,
    save_train_checkpoint,
)
from ovformer_core.train.clip_cache import (
    ClipEmbeddingCache,
    OnTheFlyClipEmbeddings,
    build_clip_cache,
    encoder_fingerprint,
)
from ovformer_core.train.config import TrainConfig, check_train_config
from ovformer_core.train.criterion import SetCriterion, category_sampling_weights, weighted_total
from ovformer_core.train.data import TrainDataset, read_train_dataset
from ovformer_core.train.evaluation import evaluate_split
from ovformer_core.train.metrics_log import MetricsLog
from ovformer_core.train.optim import build_optimizer, build_scheduler, clip_gradients
from ovformer_core.train.sampler import SampleStream, repeat_factors
from ovformer_core.vocab import Vocabulary, classes_from_names, encode_classes, text_classifier_from_embeddings
from ovformer_core.weights import resolve

#: The four loss terms logged per iteration (final head; auxiliary heads are in ``loss``).
LOGGED_TERMS = ("loss_ce", "loss_object_ce", "loss_mask", "loss_dice")


@dataclass(frozen=True)
class TrainOutcome:
    """How a run ended.

    Attributes:
        status: ``finished`` (reached ``optim.max_iter``) or ``interrupted`` (SIGTERM; checkpoint saved).
        iteration: iterations completed.
        checkpoint: the newest resumable checkpoint.
        final_model: ``model_final.pth`` when finished.
        eval_stats: the last evaluation's numbers, if any.
    """

    status: Literal["finished", "interrupted"]
    iteration: int
    checkpoint: Path | None
    final_model: Path | None
    eval_stats: dict[str, float] | None


def micro_batch_seed(seed: int, iteration: int, micro_idx: int) -> int:
    """Seed of the model-side randomness (drop-path, point sampling, sampled categories) of one micro-batch."""
    return int(np.random.SeedSequence([seed, iteration, micro_idx]).generate_state(1)[0])


class _StopRequest:
    """Set by SIGTERM; checked between iterations so the run stops at a clean point."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def _ignore_sigterm(worker_id: int) -> None:
    """Loader workers ignore SIGTERM: a scheduler signals the whole process group, and the main process
    must still be able to finish its iteration and write the checkpoint; it shuts the workers down."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


@contextmanager
def _sigterm_requests_stop() -> Iterator[_StopRequest]:
    stop = _StopRequest()
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGTERM, previous)


class Trainer:
    """Builds everything a run needs from a ``TrainConfig`` and runs it (``run``).

    Args:
        cfg: the training config.
        resume: continue from the newest checkpoint in ``run.output_dir`` (start fresh when there is none).
        home: weights cache folder (default ``$OVFORMER_HOME``).
        on_log: called on the main process with each logged line (iteration, losses, lr, eval numbers).
    """

    def __init__(
        self,
        cfg: TrainConfig,
        resume: bool = False,
        home: str | os.PathLike[str] | None = None,
        on_log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        check_train_config(cfg)
        self.cfg = cfg
        self.resume = resume
        self.home = home
        self.on_log = on_log
        self.group = ProcessGroup.from_env()
        check_plan_or_fail(cfg, self.group.world_size)
        self.plan = MicroBatchPlan(cfg.run.batch_size, cfg.run.micro_batch_size, self.group.world_size, self.group.rank)
        self.output_dir = Path(cfg.run.output_dir)
        self.device = self._pick_device()
        self._clip_encoders: ClipEncoders | None = None

    # ----- set-up -------------------------------------------------------------------------------------------

    def _pick_device(self) -> torch.device:
        device = choose_device(
            self.cfg.run.device or None, self.group.local_rank, "run.device", TrainingError, self.group.local_world_size
        )
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    def _clip(self) -> ClipEncoders:
        """The CLIP ViT-B/32 towers (loaded once, only when something needs them)."""
        if self._clip_encoders is None:
            path = resolve(
                OPENAI_VIT_B_32, self.cfg.run.clip_weights or None, home=self.home, parameter="run.clip_weights"
            )
            self._clip_encoders = load_clip_encoders(path, self.device)
        return self._clip_encoders

    def _text_classifier(self, dataset: TrainDataset) -> Tensor:
        """``[512, C + 1]`` classifier of the training categories (fixed during training)."""
        spec = self.cfg.run.text_classifier
        if spec.endswith(".npy"):
            classifier = text_classifier_from_embeddings(load_text_classifier_npy(spec))
        elif spec:
            classifier = Vocabulary.load(spec).text_classifier()
        else:
            factory = self._clip().text
            vocabulary = encode_classes(classes_from_names(dataset.category_names), factory(), factory.identity)
            classifier = vocabulary.text_classifier()
        num_classes = classifier.shape[1] - 1
        if num_classes != len(dataset.category_ids):
            raise TrainingError(
                f"the text classifier has {num_classes} classes but {self.cfg.data.train_json} has "
                f"{len(dataset.category_ids)} categories; use the classifier of the training vocabulary"
            )
        if num_classes != self.cfg.model.num_classes:
            raise TrainingError(
                f"model.num_classes is {self.cfg.model.num_classes} but the training data has {num_classes} "
                "categories; set model.num_classes to match"
            )
        return classifier.to(self.device)

    def _build_model(self, pretrained: bool) -> nn.Module:
        """The network; with ``pretrained``, initialised from ``run.backbone_weights`` / ``run.init_weights``
        (a resumed run skips them: its checkpoint replaces every weight)."""
        model = build_model(self.cfg.model)
        if pretrained and self.cfg.run.backbone_weights:
            load_backbone_weights(model, self.cfg.run.backbone_weights)
        if pretrained and self.cfg.run.init_weights:
            load_init_weights(model, self.cfg.run.init_weights, home=self.home)
        return model.to(self.device).train()

    def _loader(self, dataset: TrainDataset, start_iteration: int) -> Iterator[list[TrainSample]]:
        data = self.cfg.data
        repeat = None
        if data.repeat_threshold > 0:
            category_sets = [{inst.category_idx for inst in video.instances} for video in dataset.videos]
            repeat = repeat_factors(category_sets, data.repeat_threshold)
        stream = SampleStream(len(dataset.videos), self.cfg.run.seed, repeat)
        loader = DataLoader(
            ClipSamples(dataset, data, self.cfg.run.seed),
            batch_sampler=MicroBatchSampler(stream, self.plan, start_iteration),
            num_workers=data.num_workers,
            collate_fn=keep_list,
            persistent_workers=data.num_workers > 0,
            worker_init_fn=_ignore_sigterm,
        )
        return iter(loader)

    # ----- the loop ----------------------------------------------------------------------------------------

    def run(self) -> TrainOutcome:
        """Train until ``optim.max_iter`` or SIGTERM; see ``TrainOutcome``."""
        with process_group(self.group, self.device):
            return self._run()

    def _all_sum(self, values: list[float]) -> list[float]:
        if self.group.world_size == 1:
            return values
        # On the run's device: NCCL (the CUDA backend) reduces only GPU tensors.
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return tensor.tolist()

    def _barrier(self) -> None:
        if self.group.world_size > 1:
            dist.barrier()

    def _run(self) -> TrainOutcome:
        cfg = self.cfg
        torch.manual_seed(cfg.run.seed)
        checkpoint = latest_checkpoint(self.output_dir)
        if checkpoint is not None and not self.resume:
            raise TrainingError(
                f"{self.output_dir} already holds a run; pass `resume` to continue it or set another run.output_dir"
            )
        dataset = read_train_dataset(cfg.data.train_json, cfg.data.train_root, cfg.data.filter_empty)
        if not dataset.videos:
            raise TrainingError(f"{cfg.data.train_json} has no usable training items (all empty or crowd)")
        text_classifier = self._text_classifier(dataset)
        clip_embeddings: ClipEmbeddingCache | OnTheFlyClipEmbeddings
        if cfg.data.clip_features:
            # When CLIP is loaded anyway (text classifier, evaluation), a cache from other weights is refused.
            fingerprint = encoder_fingerprint(self._clip().frames) if self._clip_encoders is not None else None
            clip_embeddings = ClipEmbeddingCache.open(cfg.data.clip_features, fingerprint=fingerprint)
        else:
            clip_embeddings = OnTheFlyClipEmbeddings(self._clip().frames)
        model = self._build_model(pretrained=checkpoint is None)
        criterion = SetCriterion(
            cfg.model.num_classes,
            cfg.loss,
            category_sampling_weights(torch.tensor(dataset.image_counts), cfg.loss.frequency_power).to(self.device),
        )
        optimizer = build_optimizer(model, cfg.optim)
        scheduler = build_scheduler(optimizer, cfg.optim)
        amp_dtype = torch.float16 if cfg.run.amp_dtype == "float16" else torch.bfloat16
        # float16 autocast is a CUDA feature; bfloat16 autocast also runs on CPU.
        use_amp = cfg.run.amp and (self.device.type == "cuda" or amp_dtype == torch.bfloat16)
        scaler = torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16)

        start = 0
        if checkpoint is not None:
            start = restore_train_state(checkpoint, model, optimizer, scheduler, scaler)
        if self.group.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            write_text_atomic(self.output_dir / "config.json", json.dumps(cfg.to_dict(), indent=2))
        self._barrier()
        log = MetricsLog(self.output_dir, self.group.is_main, resume_from=start if checkpoint is not None else None)

        network: nn.Module = model
        if self.group.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            network = DistributedDataParallel(model, device_ids=device_ids)

        class_names = list(dataset.category_names)

        def save(iteration: int) -> Path:
            path = self.output_dir / checkpoint_name(iteration)
            if self.group.is_main:
                state = {
                    "iteration": iteration,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(),
                    "scaler": scaler.state_dict(),
                    "rng": rng_states(),
                    "config": cfg.to_dict(),
                }
                save_train_checkpoint(path, model, cfg.model, state, text_classifier, class_names)
                record_checkpoint(self.output_dir, path, cfg.run.keep_checkpoints)
            self._barrier()
            return path

        eval_stats: dict[str, float] | None = None
        batches = self._loader(dataset, start)
        iteration = start
        started = time.perf_counter()
        try:
            with _sigterm_requests_stop() as stop:
                while iteration < cfg.optim.max_iter:
                    micro_batches = [next(batches) for _ in range(self.plan.accumulation)]
                    scalars = self._step(
                        network,
                        model,
                        criterion,
                        optimizer,
                        scaler,
                        text_classifier,
                        clip_embeddings,
                        micro_batches,
                        iteration,
                        use_amp,
                        amp_dtype,
                    )
                    if not math.isfinite(scalars["loss"]):
                        last = latest_checkpoint(self.output_dir)
                        raise TrainingError(
                            f"the loss became {scalars['loss']} at iteration {iteration + 1}; last good checkpoint: "
                            f"{last if last is not None else 'none'} (resume from it with a lower optim.lr or "
                            "run.amp off)"
                        )
                    scheduler.step()
                    iteration += 1
                    if iteration % cfg.run.log_period == 0 or iteration == cfg.optim.max_iter:
                        elapsed = time.perf_counter() - started
                        scalars["lr"] = max(group["lr"] for group in optimizer.param_groups)  # base lr (backbone: x0.1)
                        scalars["seconds_per_iteration"] = elapsed / max(iteration - start, 1)
                        log.log(iteration, scalars)
                        if self.on_log is not None and self.group.is_main:
                            self.on_log({"iteration": iteration, **scalars})
                    if iteration % cfg.run.checkpoint_period == 0 and iteration < cfg.optim.max_iter:
                        save(iteration)
                    if cfg.data.val_json and cfg.run.eval_period and iteration % cfg.run.eval_period == 0:
                        eval_stats = self._evaluate(model, iteration, log)
                    stop_now = self._all_sum([1.0 if stop.requested else 0.0])[0] > 0
                    if stop_now and iteration < cfg.optim.max_iter:
                        path = save(iteration)
                        return TrainOutcome("interrupted", iteration, path, None, eval_stats)
            path = save(iteration)
            final = self.output_dir / FINAL_MODEL
            if self.group.is_main:
                save_checkpoint(final, model, cfg.model, text_classifier, class_names)
            if cfg.data.val_json and (not cfg.run.eval_period or iteration % cfg.run.eval_period):
                eval_stats = self._evaluate(model, iteration, log)
            self._barrier()
            return TrainOutcome("finished", iteration, path, final, eval_stats)
        finally:
            log.close()

    def _step(
        self,
        network: nn.Module,
        model: nn.Module,
        criterion: SetCriterion,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        text_classifier: Tensor,
        clip_embeddings: Any,
        micro_batches: list[list[TrainSample]],
        iteration: int,
        use_amp: bool,
        amp_dtype: torch.dtype,
    ) -> dict[str, float]:
        """Forward/backward every micro-batch of this process, then one optimiser step."""
        cfg = self.cfg
        batches = [
            collate(
                samples, cfg.model.pixel_mean, cfg.model.pixel_std, cfg.model.inference.size_divisibility, self.device
            )
            for samples in micro_batches
        ]
        total_masks = self._all_sum([float(sum(b.num_instances for b in batches))])[0]
        num_masks = max(total_masks / self.plan.num_micro_batches, 1.0)
        sums = dict.fromkeys(("loss", *LOGGED_TERMS), 0.0)
        for j, (micro_idx, batch) in enumerate(zip(self.plan.micro_batch_indices(), batches, strict=True)):
            seed = micro_batch_seed(cfg.run.seed, iteration, micro_idx)
            torch.manual_seed(seed)
            generator = torch.Generator(self.device).manual_seed(seed)
            clip_embeds = torch.stack([clip_embeddings.lookup(names) for names in batch.file_names]).to(self.device)
            last = j == len(batches) - 1
            sync = nullcontext() if last or not isinstance(network, DistributedDataParallel) else network.no_sync()
            with sync:
                with torch.autocast(self.device.type, dtype=amp_dtype, enabled=use_amp):
                    out = network(batch.frames, clip_embeds.float(), text_classifier, with_aux=True)
                losses = criterion(out, batch.targets, out.aux, generator=generator, num_masks=num_masks)
                total = weighted_total(losses, cfg.loss)
                scaler.scale(total / self.plan.accumulation).backward()
            sums["loss"] += float(total.detach())
            for name in LOGGED_TERMS:
                sums[name] += float(losses[name].detach())
        reduced = self._all_sum(list(sums.values()))
        scalars = {name: value / self.plan.num_micro_batches for name, value in zip(sums, reduced, strict=True)}
        if not math.isfinite(scalars["loss"]):
            optimizer.zero_grad(set_to_none=True)
            return scalars
        scaler.unscale_(optimizer)
        scalars["grad_norm"] = float(clip_gradients(model, cfg.optim.clip_grad_norm))
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return scalars

    def _evaluate(self, model: nn.Module, iteration: int, log: MetricsLog) -> dict[str, float] | None:
        """Every process segments its share of the validation videos; rank 0 evaluates and logs."""
        stats = evaluate_split(
            model,
            self.cfg.model,
            self._clip().frames,
            self._clip().text,
            self.cfg.data.val_json,
            self.cfg.data.val_root,
            self.cfg.data.val_benchmark,
            self.output_dir / f"eval_{iteration:07d}",
            rank=self.group.rank,
            world_size=self.group.world_size,
            barrier=self._barrier,
        )
        if stats is not None:
            scalars = {f"eval/{name}": value for name, value in stats.items()}
            log.log(iteration, scalars)
            if self.on_log is not None:
                self.on_log({"iteration": iteration, **scalars})
        self._barrier()
        return stats


def check_plan_or_fail(cfg: TrainConfig, world_size: int) -> None:
    """``check_plan`` with the project's error type."""
    try:
        check_plan(cfg.run.batch_size, cfg.run.micro_batch_size, world_size)
    except ValueError as err:
        raise TrainingError(str(err)) from None


def build_training_clip_cache(cfg: TrainConfig, path: str | os.PathLike[str], home: str | None = None) -> int:
    """Encode every frame of the training set with CLIP into ``path`` (for ``data.clip_features``).

    Returns:
        The number of distinct frames encoded.
    """
    dataset = read_train_dataset(cfg.data.train_json, cfg.data.train_root, cfg.data.filter_empty)
    trainer = Trainer(cfg, home=home)
    names = sorted({name for video in dataset.videos for name in video.file_names})
    build_clip_cache(names, trainer._clip().frames, path)
    return len(names)


def train(
    cfg: TrainConfig,
    resume: bool = False,
    home: str | os.PathLike[str] | None = None,
    on_log: Callable[[dict[str, Any]], None] | None = None,
) -> TrainOutcome:
    """Run a training job (see ``Trainer``)."""
    return Trainer(cfg, resume=resume, home=home, on_log=on_log).run()
