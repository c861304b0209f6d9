"""Entry point of the ``taskbalance`` command: collects the command groups."""

import typer

from taskbalance.cli import data, doctor, models, protocol, results, study, toy, train
from taskbalance.cli.failure import EXIT_STATUS_HELP

app = typer.Typer(no_args_is_help=True, add_completion=False, epilog=EXIT_STATUS_HELP,
                  help="Multi-task balancing, diagnostics and the imbalance study.")

for group in (toy, results, data, models, train, study, doctor, protocol):
    group.register(app)


def main() -> None:
    """Run the CLI."""
    app()
