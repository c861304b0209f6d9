"""The training loop: one run from a :class:`RunConfig` into a run directory, resumable exactly.

Per step: forward (``model.forward_train``), per-task losses from the task specs (plus deep supervision), the
balancer's ``backward`` (with ``diagnose=`` every ``diagnostics.every`` steps), optional all-reduce, clipping,
optimizer and schedule steps, then the method hooks (``post_step`` with the losses re-evaluated on the same batch
for methods that define it, ``epoch_end`` at every epoch end).

Exact resume: the last checkpoint holds model weights, optimizer, schedule, balancer (and URL adaptor) state, the
loop position (epoch, batches done in it) and every RNG state, and is taken *after* the evaluation of the same
step. Batches come from :class:`~taskbalance.training.batches.EpochBatchSampler`, so a resumed run sees the same
batches in the same order, augmented alike (an item's augmentation is a function of the seed, the epoch and its
index, the epoch being set on the training set before each epoch's loader); on CPU it reproduces the
uninterrupted run bit for bit.
"""

from __future__ import annotations

import errno
import random
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch.utils.data import DataLoader
from torch.utils.tensorboard import SummaryWriter

from taskbalance.balancers import StepResult
from taskbalance.balancers.driver import Forward, StepDriver, StepOptions, TrainingDiverged
from taskbalance.records import TrainRecord, ValidationRecord, append_record, read_diagnostics
from taskbalance.results.meta import RunMeta
from taskbalance.results.schema import RunResult, load_run_result, save_run_result
from taskbalance.training import checkpoint as ckpt
from taskbalance.training.batches import EpochBatchSampler, to_device
from taskbalance.training.components import (
    build_balancer,
    build_model_for,
    build_optimization,
    build_specs,
    build_split,
    resolve_device,
)
from taskbalance.training.config import DERIVED_KEYS, ConfigError, RunConfig, config_differences, config_hash, dump_config
from taskbalance.training.diagnostics import diagnostic_record, format_summary, imbalance_summary, tensorboard_scalars
from taskbalance.training.ddp import DataParallel, convert_batchnorm, wants_sync_batchnorm
from taskbalance.training.distributed import (
    DistInfo,
    any_process,
    barrier,
    broadcast_state,
    gather_objects,
    init_from_env,
    process_seed,
)
from taskbalance.training.evaluate import autocast_context, evaluate, primary, selection_score, task_losses
from taskbalance.training.preemption import Preempted, StopRequest, signal_number
from taskbalance.training.presets import load_config
from taskbalance.atomic import WriteError, atomic_write_text, describe_os_error
from taskbalance.training.rundir import RunDir, write_json
from taskbalance.training.url import FeatureAligner, load_teacher


class RunExistsError(FileExistsError):
    """The output directory already holds a run and ``resume`` was not asked for."""


@dataclass
class LoopState:
    """Where the loop is, and what it has accumulated (saved in every checkpoint)."""

    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    best_score: float | None = None
    best_step: int | None = None
    reference: dict[str, float] | None = None
    weight_sums: dict[str, float] = field(default_factory=dict)
    weight_count: int = 0
    train_seconds: float = 0.0


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Trainer:
    """One run. Build it with a config and an output directory, then call :meth:`fit`."""

    def __init__(self, config: RunConfig, out: Path, resume: bool = False, console: Console | None = None,
                 show_progress: bool = True, also_stop_on: Sequence[int] = ()) -> None:
        # signals that stop the run after the current step, with a checkpoint (taskbalance.training.preemption)
        self.stop_signals = [*(signal_number(name) for name in config.stop_signals), *also_stop_on]
        if config.threads is None:  # the count changes the numbers on CPU: config.yaml and the hash state it
            config = config.model_copy(update={"threads": torch.get_num_threads()})
        self.config = config
        self.run = RunDir(Path(out))
        self.console = console or Console()
        self.show_progress = show_progress
        self.dist: DistInfo = init_from_env()
        self.device = resolve_device(config, self.dist.local_rank)
        self.amp = config.amp and self.device.type == "cuda"
        torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        self._build()  # before the run directory is touched: a config that cannot be built writes nothing
        if self.dist.enabled:  # dropout and other global-RNG draws differ across processes (the data order does not)
            seed_everything(process_seed(config.seed, self.dist))
        self._lock = self.run.lock() if self.dist.is_main else None  # a second process on this run stops here
        try:
            self._prepare_directory(resume)
            self.state = LoopState()
            if resume and self.run.has_checkpoint():
                self._restore()
            self.driver = self._build_driver()
        except BaseException:
            self.release()
            raise

    def release(self) -> None:
        """Unlock the run directory (:meth:`fit` does it when it returns or fails)."""
        if self._lock is not None:
            self._lock.release()

    # ------------------------------------------------------------------ setup
    def _prepare_directory(self, resume: bool) -> None:
        run = self.run
        existing = run.has_started()  # a run that stopped before its first step is started anew
        barrier(self.dist)  # every rank has looked before rank 0 writes the config of a new run
        if existing:
            if not resume:
                raise RunExistsError(f"{run.root} already holds a run: pass --resume to continue it, or choose another output")
            stored = load_config(run.config)
            if stored.threads is None:  # stored before runs stated their count: torch's default then, as now
                stored = stored.model_copy(update={"threads": self.config.threads})
            differences = config_differences(stored, self.config)
            if differences:
                raise ConfigError(f"cannot resume {run.root}: the config differs in {', '.join(differences)}")
            if not run.has_checkpoint() and self.dist.is_main:  # killed before its first checkpoint: start over
                run.metrics.truncate_after(0)
                run.diagnostics.truncate_after(0)
        elif self.dist.is_main:
            atomic_write_text(run.config, dump_config(self.config))
        barrier(self.dist)

    def _build(self) -> None:
        config = self.config
        self.train_set = build_split(config, "train", train=True)
        self.info = self.train_set.info  # type: ignore[attr-defined]
        self.val_set = build_split(config, "val", train=False) if self.info.has_val_split else None
        self.specs = build_specs(config, self.info, exact_edge=False)
        sync = wants_sync_batchnorm(config.distributed.sync_batchnorm, self.dist, self.device)
        self.model = convert_batchnorm(build_model_for(config, self.info), sync).to(self.device)
        broadcast_state(self.model, self.dist)
        self.balancer = build_balancer(config, self.model).to(self.device)
        self.aligner = self._build_aligner()
        self.sampler = EpochBatchSampler(len(self.train_set), config.data.batch_size, config.seed, self.dist.rank,
                                         self.dist.world_size)
        optim = config.optim
        self.total_steps = optim.iterations if optim.iterations is not None else optim.epochs * len(self.sampler)
        extra = {"aligner": self.aligner} if self.aligner is not None else {}
        optimization = build_optimization(config, self.model, self.balancer, extra, self.total_steps)
        self.optimizer, self.scheduler = optimization.optimizer, optimization.scheduler
        self.parallel: DataParallel | None = None
        if self.dist.enabled:
            in_model = {id(p) for p in self.model.parameters()}
            replicated = [p for group in self.optimizer.param_groups for p in group["params"] if id(p) not in in_model]
            self.parallel = DataParallel(self.model, self.balancer, self.dist, replicated, config.distributed.bucket_mb)

    def _build_driver(self) -> StepDriver[StepResult]:
        parallel = self.parallel
        options = StepOptions(scheduler=self.scheduler, clip=list(self.model.parameters()),
                              max_norm=self.config.optim.grad_clip,
                              gradient_hook=parallel.gradient_hook if parallel is not None else None)
        return StepDriver.for_balancer(self.balancer, self.optimizer, options, steps_done=self.state.step,
                                       reducer=parallel.reducer if parallel is not None else None)

    def _build_aligner(self) -> FeatureAligner | None:
        distill = self.config.distill
        if distill is None:
            return None
        teachers = {task: load_teacher(path, self.device, self.info) for task, path in distill.teachers.items()}
        count = min(self.config.data.batch_size, len(self.train_set))
        images = torch.stack([self.train_set[i]["image"] for i in range(count)]).to(self.device)
        return FeatureAligner.build(teachers, self.model, images, detach_student=distill.mode == "measure")

    def _restore(self) -> None:
        found = ckpt.find_checkpoint(self.run.checkpoints, "last", on_damage=self._warn)
        assert found is not None
        ckpt.load_weights(self.model, found, self.device)
        saved = ckpt.load_state(found)
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.balancer.load_state_dict(saved["balancer"])
        if self.aligner is not None:
            self.aligner.load_state_dict(saved["aligner"])
        self.state = LoopState(**saved["loop"])
        self._restore_rng(saved)
        if self.dist.is_main:
            self.run.metrics.truncate_after(self.state.step)
            self.run.diagnostics.truncate_after(self.state.step)
        self.console.print(f"resuming {self.run.root} from step {self.state.step}/{self.total_steps}")

    def _restore_rng(self, saved: Mapping[str, Any]) -> None:
        """This process's RNG streams as saved; a run resumed on another number of processes reseeds them."""
        per_process = saved.get("rng_processes")
        if self.dist.enabled and per_process is not None and len(per_process) == self.dist.world_size:
            ckpt.set_rng_state(per_process[self.dist.rank])
            return
        ckpt.set_rng_state(saved["rng"])
        if self.dist.enabled:
            seed_everything(process_seed(self.config.seed + self.state.step, self.dist))

    # ------------------------------------------------------------------ one step
    def _forward(self, batch: Mapping[str, Any], diagnose: bool) -> tuple[Forward, dict[str, torch.Tensor]]:
        """The step's forward pass and the URL feature distances (empty without distillation)."""
        images = batch["image"]
        with autocast_context(self.device, self.amp):
            output = self.parallel.forward_train(images, diagnose) if self.parallel else self.model.forward_train(images)
        with self.parallel.losses_context() if self.parallel is not None else nullcontext():
            losses = task_losses(self.specs, output, batch)  # masked means over the global batch
        distances: dict[str, torch.Tensor] = {}
        extra = None
        if self.aligner is not None:
            distances = self.aligner.distances(images, output.features)
            if self.config.distill is not None and self.config.distill.mode == "distill":
                weights = self.config.distill.weights
                losses = {t: loss + weights.get(t, 1.0) * distances[t] if t in distances else loss for t, loss in losses.items()}
            elif distances and self.aligner.detach_student:
                extra = sum(distances.values())
        return Forward(losses, output.features, extra), distances

    def _step(self, batch: Mapping[str, Any], diagnose: bool) -> tuple[StepResult, dict[str, float]]:
        first: list[dict[str, torch.Tensor]] = []

        def forward() -> Forward:
            step_forward, distances = self._forward(batch, diagnose)
            first.append(distances)
            return step_forward

        try:
            result = self.driver.step(forward, diagnose=self.config.diagnostics.source if diagnose else None)
        except TrainingDiverged as error:
            raise TrainingDiverged(f"training stopped: {error}; {ckpt.intact_note(self.run.checkpoints)}") from None
        return result, {t: float(v.detach()) for t, v in first[0].items()}

    # ------------------------------------------------------------------ logging
    def _log_step(self, result: StepResult, distances: Mapping[str, float], writer: SummaryWriter | None, diagnose: bool) -> None:
        state = self.state
        for task, weight in result.weights.items():
            state.weight_sums[task] = state.weight_sums.get(task, 0.0) + weight
        state.weight_count += 1
        if not self.dist.is_main:
            return
        if state.step % self.config.log_every == 0 or state.step == self.total_steps:
            loss = sum(result.losses.values())
            lr = self.scheduler.get_last_lr()[0]
            append_record(self.run.metrics, TrainRecord(step=state.step, epoch=state.epoch, lr=lr, loss=loss,
                                                        losses=result.losses, weights=result.weights))
            if writer is not None:
                writer.add_scalar("train/loss", loss, state.step)
                writer.add_scalar("train/lr", lr, state.step)
                for task in result.losses:
                    writer.add_scalar(f"train/loss/{task}", result.losses[task], state.step)
                    writer.add_scalar(f"train/weight/{task}", result.weights[task], state.step)
        if diagnose:
            diagnostic = diagnostic_record(state.step, result, distances)
            if diagnostic is not None:
                append_record(self.run.diagnostics, diagnostic)
                if writer is not None:
                    for tag, value in tensorboard_scalars(diagnostic).items():
                        writer.add_scalar(tag, value, state.step)

    # ------------------------------------------------------------------ evaluation and checkpoints
    def _loader(self, dataset: Any) -> DataLoader:
        batch_size = self.config.data.eval_batch_size or self.config.data.batch_size
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=self.config.data.num_workers)

    def _validate(self, writer: SummaryWriter | None) -> None:
        if self.val_set is None or not self.dist.is_main:
            return
        state = self.state
        metrics = evaluate(self.model, self._loader(self.val_set), self.specs, self.device, self.amp,
                           self.config.evaluation.max_batches)
        baseline = self.config.baseline
        if baseline:
            state.reference = {t: baseline[t][s.primary_metric] for t, s in self.specs.items()}
        elif state.reference is None or 0 in state.reference.values():
            state.reference = primary(metrics, self.specs)  # the first evaluation with no zero primary metric
        score = selection_score(metrics, state.reference, self.specs)
        improved = state.best_score is None or score > state.best_score
        if improved:
            state.best_score, state.best_step = score, state.step
            ckpt.save_checkpoint(self.run.checkpoints, "best", state.step, self.model)
        append_record(self.run.metrics, ValidationRecord(
            step=state.step, metrics=metrics, score=score, best=improved,
            primary={t: s.primary_metric for t, s in self.specs.items()},
            higher_is_better={t: s.higher_is_better for t, s in self.specs.items()}))
        if writer is not None:
            writer.add_scalar("val/score", score, state.step)
            for task, values in metrics.items():
                for name, value in values.items():
                    writer.add_scalar(f"val/{task}/{name}", value, state.step)

    def _save_last(self) -> None:
        if self.parallel is not None:  # the checkpoint is the state of every process: rank 0's BatchNorm statistics
            self.parallel.sync_buffers()
        rng = gather_objects(ckpt.rng_state(), self.dist)  # every process's streams (dropout differs per process)
        if not self.dist.is_main:
            return
        state = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "balancer": self.balancer.state_dict(),
            "loop": asdict(self.state),
            "rng": rng[0],
        }
        if self.dist.enabled:
            state["rng_processes"] = rng
        if self.aligner is not None:
            state["aligner"] = self.aligner.state_dict()
        ckpt.save_checkpoint(self.run.checkpoints, "last", self.state.step, self.model, state)

    # ------------------------------------------------------------------ the run
    def fit(self) -> RunResult | None:
        """Train to the end (or continue), evaluate the selected model on the test split, write the results."""
        try:
            if self.run.is_finished():
                return load_run_result(self.run.results)
            # events after the resumed step are re-logged; those of the step itself were logged before its checkpoint
            writer = SummaryWriter(str(self.run.tensorboard), purge_step=self.state.step + 1) if self.dist.is_main else None
            try:
                self._train(writer)
                barrier(self.dist)
                result = self._final(writer) if self.dist.is_main else None
            except OSError as error:
                raise self._write_failure(error) from None
            finally:
                if writer is not None:
                    writer.close()
            barrier(self.dist)
            return result
        finally:
            self.release()

    def _write_failure(self, error: OSError) -> OSError:
        """A failed write into the run directory (a full disk, a read-only file system) as one line saying what,
        where, and which checkpoint is intact; any other OS error as it is."""
        if isinstance(error, WriteError):
            return error
        inside = error.filename is not None and Path(str(error.filename)).resolve().is_relative_to(self.run.root.resolve())
        if not inside and error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
            return error
        where = f" {error.filename}" if error.filename is not None else f" into {self.run.root}"
        return WriteError(f"cannot write{where}: {describe_os_error(error)}; {ckpt.intact_note(self.run.checkpoints)}")

    def _warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)

    def _progress(self) -> Progress:
        return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=self.console,
                        disable=not (self.show_progress and self.dist.is_main), transient=False)

    def _epoch_loader(self) -> DataLoader:
        """The rest of the current epoch's batches (its own seeded generator, so no global RNG is drawn)."""
        self.sampler.set_position(self.state.epoch, self.state.batch_in_epoch)
        self.train_set.set_epoch(self.state.epoch)  # type: ignore[attr-defined]
        return DataLoader(self.train_set, batch_sampler=self.sampler, num_workers=self.config.data.num_workers,
                          generator=torch.Generator().manual_seed(self.config.seed + self.state.epoch),
                          pin_memory=self.device.type == "cuda")

    def _advance(self) -> bool:
        """Count the step just taken; run ``epoch_end`` at an epoch's end. Returns whether the epoch ended."""
        state = self.state
        state.step += 1
        state.batch_in_epoch += 1
        if state.batch_in_epoch < len(self.sampler):
            return False
        self.driver.epoch_end()
        state.epoch, state.batch_in_epoch = state.epoch + 1, 0
        return True

    def _announce_last_layer(self) -> None:
        """Say which module is the last shared layer when the method takes its gradients there."""
        balancer = self.balancer
        if balancer.requires == "losses" or balancer.source != "last_layer" or not self.dist.is_main:
            return
        layer = self.model.last_shared_layer()
        path = next((name for name, module in self.model.named_modules() if module is layer), None)
        described = balancer.last_layer_name if path is None else f"{path}: {balancer.last_layer_name}"
        count = sum(p.numel() for p in balancer.last_layer_params)
        self.console.print(f"{self.config.method.name} takes its task gradients on the last shared layer "
                           f"({described}, {count} parameters)")

    def _train(self, writer: SummaryWriter | None) -> None:
        config, state = self.config, self.state
        every, eval_every, ckpt_every = config.diagnostics.every, config.optim.eval_every, config.optim.checkpoint_every
        self._announce_last_layer()
        with self._progress() as progress, StopRequest(self.stop_signals) as stop:
            bar = progress.add_task(config.name, total=self.total_steps, completed=state.step, info="")
            tic, images_seen = time.perf_counter(), 0
            while state.step < self.total_steps:
                for batch in self._epoch_loader():
                    diagnose = every > 0 and (state.step + 1) % every == 0
                    result, distances = self._step(to_device(batch, self.device), diagnose)
                    epoch_done = self._advance()
                    self._log_step(result, distances, writer, diagnose)
                    images_seen += batch["image"].shape[0]
                    speed = images_seen / max(time.perf_counter() - tic, 1e-9)
                    progress.update(bar, completed=state.step, info=f"loss {sum(result.losses.values()):.4g} · {speed:.1f} img/s")
                    finished = state.step >= self.total_steps
                    evaluate_now = finished or (state.step % eval_every == 0 if eval_every else epoch_done)
                    if evaluate_now:
                        self._validate(writer)
                    stopping = any_process(stop.received is not None, self.dist)  # every process stops alike
                    if evaluate_now or stopping or (ckpt_every is not None and state.step % ckpt_every == 0):
                        state.train_seconds += time.perf_counter() - tic
                        tic, images_seen = time.perf_counter(), 0
                        self._save_last()
                    if stopping:
                        raise self._preempted(stop.received)
                    if finished:
                        break

    def _preempted(self, signum: int | None) -> Preempted:
        """The stop after a signal, once the checkpoint of this step is written (and verified, on rank 0)."""
        path = self.run.checkpoints / f"last-{self.state.step:08d}"
        problem = ckpt.verify_checkpoint(path) if self.dist.is_main else None
        if problem is not None:
            raise ckpt.CheckpointError(f"stopping after a signal: {problem}")
        barrier(self.dist)
        return Preempted(signum, self.state.step, path)

    def _final(self, writer: SummaryWriter | None) -> RunResult:
        config, state = self.config, self.state
        best = ckpt.find_checkpoint(self.run.checkpoints, "best", on_damage=self._warn) if self.val_set is not None else None
        if best is not None:
            ckpt.load_weights(self.model, best, self.device)
            selection = "val"
        else:
            selection = "last (no validation split)"
        test_set = build_split(config, "test", train=False)
        final_specs = build_specs(config, self.info, exact_edge=config.evaluation.exact_edge)
        metrics = evaluate(self.model, self._loader(test_set), final_specs, self.device, self.amp, config.evaluation.max_batches)
        records = read_diagnostics(self.run.diagnostics.path)
        summary = imbalance_summary(records)
        write_json(self.run.imbalance, summary)
        if records:
            self.console.print(format_summary(summary))
        result = RunResult(**{
            "name": config.name,
            "method": "stl" if config.single_task else ("url" if config.distill and config.distill.mode == "distill" else config.method.name),
            "kind": "stl" if config.single_task else "mtl",
            "tasks": list(config.tasks),
            "metrics": metrics,
            "primary": {t: s.primary_metric for t, s in final_specs.items()},
            "higher_is_better": {t: s.higher_is_better for t, s in final_specs.items()},
            "mean_weights": {t: v / max(state.weight_count, 1) for t, v in state.weight_sums.items()},
            "selection": selection,
            "meta": RunMeta(
                steps=state.step,
                best_step=state.best_step if best is not None else None,
                train_seconds=state.train_seconds,
                method_options=dict(config.method.options),
                arch=config.model.arch,
                backbone=config.model.backbone,
                dataset=config.data.name,
                dataset_info=dict(self.info.metadata),
                seed=config.seed,
                threads=config.threads,
                torch=torch.__version__,
                config_sha256=config_hash(config),
                # the same for every seed of a study arm: tells arms apart that differ outside the listed meta; like
                # the seed, the thread count perturbs the numbers but not the experiment (config_sha256 has both)
                arm_sha256=config_hash(config, ignore=(*DERIVED_KEYS, "seed", "name", "threads")),
                imbalance=summary,
            ).dump(),
        })
        save_run_result(result, self.run.results)
        if writer is not None:
            for task, values in metrics.items():
                for name, value in values.items():
                    writer.add_scalar(f"test/{task}/{name}", value, state.step)
        return result


def train(config: RunConfig, out: Path, resume: bool = False, console: Console | None = None,
          show_progress: bool = True, also_stop_on: Sequence[int] = ()) -> RunResult | None:
    """Train one run into ``out`` (see :class:`Trainer`); returns its final result (None on ranks other than 0).
    Raises :class:`~taskbalance.training.preemption.Preempted` when a stop signal ended it after a checkpoint."""
    return Trainer(config, out, resume=resume, console=console, show_progress=show_progress,
                   also_stop_on=also_stop_on).fit()
