"""``taskbalance models``: the architectures and backbones ``build_model`` accepts, with parameter counts."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

models_app = typer.Typer(no_args_is_help=True, help="Architectures and backbones.")

#: The NYUD-v2 task set of the paper (semseg 40 classes, depth, normals, edges), used for the model counts.
NYUD_TASKS = {"semseg": 40, "depth": 1, "normals": 3, "edge": 1}


def register(app: typer.Typer) -> None:
    """Add the ``models`` command group to the main app."""
    app.add_typer(models_app, name="models")


def _millions(count: int) -> str:
    return f"{count / 1e6:.2f}M"


@models_app.command("list")
def list_models(
    counts: bool = typer.Option(
        True, help="Count parameters (models are built on the 'meta' device: no memory, no weights)."),
) -> None:
    """Print the architectures and backbones, with parameter counts (models for the NYUD-v2 tasks)."""
    import torch

    from taskbalance.models import available_backbones, build_backbone, build_model, count_parameters
    from taskbalance.models.backbones import backbone_spec
    from taskbalance.models.registry import ARCHITECTURES, compatible_backbones

    console = Console()
    backbones = Table("backbone", "family", "timm model", "parameters", "description", title="Backbones")
    for name in available_backbones():
        spec = backbone_spec(name)
        with torch.device("meta"):
            size = _millions(count_parameters(build_backbone(name))) if counts else "-"
        backbones.add_row(name, spec.family, spec.timm_name, size, spec.description)
    console.print(backbones)
    tasks = ", ".join(f"{t}:{c}" for t, c in NYUD_TASKS.items())
    archs = Table("architecture", "backbones", "model parameters", "description",
                  title=f"Architectures (tasks {tasks})")
    for name, arch in ARCHITECTURES.items():
        sizes = []
        for backbone in compatible_backbones(name):
            if backbone_spec(backbone).tiny or backbone == arch.default_backbone:
                with torch.device("meta"):
                    size = _millions(count_parameters(build_model(name, backbone, NYUD_TASKS))) if counts else "-"
                sizes.append(f"{backbone}: {size}")
        archs.add_row(name, ", ".join(compatible_backbones(name)), "\n".join(sizes), arch.description)
    console.print(archs)
    console.print("single-task twins: build_model(..., single_task=True) with one task (MTI-Net then self-distils)")
