"""A study's runs as submitit jobs: requeued through submitit's checkpointing protocol after a preemption signal
(resuming from the step where it came), and one SLURM job of N tasks with torch's distributed environment for a
run with N GPUs: the SLURM parameters, the exported variables, and a 2-task job of submitit's local executor on
Gloo that trains the same run as ``torchrun --nproc-per-node 2``."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import processes

submitit = pytest.importorskip("submitit")

from taskbalance.study.cluster import StudyJob, export_torch_environment  # noqa: E402
from taskbalance.study.executors import ClusterOptions, RunTask, build_backend  # noqa: E402
from taskbalance.training import loop  # noqa: E402
from taskbalance.training.checkpoint import find_checkpoint, verify_checkpoint  # noqa: E402
from taskbalance.training.presets import load_config  # noqa: E402

TINY = ["optim.iterations=8", "optim.eval_every=100", "optim.checkpoint_every=100000", "log_every=1",
        "data.batch_size=2", "data.eval_batch_size=8", "data.options.num_scenes=1", "data.options.views_per_scene=4",
        "data.options.resolution=[24,32]", "diagnostics.every=0", "tasks=[depth,normals]"]


def _task(tmp_path: Path, name: str = "uniform/seed-0") -> RunTask:
    config = load_config("quick", TINY)
    return RunTask(name, str(tmp_path / "out" / name), config, str(tmp_path / "out" / "logs" / f"{name}.log"))


def test_a_two_gpu_run_is_one_slurm_job_of_two_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from submitit.slurm.slurm import _make_sbatch_string

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # no srun here
    for gpus, tasks, cpus in ((2, 2, 4), (1, 1, 8), (0, 1, 8)):
        options = ClusterOptions(tmp_path / "jobs", gpus_per_job=gpus, cpus_per_job=8)
        assert (options.parameters()["tasks_per_node"], options.parameters()["cpus_per_task"]) == (tasks, cpus)
        slurm = build_backend("slurm", cluster=options).executor._executor  # type: ignore[attr-defined]
        text = _make_sbatch_string(command="CMD", folder=slurm.folder, **slurm.parameters)
        assert f"#SBATCH --ntasks-per-node={tasks}" in text and f"#SBATCH --cpus-per-task={cpus}" in text
        assert f"#SBATCH --gpus-per-node={gpus}" in text


def test_each_task_of_a_job_exports_torchs_distributed_environment(monkeypatch: pytest.MonkeyPatch):
    slurm_task = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_JOB_NUM_NODES": "1",
                  "SLURM_NODEID": "0", "SLURM_JOB_NODELIST": "gpu-node7", "SLURM_PROCID": "1", "SLURM_LOCALID": "1",
                  "CUDA_VISIBLE_DEVICES": "0,1"}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.setenv(key, "")  # recorded, so that what export() sets is undone after the test
        monkeypatch.delenv(key)
    for key, value in slurm_task.items():
        monkeypatch.setenv(key, value)
    assert export_torch_environment() == 1
    assert {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")} == {
        "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "gpu-node7"}
    assert 20000 <= int(os.environ["MASTER_PORT"]) <= 60000
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "0,1"  # every task sees the node's GPUs and takes cuda:LOCAL_RANK

    monkeypatch.setenv("SLURM_NTASKS", "1")  # a job of one task exports nothing
    monkeypatch.delenv("RANK")
    assert export_torch_environment() == 0 and "RANK" not in os.environ


def test_a_preempted_job_checkpoints_its_step_and_submitit_requeues_it_to_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")  # inside a (one-task) submitit job
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "17")
    task = _task(tmp_path)
    advance = loop.Loop._advance

    def preempt_at_step_five(self: loop.Loop) -> bool:
        if self.state.step + 1 == 5:
            os.kill(os.getpid(), signal.SIGUSR2)
        return advance(self)

    requeued = []

    def submitit_handler(signum: int, frame: object) -> None:
        """What submitit's handler does on its preemption signal: job.checkpoint(*args), requeue, exit."""
        last = find_checkpoint(Path(task.root) / "checkpoints", "last")
        assert last is not None and last.step == 5 and verify_checkpoint(last.path) is None  # the trainer saved first
        requeued.append(job.checkpoint(task))
        raise SystemExit(-1)

    job = StudyJob()
    previous = signal.signal(signal.SIGUSR2, submitit_handler)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(loop.Loop, "_advance", preempt_at_step_five)
            with pytest.raises(SystemExit):
                job(task)
        assert len(requeued) == 1 and requeued[0].function is job and requeued[0].args == (task,)
        assert requeued[0].result().error is None  # what the requeued job runs
    finally:
        signal.signal(signal.SIGUSR2, previous)
    log = Path(task.log)
    assert "stopped by SIGUSR2 after step 5" in log.with_name(log.name + ".1").read_text()  # kept
    assert f"resuming {task.root} from step 5/8" in " ".join(log.read_text().split())
    assert (Path(task.root) / "results.json").is_file()


@pytest.mark.slow
def test_a_two_task_submitit_job_trains_the_run_that_torchrun_trains(tmp_path: Path):
    task = _task(tmp_path)
    options = ClusterOptions(tmp_path / "jobs", gpus_per_job=2, cpus_per_job=2, time_min=10)
    backend = build_backend("submitit-local", jobs=1, cluster=options)
    with processes.reaped():  # submitit's local job and its 2 tasks do not outlive the test
        (job,) = backend.submit([task])
        outcome = job.result()
    assert outcome.error is None, outcome

    reference = tmp_path / "torchrun"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "--no-python",
               str(Path(sys.executable).with_name("taskbalance")), "train", "quick",
               *(a for s in TINY for a in ("--set", s)), "--out", str(reference), "--no-progress"]
    done = processes.run(command, tmp_path / "torchrun.out", timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.output

    runs = [Path(task.root), reference]
    weights = [load_file(find_checkpoint(run / "checkpoints", "last").weights) for run in runs]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:
        torch.testing.assert_close(weights[0][name], weights[1][name], rtol=1e-5, atol=1e-7, msg=name)
    configs = [load_config(run / "config.yaml") for run in runs]
    assert configs[0] == configs[1]  # the same run, trained by two processes in both cases
    assert Path(task.log + ".rank1").is_file()  # rank 1's output, apart from the run's log
