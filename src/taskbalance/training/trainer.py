"""The study's trainer: one run from a :class:`RunConfig` into a run directory, resumable exactly, as the loop core
(:class:`~taskbalance.training.loop.Loop`) with its hooks.

:class:`Trainer` builds everything from the config before it touches the run directory (a config that cannot be
built writes nothing), checks the directory (a new run, or ``resume`` of the same config), restores the last
checkpoint when resuming, and runs the loop with these hooks, in this order: data-parallel set-up (several
processes), distillation (URL), logging (JSON lines, TensorBoard), progress, validation and checkpoint selection,
checkpointing (and the stop after a signal), the final test; then the caller's own hooks.

Exact resume: the last checkpoint holds model weights, optimizer, schedule, balancer (and URL adaptor) state, the
loop position (epoch, batches done in it) and every RNG state, and is taken *after* the evaluation of the same
step. Batches come from :class:`~taskbalance.training.batches.EpochBatchSampler`, so a resumed run sees the same
batches in the same order, augmented alike (an item's augmentation is a function of the seed, the epoch and its
index, the epoch being set on the training set before each epoch's loader); on CPU it reproduces the
uninterrupted run bit for bit.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from rich.console import Console
from torch.utils.data import DataLoader, Dataset

from taskbalance.atomic import WriteError, atomic_write_text, describe_os_error
from taskbalance.balancers.driver import StepOptions
from taskbalance.results.schema import RunResult, load_run_result
from taskbalance.training import checkpoint as ckpt
from taskbalance.training.batches import EpochBatchSampler
from taskbalance.training.components import (
    build_balancer,
    build_model_for,
    build_optimization,
    build_specs,
    build_split,
    resolve_device,
)
from taskbalance.training.config import ConfigError, RunConfig, config_differences, dump_config
from taskbalance.training.ddp import DataParallel, convert_batchnorm, wants_sync_batchnorm
from taskbalance.training.distributed import barrier, broadcast_state, init_from_env, process_seed
from taskbalance.training.epochs import EpochLoader
from taskbalance.training.hooks import (
    Checkpointing,
    DataParallelSetup,
    Distillation,
    FinalTest,
    Hook,
    MetricsLogger,
    ProgressBar,
    Validation,
)
from taskbalance.training.loop import Loop, LoopState, Schedule
from taskbalance.training.preemption import signal_number
from taskbalance.training.presets import load_config
from taskbalance.training.rundir import RunDir
from taskbalance.training.state import seed_everything
from taskbalance.training.url import FeatureAligner, load_teacher

if TYPE_CHECKING:
    from taskbalance.models.base import MultiTaskModel


class RunExistsError(FileExistsError):
    """The output directory already holds a run and ``resume`` was not asked for."""


class Trainer:
    """One run. Build it with a config and an output directory, then call :meth:`fit`.

    ``hooks``: hooks of one's own (a custom logger, say), called after the built-in ones at every hook point.
    """

    def __init__(self, config: RunConfig, out: Path, resume: bool = False, console: Console | None = None,
                 show_progress: bool = True, also_stop_on: Sequence[int] = (), hooks: Sequence[Hook] = ()) -> None:
        # signals that stop the run after the current step, with a checkpoint (taskbalance.training.preemption)
        stop_signals = [*(signal_number(name) for name in config.stop_signals), *also_stop_on]
        if config.threads is None:  # the count changes the numbers on CPU: config.yaml and the hash state it
            config = config.model_copy(update={"threads": torch.get_num_threads()})
        self.config = config
        self.run = RunDir(Path(out))
        self.console = console or Console()
        self.dist = init_from_env()
        self.device = resolve_device(config, self.dist.local_rank)
        assert config.threads is not None  # set just above when it was None
        torch.set_num_threads(config.threads)
        seed_everything(config.seed)
        built = self._build()  # before the run directory is touched: a config that cannot be built writes nothing
        if self.dist.enabled:  # dropout and other global-RNG draws differ across processes (the data order does not)
            seed_everything(process_seed(config.seed, self.dist))
        self._lock = self.run.lock() if self.dist.is_main else None  # a second process on this run stops here
        try:
            self._prepare_directory(resume)
            self.loop = self._loop(built, stop_signals, show_progress, hooks)
            if resume:
                self.checkpointing.restore()
        except BaseException:
            self.release()
            raise

    @property
    def state(self) -> LoopState:
        """The loop's position and accumulators."""
        return self.loop.state

    def release(self) -> None:
        """Unlock the run directory (:meth:`fit` does it when it returns or fails)."""
        if self._lock is not None:
            self._lock.release()

    def fit(self) -> RunResult | None:
        """Train to the end (or continue), evaluate the selected model on the test split, write the results; the
        result (None on processes other than the first)."""
        try:
            if self.run.is_finished():
                return load_run_result(self.run.results)
            try:
                self.loop.run()
            except OSError as error:
                raise self._write_failure(error) from None
            return self.final.result
        finally:
            self.release()

    # ------------------------------------------------------------------ building
    def _build(self) -> dict[str, Any]:
        config, dist = self.config, self.dist
        self.train_set = build_split(config, "train", train=True)
        self.info = self.train_set.info
        self.val_set = build_split(config, "val", train=False) if self.info.has_val_split else None
        self.specs = build_specs(config, self.info, exact_edge=False)
        sync = wants_sync_batchnorm(config.distributed.sync_batchnorm, dist, self.device)
        self.model = cast("MultiTaskModel", convert_batchnorm(build_model_for(config, self.info), sync).to(self.device))
        broadcast_state(self.model, dist)
        self.balancer = build_balancer(config, self.model).to(self.device)
        distill = self._distillation()
        sampler = EpochBatchSampler(len(self.train_set), config.data.batch_size, config.seed, dist.rank,
                                    dist.world_size)
        optim = config.optim
        total_steps = optim.iterations if optim.iterations is not None else (optim.epochs or 0) * len(sampler)
        extra = distill.modules() if distill is not None else {}
        optimization = build_optimization(config, self.model, self.balancer, extra, total_steps)
        parallel = None
        if dist.enabled:
            in_model = {id(p) for p in self.model.parameters()}
            replicated = [p for group in optimization.optimizer.param_groups for p in group["params"]
                          if id(p) not in in_model]
            parallel = DataParallel(self.model, self.balancer, dist, replicated, config.distributed.bucket_mb)
        return {"distill": distill, "sampler": sampler, "total_steps": total_steps, "optimization": optimization,
                "parallel": parallel}

    def _distillation(self) -> Distillation | None:
        distill = self.config.distill
        if distill is None:
            return None
        teachers = {task: load_teacher(path, self.device, self.info) for task, path in distill.teachers.items()}
        count = min(self.config.data.batch_size, len(self.train_set))
        images = torch.stack([self.train_set[i]["image"] for i in range(count)]).to(self.device)
        aligner = FeatureAligner.build(teachers, self.model, images, detach_student=distill.mode == "measure")
        return Distillation(aligner, distill.mode, distill.weights)

    def _loader(self, dataset: Dataset) -> DataLoader:
        batch_size = self.config.data.eval_batch_size or self.config.data.batch_size
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=self.config.data.num_workers)

    def _loop(self, built: dict[str, Any], stop_signals: Sequence[int], show_progress: bool,
              extra_hooks: Sequence[Hook]) -> Loop:
        config, run = self.config, self.run
        hooks: list[Hook] = []
        if built["parallel"] is not None:
            hooks.append(DataParallelSetup(built["parallel"]))
        if built["distill"] is not None:
            hooks.append(built["distill"])
        logger = MetricsLogger(run.metrics, run.diagnostics, run.tensorboard, config.log_every)
        hooks += [logger, ProgressBar(config.name, config.method.name, show_progress)]
        if self.val_set is not None:
            hooks.append(Validation(self._loader(self.val_set), run.checkpoints, logger, config.baseline,
                                    config.evaluation.max_batches))
        self.checkpointing = Checkpointing(run.checkpoints, config.optim.checkpoint_every, config.seed, self._warn)
        self.final = FinalTest(config, run, self.info, lambda: build_split(config, "test", train=False),
                               lambda: build_specs(config, self.info, exact_edge=config.evaluation.exact_edge),
                               self._loader, logger, self.val_set is not None, self._warn)
        hooks += [self.checkpointing, self.final, *extra_hooks]
        optimization = built["optimization"]
        options = StepOptions(scheduler=optimization.scheduler, clip=list(self.model.parameters()),
                              max_norm=config.optim.grad_clip)
        epochs = EpochLoader(self.train_set, built["sampler"], config.data.num_workers, seed=config.seed,
                             pin_memory=self.device.type == "cuda", set_epoch=True)
        schedule = Schedule(built["total_steps"], config.optim.eval_every, config.diagnostics.every,
                            config.diagnostics.source)
        return Loop(model=self.model, balancer=self.balancer, optimizer=optimization.optimizer, step_options=options,
                    specs=self.specs, epochs=epochs, schedule=schedule, device=self.device, hooks=hooks,
                    amp=config.amp and self.device.type == "cuda", dist=self.dist, stop_signals=stop_signals,
                    console=self.console)

    def _prepare_directory(self, resume: bool) -> None:
        run = self.run
        existing = run.has_started()  # a run that stopped before its first step is started anew
        barrier(self.dist)  # every rank has looked before rank 0 writes the config of a new run
        if existing:
            if not resume:
                raise RunExistsError(f"{run.root} already holds a run: pass --resume to continue it, or choose another "
                                     "output")
            stored = load_config(run.config)
            if stored.threads is None:  # stored before runs stated their count: torch's default then, as now
                stored = stored.model_copy(update={"threads": self.config.threads})
            differences = config_differences(stored, self.config)
            if differences:
                raise ConfigError(f"cannot resume {run.root}: the config differs in {', '.join(differences)}")
        elif self.dist.is_main:
            atomic_write_text(run.config, dump_config(self.config))
        barrier(self.dist)

    def _write_failure(self, error: OSError) -> OSError:
        """A failed write into the run directory (a full disk, a read-only file system) as one line saying what,
        where, and which checkpoint is intact; any other OS error as it is."""
        if isinstance(error, WriteError):
            return error
        root = self.run.root.resolve()
        inside = error.filename is not None and Path(str(error.filename)).resolve().is_relative_to(root)
        if not inside and error.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG):
            return error
        where = f" {error.filename}" if error.filename is not None else f" into {self.run.root}"
        return WriteError(f"cannot write{where}: {describe_os_error(error)}; {ckpt.intact_note(self.run.checkpoints)}")

    def _warn(self, message: str) -> None:
        self.console.print(f"[yellow]warning:[/yellow] {message}", highlight=False, soft_wrap=True)


def train(config: RunConfig, out: Path, resume: bool = False, console: Console | None = None,
          show_progress: bool = True, also_stop_on: Sequence[int] = (), hooks: Sequence[Hook] = ()) -> RunResult | None:
    """Train one run into ``out`` (see :class:`Trainer`; ``hooks``: one's own, after the built-in ones); returns its
    final result (None on ranks other than 0). Raises :class:`~taskbalance.training.preemption.Preempted` when a stop
    signal ended it after a checkpoint."""
    return Trainer(config, out, resume=resume, console=console, show_progress=show_progress,
                   also_stop_on=also_stop_on, hooks=hooks).fit()
