"""``taskbalance models list``."""

from __future__ import annotations

from typer.testing import CliRunner

from taskbalance.cli.main import app
from taskbalance.models import available_architectures, available_backbones


def test_models_list_names_every_architecture_and_backbone() -> None:
    result = CliRunner().invoke(app, ["models", "list", "--no-counts"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    for name in [*available_architectures(), *available_backbones(), "hrnet_w18_small_v2", "samvit_base_patch16"]:
        assert name in result.output
