"""Start-up cost of the command line: ``taskbalance --help`` and ``taskbalance toy --help`` must not import torch
(about 10 s of CPU on two cores once torchvision, timm and torch._dynamo come with it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "timm", "scipy", "matplotlib", "pyEdgeEval", "cv2")

_PROBE = """
import sys
{code}
print("HEAVY:" + ",".join(m for m in {heavy!r} if m in sys.modules))
"""


def _heavy_modules_after(code: str) -> list[str]:
    """The heavy modules a fresh interpreter has imported after running ``code``."""
    probe = _PROBE.format(code=code, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=300)
    line = next(line for line in done.stdout.splitlines() if line.startswith("HEAVY:"))
    return [m for m in line[len("HEAVY:"):].split(",") if m]


def test_importing_the_cli_imports_no_heavy_module():
    assert _heavy_modules_after("import taskbalance.cli.main") == []


@pytest.mark.parametrize("args", [["--help"], ["toy", "--help"], ["data", "--help"], ["train", "--help"]])
def test_help_imports_no_heavy_module(args):
    code = f"""
import sys
from taskbalance.cli.main import app
sys.argv = ["taskbalance", *{args!r}]
try:
    app()
except SystemExit:
    pass
"""
    assert _heavy_modules_after(code) == []


def test_lazy_package_exports_still_resolve():
    import taskbalance
    import taskbalance.data as data

    assert taskbalance.balancers.get("uniform").name == "uniform"
    assert data.build_dataset.__module__ == "taskbalance.data.registry"
    assert "build_dataset" in dir(data) and "build_dataset" in data.__all__
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        data.nothing  # noqa: B018


def test_describing_the_synthetic_split_imports_torch_only():
    """``data info`` neither renders (tests/test_data_cli.py) nor loads torchvision, scipy, pyEdgeEval or cv2."""
    code = "from taskbalance.data.describe import describe_dataset\nassert describe_dataset('synthetic')[1] == 24 * 16"
    assert _heavy_modules_after(code) == ["torch"]
