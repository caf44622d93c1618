"""Command-line interface: parses options, calls one library function, turns errors into messages."""

from __future__ import annotations

from pathlib import Path

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


def _parse_floats(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> list[float] | None:
    """--ref X,Y[,Z] -> floats (click turns BadParameter into exit code 2)."""
    if value is None:
        return None
    try:
        return [float(part) for part in value.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"expected comma-separated numbers such as 12,0.2; got {value!r}"
        ) from None


@cli.command()
@click.argument(
    "csv_files", metavar="CSV...", nargs=-1, required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
)
@click.option("--x", "x", metavar="COL[:min|max]", default=None,
              help="X objective. Default: model_size(MB):min.")
@click.option("--y", "y", metavar="COL[:min|max]", default=None,
              help="Y objective. Default: test_accuracy:max if every CSV has it, "
                   "else val_accuracy:max.")
@click.option("--z", "z", metavar="COL[:min|max]", default=None,
              help="Optional third objective (e.g. latency_ms:min): 3-objective front, "
                   "shown as colour in three pairwise panels.")
@click.option("--ref", metavar="X,Y[,Z]", default=None, callback=_parse_floats,
              help="Hypervolume reference point in the objectives' own units. Default: worst "
                   "value of each objective over all rows + 10% of its range.")
@click.option("--out", "out_dir", default="pareto_outputs", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for pareto_front.png, .svg and .csv.")
def plot(csv_files: tuple[Path, ...], x: str | None, y: str | None, z: str | None,
         ref: list[float] | None, out_dir: Path) -> None:
    """Pareto front of one or more metrics CSVs (several overlay in one figure).

    \b
    Objectives are CSV columns, COL:min or COL:max; without a direction, columns
    named *accuracy* are maximised and others minimised. Examples:
      bcpareto plot metrics_log.csv
      bcpareto plot run10.csv run30.csv --y train_accuracy:max
      bcpareto plot metrics_log.csv --y test_accuracy --z latency_ms:min
    """
    from .errors import BcParetoError, ColumnError, ConfigError
    from .report import format_report, plot_report

    try:
        report = plot_report(csv_files, x=x, y=y, z=z, ref=ref, out_dir=out_dir)
    except (ColumnError, ConfigError) as error:
        raise click.UsageError(str(error)) from error
    except BcParetoError as error:
        raise click.ClickException(str(error)) from error
    click.echo(format_report(report))


def main() -> None:
    cli()
