"""`bcpareto grid`, `plot`, `report` and `compare`: what a sheet expands to and what a run found."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from ..errors import (
    ColumnError,
    TrialFailed,
)
from .main import _errors, _grid_argument, _load, _preset_options, _study_option, cli


@cli.command()
@_grid_argument
@_preset_options
@click.option("--h5", is_flag=True, help="Also build each model and measure its .h5 size the earlier "
              "way (MiB, right after compile): the seed logs' model_size(MB). Needs TensorFlow.")
@click.option("--json", "as_json", is_flag=True, help="Print the grid as JSON (one object per point).")
def grid(xlsx: Path | None, preset: str, image_size: int | None, h5: bool, as_json: bool) -> None:
    """Print the grid XLSX expands to (default: the preset's grid, else hyper_parameters.xlsx).

    One line per model, without training: id, dense layers, neurons, filters, kernel sizes,
    parameter count, float32 size in MiB and multiply-adds per image at the preset's input size.
    """
    import json

    from ..gridspec import OPTIONAL_COLUMNS
    from ..model import cost

    with _errors():
        path, points, config = _load(xlsx, preset, image_size=image_size)
        entries = []
        for point in points:
            entry: dict[str, Any] = point.params()
            try:
                c = cost(point, image_size=config.at(point).image_size, channels=config.channels, padding=config.padding)
            except TrialFailed as exc:
                entry["collapses"] = str(exc).split("; ")[-1]
            else:
                entry.update(n_params=c.n_params, float32_mb=c.float32_mb, macs=c.macs)
                if h5:
                    entry["h5_mb"] = _h5_mb(point, config)
            entries.append(entry)
    if as_json:
        click.echo(json.dumps({"grid": str(path), "preset": config.name, "image_size": config.image_size,
                               "channels": config.channels, "padding": config.padding,
                               "points": entries}, indent=2))
        return
    own = " (or the sheet's image_size where a row gives one)" if any(p.image_size for p in points) else ""
    click.echo(f"{path}: {len(points)} grid points at {config.image_size}x{config.image_size}"
               f"x{config.channels}{own} (preset '{config.name}', padding '{config.padding}')")
    header = (f"{'id':>3} {'dense':>5}  {'neurons':<28} {'filters':<28} {'kernels':<14} {'n_params':>10} "
              f"{'f32_mb':>7} {'MMACs':>8}")
    click.echo(header + ("  h5_mb" if h5 else ""))
    for e in entries:
        line = f"{e['grid_id']:>3} {e['dense_layers']:>5}  {e['neurons']:<28} {e['filters']:<28} {e['kernel_sizes']:<14}"
        blocks = " ".join(f"{k}={e[k]}" for k in OPTIONAL_COLUMNS if k in e)  # only when not the earlier model
        if "collapses" in e:
            click.echo(f"{line} collapses: {e['collapses']}")
            continue
        line += f" {e['n_params']:>10,} {e['float32_mb']:>7.3f} {e['macs'] / 1e6:>8.1f}"
        click.echo(line + (f"  {e['h5_mb']:.3f}" if h5 else "") + (f"  {blocks}" if blocks else ""))


def _h5_mb(point: Any, config: Any) -> float:
    from ..backends import describe_devices
    from ..model import build_model, h5_size_mb
    from ..trial import compile_model

    describe_devices()
    model = build_model(point, config=config)
    compile_model(model, config, steps_per_epoch=1)
    return h5_size_mb(model)


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
              help="Y objective. Default: val_accuracy:max (models are chosen on validation; "
                   "the front table adds their TEST columns), else test_accuracy:max for CSVs "
                   "without it.")
@click.option("--z", "z", metavar="COL[:min|max]", default=None,
              help="Optional third objective (e.g. latency_ms:min): 3-objective front, "
                   "shown as colour in three pairwise panels.")
@click.option("--ref", metavar="X,Y[,Z]", default=None, callback=_parse_floats,
              help="Hypervolume reference point in the objectives' own units. Default: worst "
                   "value of each objective over all rows + 10% of its range.")
@click.option("--out", "out_dir", default="pareto_outputs", show_default=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Folder for pareto_front.png, .svg and .csv.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the report (front rows, hypervolume, files written) as JSON.")
@click.option("--hv-seconds", is_flag=True,
              help="Also draw hypervolume against cumulative training seconds, one line per search "
              "(CSV x study), against one shared reference point (hv_seconds.png), and print the "
              "minutes each needed to reach 95% and 98% of the best volume.")
@click.option("--seconds-column", default="train_seconds", show_default=True, metavar="COL",
              help="With --hv-seconds: the seconds each trial spent (wall_seconds for logs made "
              "before train_seconds existed; it adds evaluation and TFLite time).")
@click.option("--choose", type=click.Choice(["one-se", "best"]), default="one-se", show_default=True,
              help="For a run with kept predictions: at each size budget, the smallest model within "
                   "one standard error of the best (one-se, Breiman et al.), or the best.")
@click.option("--budgets", metavar="MB[,MB...]", default=None, callback=_parse_floats,
              help="Size budgets (int8 MB) of the choice [default: 0.02,0.1; any size is always added].")
@_study_option("For a run with kept predictions: the study, when the CSV holds several.")
def plot(csv_files: tuple[Path, ...], x: str | None, y: str | None, z: str | None,
         ref: list[float] | None, out_dir: Path, as_json: bool, hv_seconds: bool,
         seconds_column: str, choose: str, budgets: list[float] | None, study_name: str | None) -> None:
    """Pareto front of one or more metrics CSVs (several overlay in one figure).

    \b
    A run whose search kept its predictions (runs/<study>/ beside the CSV; every search does,
    cross-validation with --folds K gives the most) is judged with intervals: each model's CV
    and TEST accuracy with a 90% group-bootstrap interval, its probability of being on the
    front, and the --choose model at each size budget (cv_models.csv, pareto_front.csv/.png).

    \b
    Objectives are CSV columns, COL:min or COL:max; without a direction, columns
    named *accuracy* are maximised and others minimised. Examples:
      bcpareto plot metrics_log.csv
      bcpareto plot run10.csv run30.csv --y train_accuracy:max
      bcpareto plot metrics_log.csv --y test_accuracy --z latency_ms:min
      bcpareto plot grid/metrics_log.csv tpe/metrics_log.csv --hv-seconds
    """
    import json

    from ..report import format_report, plot_report, report_to_dict
    from ..runs import check_creatable_dir

    with _errors():
        check_creatable_dir(out_dir, option="--out")
        if budgets is not None and any(b <= 0 for b in budgets):
            raise click.BadParameter(f"{budgets}: expected positive sizes in MB", param_hint="--budgets")
        if len(csv_files) == 1 and x is None and y is None and z is None and not hv_seconds:
            from ..cvreport import (
                DEFAULT_BUDGETS,
                cv_report,
                format_cv_report,
                study_folder,
                write_cv_outputs,
            )
            from ..cvreport import report_to_dict as cv_dict

            if study_folder(csv_files[0], study_name) is not None:
                cv = cv_report(csv_files[0], study=study_name, rule=choose,
                               budgets=budgets if budgets is not None else DEFAULT_BUDGETS)
                outputs = write_cv_outputs(cv, out_dir)
                if as_json:
                    click.echo(json.dumps({**cv_dict(cv), "outputs": [str(p) for p in outputs]}, indent=2))
                else:
                    click.echo(format_cv_report(cv))
                    click.echo("Wrote " + ", ".join(str(p) for p in outputs))
                return
        report = plot_report(csv_files, x=x, y=y, z=z, ref=ref, out_dir=out_dir)
        hv = None
        if hv_seconds:
            from ..hvtrace import hv_seconds_report

            columns = [o.column for o in report.objectives]
            if z is not None or [o.direction for o in report.objectives] != ["min", "max"]:
                raise ColumnError("--hv-seconds draws two objectives, x to minimise and y to maximise "
                                  f"(got {', '.join(columns)}); leave out --z")
            hv = hv_seconds_report(csv_files, out=out_dir / "hv_seconds.png", x=columns[0], y=columns[1],
                                   seconds=seconds_column)
    if as_json:
        data = report_to_dict(report)
        if hv is not None:
            data["hv_seconds"] = {"figure": str(hv[0]), "reach": hv[1]}
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(format_report(report))
    if hv is not None:
        click.echo(f"Hypervolume against training time ({hv[0]}), time to reach a share of the best volume:")
        for line in hv[1]:
            click.echo(f"  {line}")


@cli.command("report")
@click.argument("run", metavar="RUN", type=click.Path(exists=True, path_type=Path))
@click.option("--out", default="report.html", show_default=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The HTML file to write.")
@click.option("--data-check", "data_check", metavar="JSON", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A `bcpareto data check --json` output (or a source-group summary) to include "
                   "[default: RUN/data_check.json when there].")
@_study_option("The study, when the CSV holds several.")
def report_command(run: Path, out: Path, data_check: Path | None, study_name: str | None) -> None:
    """One self-contained HTML file of a run: front, its table, every model, the machine.

    \b
    RUN is a run folder (metrics_log.csv and runs/<study>/) or a metrics CSV alone. The file
    holds the front (with per-model intervals when the run kept predictions), the front's table
    (chosen on validation, quoted on TEST), per model its TEST confusion matrix, per-class recall
    and learning curve, the data check when given, the machine and the time spent. Everything
    is inline: it opens offline. Never imports TensorFlow.
    """
    from ..htmlreport import format_html_report, html_report

    with _errors():
        click.echo(format_html_report(html_report(run, out=out, study=study_name, data_check=data_check)))


@cli.command()
@click.argument("csv_file", metavar="CSV", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("a", metavar="A", type=click.IntRange(min=0))
@click.argument("b", metavar="B", type=click.IntRange(min=0))
@_study_option("The study, when the CSV holds several with kept predictions.")
def compare(csv_file: Path, a: int, b: int, study_name: str | None) -> None:
    """Compare grid points A and B of a run in words and numbers.

    Each model's CV and TEST accuracy (float and int8) with 90% intervals, then A minus B on
    the same images, resampled by source smear (paired), with P(A better). "Better" is said only
    where the interval of the difference excludes zero; otherwise "not shown".

    \b
      bcpareto compare metrics_log.csv 3 7
    """
    from ..cvreport import compare as compare_models
    from ..cvreport import cv_report

    with _errors():
        click.echo(compare_models(cv_report(csv_file, study=study_name), a, b))
