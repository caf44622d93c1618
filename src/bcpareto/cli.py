"""Command-line interface: parses options, calls one library function, turns errors into messages."""

from __future__ import annotations

from pathlib import Path

import click

from . import __version__
from .audit import DEFAULT_DATA_DIR  # stdlib-only module: importing it keeps --help fast
from .errors import BcParetoError, DataError


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


@cli.group()
def data() -> None:
    """Check or download the blood-cell images."""


@data.command("check")
@click.argument("data_dir", metavar="[DIR]", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON instead of a table.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Threads reading images.")
def data_check(data_dir: Path | None, as_json: bool, workers: int | None) -> None:
    """Audit the data set in DIR (default: $BCPARETO_DATA, else data/blood-cells).

    Counts images per split and class; finds unreadable, truncated and non-image files, image
    sizes and modes, missing class folders, and byte-identical duplicates within and across splits.
    Exit code 0: usable; 1: not usable (problems listed); 2: DIR is not a data set.
    """
    import json

    from .audit import audit_dataset, default_data_dir, render_table

    root = data_dir if data_dir is not None else default_data_dir()
    try:
        report = audit_dataset(root, workers=workers)
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="DIR") from exc
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else render_table(report))
    if not report.usable:
        raise SystemExit(1)


@data.command("download")
@click.option(
    "--dest",
    type=click.Path(path_type=Path),
    default=DEFAULT_DATA_DIR,
    show_default=True,
    help="Where the images folder appears (a link into kagglehub's cache, or a copy).",
)
def data_download(dest: Path) -> None:
    """Fetch Kaggle's paultimothymooney/blood-cells with kagglehub and link its images to DEST."""
    import shlex

    from .audit import download_dataset

    try:
        path = download_dataset(dest=dest)
    except BcParetoError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Data set ready: {path} -> {path.resolve()}")
    if path == DEFAULT_DATA_DIR:
        click.echo("bcpareto finds it when run from this folder; from anywhere else, set:")
    else:
        click.echo(f"Pass --data-dir {shlex.quote(str(path))} to bcpareto, or set:")
    click.echo(f"BCPARETO_DATA={shlex.quote(str(path.resolve()))}")


def main() -> None:
    cli()
