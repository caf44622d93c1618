"""`bcpareto export`, `refine`, `edge` and `status`: what is done with a search's run afterwards."""

from __future__ import annotations

from pathlib import Path

import click

from ..backends import check_backend
from .main import (
    _csv_name,
    _data_dir_option,
    _echo_to,
    _errors,
    _run_dir_option,
    _storage_option,
    _study_option,
    _tensorflow_process,
    _track_option,
    cli,
)


@cli.command("export")
@click.argument("grid_id", metavar="GRID_ID", type=click.IntRange(min=0))
@click.option("--format", "fmt", type=click.Choice(["keras", "tflite-fp32", "tflite-fp16", "tflite-int8"]),
              default="tflite-int8", show_default=True, help="What to write.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the model file and model_card.json.")
@_run_dir_option("The search's run directory.")
@_study_option("Study, when several trained this grid point.")
@click.option("--json", "as_json", is_flag=True, help="Print the files written as JSON.")
@click.option("--repeat", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which run of the point, when the search ran with --repeats (0: the first).")
@_track_option
def export_command(
    grid_id: int, fmt: str, out_dir: Path, run_dir: Path, study_name: str | None, as_json: bool, repeat: int,
    track: tuple[str, ...],
) -> None:
    """Write the trained model of grid point GRID_ID for deployment, with a JSON model card.

    The card holds the class names in output order, input size and preprocessing, metrics and
    the split each comes from, file sizes, latency and how it was measured, and the training
    configuration.
    """
    from ..export import export_trial
    from ..quiet import import_tensorflow
    from ..runs import check_creatable_dir, find_trial
    from ..tracking import open_tracker, parse_track

    with _errors():
        tracking = parse_track(track, run_dir=run_dir)  # a bad --track stops here, nothing written
        _tensorflow_process()
        check_creatable_dir(out_dir, option="--out")
        trial = find_trial(run_dir, grid_id, study=study_name, repeat=repeat)
        trial.check()  # its files are the ones its record describes: before TensorFlow starts
        import_tensorflow()
        paths = export_trial(trial, fmt=fmt, out_dir=out_dir)
        if tracking.any():  # the file and its model card, beside the model's MLflow run
            open_tracker(tracking, run_dir=run_dir, study=trial.study, echo=_echo_to(as_json),
                         announce=False).log_export(trial.keras_model.stem, paths)
    if as_json:
        import json

        click.echo(json.dumps({"study": trial.study, "grid_id": grid_id, "repeat": repeat, "format": fmt,
                               "files": [{"path": str(p), "bytes": p.stat().st_size} for p in paths]}, indent=2))
        return
    for path in paths:
        click.echo(f"wrote {path} ({path.stat().st_size / 2**20:.3f} MB)")


@cli.command()
@click.argument("grid_id", metavar="GRID_ID", type=click.IntRange(min=0))
@click.option("--epochs", type=click.IntRange(min=1), required=True, help="Epochs of further training.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True),
              help="Peak learning rate of the fresh schedule [default: the model's preset's].")
@_data_dir_option("The data set the model was trained on [default: $BCPARETO_DATA, else data/blood-cells].")
@_run_dir_option("The search's run directory.")
@_storage_option("The search's storage URL [default: bcpareto.db in --run-dir].")
@_study_option("Study of GRID_ID, needed only when several studies in --run-dir have it.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the new model's row as JSON on stdout (progress goes to stderr).")
@click.option("--repeat", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which run of the point (with --repeats).")
@_track_option
def refine(grid_id: int, epochs: int, learning_rate: float | None, data_dir: Path | None, run_dir: Path,
           storage: str | None, study_name: str | None, repeat: int, as_json: bool,
           track: tuple[str, ...]) -> None:
    """Train model GRID_ID further from its saved file and record it as a new model.

    A fresh optimizer and learning-rate schedule over --epochs (the preset's, with its cosine
    decay), the same TRAIN/validation split, then the same measures as any model: TEST, TFLite
    sizes, int8 TEST accuracy, latency. The new row gets the next free grid id of the study and
    names its parent (parent_grid_id); `bcpareto plot` and `export` take it like any other.
    """
    from ..backends import describe_devices
    from ..dataset import default_data_dir
    from ..refine import refine as refine_model
    from ..request import check_data_dir
    from ..runs import find_trial
    from ..tracking import parse_track

    with _errors():
        tracking = parse_track(track, run_dir=run_dir)
        check_backend()
        find_trial(run_dir, grid_id, study=study_name, repeat=repeat).check()  # a bad id or file: before TF starts
        check_data_dir(data_dir or default_data_dir())
        say = _echo_to(as_json)
        say(f"Backend: {describe_devices()}")
        done = refine_model(run_dir, grid_id, epochs=epochs, data_dir=data_dir or default_data_dir(),
                            study=study_name, repeat=repeat, learning_rate=learning_rate,
                            storage_url=storage, tracking=tracking, echo=say)
    row = done.row
    if as_json:
        import json

        from ..report import json_value

        click.echo(json.dumps({"study": done.study, "grid_id": done.grid_id, "refined_from": grid_id,
                               "row": {k: json_value(v) for k, v in row.items()},
                               "metrics_csv": str(run_dir / _csv_name())}, indent=2))
        return
    click.echo(f"Done: grid point {done.grid_id} (refined from {grid_id}, {row['epochs']} epochs in all): "
               f"val_accuracy {row['val_accuracy']:.3f}, test_accuracy {row['test_accuracy']:.3f}"
               + (f", int8 TEST {row['int8_test_accuracy']:.3f}, int8 {row['tflite_int8_mb']:.4f} MB"
                  if "int8_test_accuracy" in row else "")
               + f"; in study '{done.study}' and {run_dir / _csv_name()}")


@cli.command("edge")
@_run_dir_option("The search's run directory (models under runs/).")
@_data_dir_option("The data set the models were trained on [default: $BCPARETO_DATA, else data/blood-cells].")
@_storage_option("The search's storage URL [default: bcpareto.db in --run-dir].")
@_study_option("Only this study [default: every study in the storage].")
@click.option("--json", "as_json", is_flag=True,
              help="Print the models measured as JSON on stdout (progress goes to stderr).")
def edge_command(run_dir: Path, data_dir: Path | None, storage: str | None, study_name: str | None,
                 as_json: bool) -> None:
    """Measure the TFLite figures of models trained without them (search --no-edge).

    Every completed model without TFLite columns is loaded from its .keras file, converted to
    fp32/fp16/int8 exactly as a search does, scored on TEST (int8) and timed; the figures go
    into the study, its record and metrics_log.csv, and its int8 file beside the model, so
    `plot --x tflite_int8_mb` and `export --format tflite-int8` work as for any model. A model
    whose files are missing, changed or unreadable is skipped and listed at the end (exit 1).
    """
    from ..dataset import default_data_dir
    from ..edge_fill import fill_edge
    from ..quiet import import_tensorflow
    from ..request import check_data_dir
    from ..storage import check_storage_url, default_storage_url, open_storage

    with _errors():
        _tensorflow_process()
        url = storage or default_storage_url(run_dir)
        check_storage_url(url)
        open_storage(url, must_exist=True)  # no storage, no study: said before TensorFlow starts
        check_data_dir(data_dir or default_data_dir())
        say = _echo_to(as_json)
        say(f"Device: {import_tensorflow()}")
        done = fill_edge(run_dir, data_dir=data_dir or default_data_dir(), storage_url=storage,
                         study_name=study_name, echo=say)
    filled = done.filled
    if as_json:
        import dataclasses
        import json

        click.echo(json.dumps({"measured": [dataclasses.asdict(f) for f in filled], "not_measured": done.bad,
                               "metrics_csv": str(run_dir / _csv_name())}, indent=2, default=float))
    else:
        click.echo(f"Done: {len(filled)} model(s) measured; results in {run_dir / _csv_name()}")
    if done.bad:  # exit 1: the good models are measured, these are not
        raise click.ClickException(f"{len(done.bad)} model(s) not measured, their files are bad:\n"
                                   + "\n".join(f"  {line}" for line in done.bad))


@cli.command()
@_run_dir_option("Where `bcpareto search` put its bcpareto.db.")
@_storage_option("Optuna storage URL [default: sqlite file bcpareto.db in --run-dir].")
@_study_option("Only this study [default: all].")
@click.option("--json", "as_json", is_flag=True, help="Print the studies as JSON, for scripts and dashboards.")
def status(run_dir: Path, storage: str | None, study_name: str | None, as_json: bool) -> None:
    """Completed, running, failed and remaining grid points of each study in the storage."""
    import dataclasses
    import json

    from ..status import study_status
    from ..storage import default_storage_url, redact

    url = storage or default_storage_url(run_dir)
    with _errors():
        studies = study_status(url, study_name=study_name)
    if as_json:
        click.echo(json.dumps({"storage": redact(url), "studies": [
            {**dataclasses.asdict(s), "remaining": s.remaining} for s in studies
        ]}, indent=2))
        return
    click.echo(f"Storage: {redact(url)}")
    if not studies:
        click.echo("  no studies yet")
    for s in studies:
        noun = "grid points" if s.sampler == "grid" else f"models sampled by {s.sampler}"
        extra = "".join(f", {len(v)} {k}" for k, v in (("stopped", s.stopped), ("infeasible", s.infeasible)) if v)
        extra += f", {s.duplicates} duplicate(s) not trained" if s.duplicates else ""
        click.echo(f"Study '{s.name}'" + (f" ({s.grid})" if s.grid else "") + f": {s.grid_size} {noun}: "
                   f"{s.completed} completed, {len(s.running)} running, {len(s.failed)} "
                   f"failed{extra}, {s.waiting} waiting; {s.remaining} remaining")
        for label, lines in (("running", s.running), ("failed", s.failed), ("stopped", s.stopped),
                             ("infeasible", s.infeasible)):
            for line in lines:
                click.echo(f"  {label:<8} {line}")
        if s.retried:
            click.echo(f"  {s.retried} earlier attempt(s) failed and were queued again "
                       "(worker killed or interrupted)")
    if any(s.failed for s in studies):
        click.echo("Failed points stay failed: `bcpareto search --retry-failed` trains them again.")
