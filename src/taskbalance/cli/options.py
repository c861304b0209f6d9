"""Options shared by several commands, declared once."""

from __future__ import annotations

from typing import Annotated

import typer

#: ``--set key=value``: a config override.
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", "-s", help="override a config key: key=value (YAML value), repeatable")]
#: ``--plugin MODULE``: methods of one's own, imported before the command runs.
PluginOption = Annotated[list[str] | None, typer.Option(
    "--plugin", metavar="MODULE", help="import MODULE first: methods of one's own (docs/plugins.md), repeatable")]
