"""benchmarks/gpu_check.sh runs end to end on the CPU (``--device cpu --quick``) and writes one Markdown report."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

import processes

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(900)  # the script's own bound (600 s) reports first, with its output
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_gpu_check_runs_on_the_cpu_in_quick_mode(tmp_path: Path) -> None:
    out = tmp_path / "gpu.md"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHON": sys.executable, "TASKBALANCE": str(bin_dir / "taskbalance"), "OMP_NUM_THREADS": "1"}
    command = ["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--device", "cpu", "--quick", "--out", str(out)]
    done = processes.run(command, tmp_path / "gpu_check.out", timeout=600, env=env, cwd=ROOT)
    assert done.returncode == 0, done.output[-5000:]
    report = out.read_text()
    for heading in ("## 1. Same direction", "## 2. 3 steps at 48x64", "## 3. Step time", "## 4. Two-process"):
        assert heading in report
    assert "methods agree on cpu and cpu to 1e-05" in report
    assert report.count("passed (exit 0") == 4  # parity, the bf16 run, the fp16 check, step time for one model
    assert "**0 check(s) failed.**" in report
