"""Command-line interface: parses options, calls one library function, turns errors into messages."""

from __future__ import annotations

import click

from . import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="bcpareto")
def cli() -> None:
    """Find the accuracy/size trade-off of small white-blood-cell CNNs.

    \b
    Typical use:
      bcpareto grid                      show the models hyper_parameters.xlsx describes
      bcpareto search --epochs 10        train them all, log metrics_log.csv
      bcpareto plot metrics_log.csv      Pareto front -> pareto_outputs/
    """


def main() -> None:
    cli()
