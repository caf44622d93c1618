"""Command-line interface: parses options, calls one library function, turns errors into messages.

Heavy modules (TensorFlow, pandas, matplotlib, Optuna) are imported inside the commands, so
`bcpareto --help` starts fast.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from . import __version__, interrupts
from .backends import BackendError, check_backend, chosen_backend
from .dataset import DEFAULT_DATA_DIR  # stdlib-only module: importing it keeps --help fast
from .errors import (
    ArtefactError,
    BcParetoError,
    ColumnError,
    ConfigError,
    DataError,
    GridSpecError,
    StorageError,
    StrategyError,
    TrialFailed,
)
from .quiet import VERBOSE_ENV

# numpy's OpenBLAS keeps a pool of spinning threads that competes with the training step for the
# cores; the input pipeline's matrix products (zoom) are small. Before numpy loads: with 1 thread
# TensorFlow trained grid 0 of the edge grid at 366 images/s, with 2 at 215 (bench_backends.py).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

SAMPLER_CHOICES = ("grid", "random", "tpe", "nsga2", "gp")  # strategy.SAMPLERS (not imported: --help stays fast)


class WorkersType(click.ParamType):
    """--workers: a count of at least 1, or auto."""

    name = "workers"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) or str(value).strip().lower() == "auto":
            return value if isinstance(value, int) else "auto"
        try:
            number = int(str(value).strip())
        except ValueError:
            number = 0
        if number < 1:
            self.fail(f"{value!r} is not a number of workers: expected a whole number >= 1 or auto", param, ctx)
        return number


class BadInput(click.ClickException):
    """A file, cell or option the user must fix: exit code 2, like click's usage errors."""

    exit_code = 2


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Library errors -> messages: bad input exits 2, anything else the tool reports exits 1."""
    try:
        yield
    except (GridSpecError, ConfigError, ColumnError, DataError, StorageError, StrategyError,
            BackendError, ArtefactError) as exc:
        raise BadInput(str(exc)) from None
    except BcParetoError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="bcpareto")
@click.option("-v", "--verbose", is_flag=True,
              help="Show TensorFlow's, absl's and XLA's own start-up logs (hidden by default).")
def cli(verbose: bool) -> None:
    """Find the accuracy/size trade-off of small white-blood-cell CNNs.

    \b
    Typical use:
      bcpareto grid                      show the models hyper_parameters.xlsx describes
      bcpareto search --epochs 10        train them all, log metrics_log.csv
      bcpareto plot metrics_log.csv      Pareto front -> pareto_outputs/
    """
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # also for the worker processes of --workers N


def _preset_options(func: Any) -> Any:
    """Options shared by `grid` and `search`: the preset and the overrides that shape a model."""
    options = [
        click.option(
            "--config", "preset", default="default", show_default=True, metavar="NAME|FILE",
            help="Training preset: a name from configs/ (default, quick, seed, ...) or a .toml file.",
        ),
        click.option("--image-size", type=click.IntRange(min=8), help="Input side in pixels (overrides the preset)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


# Study names become folder names (runs/<study>) and database keys: a safe character set only.
STUDY_NAME_CHARS = "letters, digits, '.', '_' and '-', starting with a letter or digit, at most 100"


def _study_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    import re

    if value is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", value):
        raise click.BadParameter(f"{value!r}: expected {STUDY_NAME_CHARS} characters (e.g. cells-v1)")
    return value


def _study_option(help_text: str) -> Any:
    return click.option("--study", "study_name", metavar="NAME", callback=_study_name, help=help_text)


def _track_option(func: Any) -> Any:
    """--track, shared by `search` and `refine` (tracking.py parses it)."""
    return click.option(
        "--track", multiple=True, metavar="mlflow[:URI]|tensorboard[:DIR]",
        help="Also log every trained model to MLflow (a run per model: parameters, per-epoch and final "
        "metrics, its .keras/.tflite/.json files; default store sqlite <run-dir>/mlflow.db, needs "
        "pip install 'bcpareto[track]') or its per-epoch curve to TensorBoard event files [default "
        "DIR: <run-dir>/tensorboard]. Repeat for both.")(func)


def _grid_argument(func: Any) -> Any:
    return click.argument("xlsx", required=False, type=click.Path(dir_okay=False, path_type=Path))(func)


def _load(xlsx: Path | None, preset: str, **overrides: Any) -> tuple[Path, list[Any], Any]:
    from .config import load_config, resolve_grid
    from .gridspec import read_grid

    config = load_config(preset, **overrides)
    path = xlsx or resolve_grid(config)
    return path, read_grid(path), config


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

    from .gridspec import OPTIONAL_COLUMNS
    from .model import cost

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


def _tensorflow_process() -> None:
    """edge and export convert with TensorFlow's TFLite converter, whatever KERAS_BACKEND says
    (a model trained on JAX or PyTorch is a .keras file that TensorFlow loads alike)."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    if chosen_backend() != "tensorflow" or importlib.util.find_spec("tensorflow") is None:
        raise BackendError("converting to TFLite needs TensorFlow in this process; install it with: "
                           "pip install tensorflow")


def _h5_mb(point: Any, config: Any) -> float:
    from .backends import describe_devices
    from .model import build_model, h5_size_mb
    from .trial import compile_model

    describe_devices()
    model = build_model(point, config=config)
    compile_model(model, config, steps_per_epoch=1)
    return h5_size_mb(model)


@cli.command()
@_grid_argument
@_preset_options
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per model (overrides the preset).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size (overrides the preset).")
@click.option("--limit-per-class", type=click.IntRange(min=1), metavar="N",
              help="Use N images per class and split (a seeded sample), for quick runs.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Data set folder with TRAIN/ and TEST/ [default: $BCPARETO_DATA, else data/blood-cells].")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where metrics_log.csv, the study database and trained models go.")
@click.option("--storage", metavar="URL", envvar="BCPARETO_STORAGE", show_envvar=True,
              help="Optuna storage URL shared by workers, e.g. postgresql://user:pass@host/db "
              "[default: sqlite file bcpareto.db in --run-dir]. The password is never printed.")
@_study_option("Study name [default: from the sheet, preset and a hash of both, so the same "
               "command resumes]. Workers with the same --storage and --study share one grid.")
@click.option("--workers", type=WorkersType(), default="auto", show_default=True, metavar="N|auto",
              envvar="BCPARETO_WORKERS", show_envvar=True,
              help="Worker processes on this machine, each pinned to one GPU (round robin) when "
              "there are GPUs; on CPU they share the cores, one thread each. auto: one per GPU, "
              "else one per core (at most 4): on 2 cores, 2 workers of 1 thread trained 12-21% "
              "faster than 1 of 2 (benchmarks/bench_backends.py).")
@click.option("--worker-index", type=int, hidden=True)  # set by --workers on the processes it starts
@click.option("--request", "request_file", type=click.Path(dir_okay=False, path_type=Path),
              hidden=True)  # the workers' SearchRequest file (request.py), written by their parent
@click.option("--edge/--no-edge", "edge_metrics", default=None,
              help="Measure TFLite fp32/fp16/int8 sizes, int8 TEST accuracy and CPU latency per "
              "model [default: the preset's edge_metrics, on in every shipped preset].")
@click.option("--retry-failed", is_flag=True, help="Train again the points whose trial failed.")
@click.option("--repeats", type=click.IntRange(min=1, max=100), default=1, show_default=True, metavar="N",
              help="Train every grid point N times with different seeds (each exactly once, across "
              "workers); `bcpareto plot` then draws the mean with the spread as error bars. Raising N "
              "later trains only the new repeats.")
@click.option("--folds", type=int, metavar="K",
              help="Grouped, class-stratified K-fold cross-validation over TRAIN's source smears "
                   "(validation = \"cv\"): each grid point trains K times, once per fold, and "
                   "`bcpareto plot` gives intervals from the pooled out-of-fold predictions "
                   "[default: the preset's; 5 where validation = \"cv\"].")
@click.option("--json", "as_json", is_flag=True,
              help="Print the summary as JSON on stdout (progress goes to stderr), for scripts.")
@click.option("--on-bad-image", type=click.Choice(["skip", "fail"]), default="skip", show_default=True,
              help="Unreadable or truncated images: leave them out (listed once) or stop.")
@click.option("--teacher", metavar="GRID_ID|FILE.keras",
              help="Distil: train every model on its labels and this model's softened outputs on "
              "TRAIN (the preset's distill_weight and distill_temperature). A grid id finished in "
              "--run-dir (any study) or a .keras file; its input size must be the students'.")
@click.option("--sampler", type=click.Choice(SAMPLER_CHOICES), default="grid", show_default=True,
              help="grid: every row of the sheet. random, tpe (Bayesian, TPE), nsga2 (evolutionary) "
              "and gp (Gaussian process; pip install 'bcpareto[gp]') draw models from the workbook's "
              "'space' sheet, with both objectives as a real Pareto front.")
@click.option("--n-trials", type=click.IntRange(min=1), metavar="N",
              help="Sampled models in the study in all (stopped, infeasible and warm-start ones "
              "count; a proposal of a model the study has does not); the same command with a "
              "larger N continues.")
@click.option("--budget-minutes", type=click.FloatRange(min=0, min_open=True), metavar="M",
              help="Start no new model after M minutes of this command (the running one finishes).")
@click.option("--warm-start", is_flag=True,
              help="With a sampler: train the grid sheet's points first (the sampler learns from them).")
@click.option("--sampler-seed", type=click.IntRange(min=0, max=2**32 - 1), metavar="N",
              help="Seed of a sampler's draws [default: the preset's seed]. Another seed draws other "
              "models on the same data split and training seed, e.g. to see how much a search's "
              "result owes to chance; it continues the same study, so give each seed its own "
              "--run-dir or --study.")
@click.option("--fidelity", type=click.Choice(["none", "epochs", "folds", "epochs+folds"]), default="none",
              show_default=True,
              help="epochs: successive halving. At epochs min-epochs x eta^k each model is ranked "
              "against every model at that epoch (non-dominated sorting of validation accuracy and "
              "size, ties by hypervolume contribution); it trains on if it is on the front or in the "
              "top 1/eta, else it stops there (kept as 'stopped', never retried). folds (with "
              "--folds K): racing; before a grid point trains its next fold, a point no larger whose "
              "paired out-of-fold accuracy is better with the 90% interval above zero drops it.")
@click.option("--eta", type=click.IntRange(min=2), default=3, show_default=True,
              help="Successive halving: keep 1 model in eta at each rung.")
@click.option("--min-epochs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Successive halving: the first rung, in epochs.")
@click.option("--max-int8-mb", type=click.FloatRange(min=0, min_open=True), metavar="MB",
              help="Device limit: int8 TFLite file size. Measured on the untrained model before "
              "training; a model over it is recorded infeasible, not trained.")
@click.option("--max-macs", type=click.FloatRange(min=0, min_open=True), metavar="N",
              help="Device limit: multiply-adds per image (e.g. 5e6), checked before training.")
@click.option("--max-latency-ms", type=click.FloatRange(min=0, min_open=True), metavar="MS",
              help="Device limit: median int8 latency on this CPU, 1 thread (measured on the "
              "untrained int8 model before training).")
@_track_option
def search(
    xlsx: Path | None, preset: str, image_size: int | None, epochs: int | None,
    batch_size: int | None, limit_per_class: int | None, data_dir: Path | None, run_dir: Path,
    storage: str | None, study_name: str | None, workers: int | str, worker_index: int | None,
    edge_metrics: bool | None, retry_failed: bool, repeats: int, folds: int | None, as_json: bool,
    on_bad_image: str, teacher: str | None,
    sampler: str, n_trials: int | None, budget_minutes: float | None, warm_start: bool,
    sampler_seed: int | None, fidelity: str, eta: int, min_epochs: int, max_int8_mb: float | None,
    max_macs: float | None, max_latency_ms: float | None, track: tuple[str, ...], request_file: Path | None,
) -> None:
    """Train one CNN per grid point and log each to metrics_log.csv.

    Runs as an Optuna study on a storage file in --run-dir: run the same command again after an
    interruption and it trains only the points not yet completed. Uses the GPU when the Keras
    backend sees one (KERAS_BACKEND=tensorflow|jax|torch, TensorFlow by default). Any number of
    searches (--workers N here, more on other machines with a PostgreSQL --storage) share the
    study's grid: each point is trained once; a point whose worker dies is retried after its
    heartbeats stop (BCPARETO_GRACE_SECONDS, default 90).

    \b
    Protocol (every preset but seed): models are selected on val_accuracy, 15% of TRAIN's
    source smears (no smear on both sides); test_accuracy is TEST minus every image of a smear
    in TRAIN. The seed preset keeps the earlier protocol (TEST as validation data).

    \b
    Beyond the grid (a sheet named 'space' in the workbook, one row per parameter:
    name | low | high | log | choices; names: conv_blocks, base_filters, growth,
    first_kernel, kernel, dense_layers, dense_units, block, width, image_size, stem,
    last_stride):
      bcpareto search --sampler tpe --n-trials 30 --fidelity epochs --eta 3
      bcpareto search --sampler nsga2 --budget-minutes 45 --max-int8-mb 0.05
    """
    from .request import SearchRequest
    from .search import run_search
    from .storage import heartbeat_settings
    from .workers import STORAGE_ENV, auto_workers, search_in_workers

    say = _echo_to(as_json)
    with _errors():
        if request_file is not None:  # a worker of --workers N: its parent built and checked the request
            check_backend()
            request = SearchRequest.load(request_file, storage_url=os.environ.get(STORAGE_ENV))
            heartbeat_settings()
            interrupts.install()
            with _storage_faults(request):
                summary = run_search(request, estimate=False, worker_index=worker_index or 1, echo=say)
            _search_summary(summary, request, as_json=as_json, worker=True)
            return
        request, path, backend = _search_request(
            xlsx, preset=preset, image_size=image_size, epochs=epochs, batch_size=batch_size,
            limit_per_class=limit_per_class, data_dir=data_dir, run_dir=run_dir, storage=storage,
            study_name=study_name, edge_metrics=edge_metrics, retry_failed=retry_failed, repeats=repeats,
            folds=folds, on_bad_image=on_bad_image, teacher=teacher, sampler=sampler, n_trials=n_trials,
            budget_minutes=budget_minutes, warm_start=warm_start, sampler_seed=sampler_seed,
            fidelity=fidelity, eta=eta, min_epochs=min_epochs, max_int8_mb=max_int8_mb, max_macs=max_macs,
            max_latency_ms=max_latency_ms, track=track)
        heartbeat_settings()  # a bad BCPARETO_*_SECONDS stops here, before anything starts
        interrupts.install()  # Ctrl-C and a scheduler's SIGTERM stop the search cleanly
        _search_header(request, path=path, backend=backend, say=say)
        if workers == "auto":
            workers = auto_workers()
        with _storage_faults(request):
            if workers > 1:
                _finish_workers(search_in_workers(request, workers=workers, echo=say), run_dir=run_dir,
                                as_json=as_json)
                return
            summary = run_search(request, echo=say)
    _search_summary(summary, request, as_json=as_json)


def _search_request(xlsx: Path | None, *, preset: str, data_dir: Path | None, run_dir: Path, storage: str | None,
                    study_name: str | None, edge_metrics: bool | None, retry_failed: bool, repeats: int,
                    folds: int | None, on_bad_image: str, teacher: str | None, sampler: str,
                    n_trials: int | None, budget_minutes: float | None, warm_start: bool,
                    sampler_seed: int | None, fidelity: str, eta: int, min_epochs: int,
                    max_int8_mb: float | None, max_macs: float | None, max_latency_ms: float | None,
                    track: tuple[str, ...], **overrides: Any) -> tuple[Any, Path, str]:
    """The search's options as one checked SearchRequest (exit 2 before anything is created),
    with the sheet's path and the Keras backend."""
    from .dataset import default_data_dir
    from .request import SearchRequest, check_feature_maps
    from .tracking import parse_track

    tracking = parse_track(track, run_dir=run_dir)  # a bad --track stops here, nothing created
    backend = check_backend()  # KERAS_BACKEND: a typo or a missing package stops here
    if backend != "tensorflow":
        if edge_metrics:
            raise BadInput(f"--edge converts each model to TFLite in the training process, which "
                           f"needs TensorFlow; under KERAS_BACKEND={backend} leave it out and run "
                           "`bcpareto edge` afterwards (in a process with TensorFlow)")
        edge_metrics = False  # measured later by `bcpareto edge`
        if max_int8_mb is not None or max_latency_ms is not None:
            raise BadInput(f"--max-int8-mb and --max-latency-ms measure a TFLite conversion before "
                           f"training, which needs TensorFlow; under KERAS_BACKEND={backend} use "
                           "--max-macs, or search with the tensorflow backend")
    teacher_ref = None
    if teacher is not None:  # read-only: a bad id or path stops here, nothing created
        from .distill import resolve_teacher

        teacher_ref = resolve_teacher(teacher, run_dir=run_dir)
    path, points, config = _load(xlsx, preset, edge_metrics=edge_metrics, teacher=teacher_ref, folds=folds,
                                 validation="cv" if folds is not None else None, **overrides)
    if config.teacher is not None:
        from .distill import check_teacher

        check_teacher(config.teacher, config=config)
    strategy = _strategy(path, config=config, sampler=sampler, n_trials=n_trials,
                         budget_minutes=budget_minutes, warm_start=warm_start,
                         sampler_seed=sampler_seed, fidelity=fidelity, eta=eta, min_epochs=min_epochs,
                         max_int8_mb=max_int8_mb, max_macs=max_macs, max_latency_ms=max_latency_ms)
    try:  # without --warm-start a sampler trains none of the sheet's rows
        check_feature_maps(points if not strategy.sampled or strategy.warm_start else [], config=config)
    except TrialFailed as exc:
        raise BadInput(f"{path}: {exc}") from None
    request = SearchRequest(
        points=tuple(points), config=config, data_dir=data_dir or default_data_dir(), run_dir=run_dir,
        grid_name=path.name, storage_url=storage, study_name=study_name, retry_failed=retry_failed,
        repeats=repeats, on_bad_image=on_bad_image, strategy=strategy, tracking=tracking)
    return request, path, backend


def _search_header(request: Any, *, path: Path, backend: str, say: Callable[[str], None]) -> None:
    config, strategy = request.config, request.strategy
    say((f"Space: {path} ('space' sheet, {len(strategy.space.parameters)} parameters)"
         if strategy.sampled else f"Grid: {path} ({len(request.points)} points)")
        + f"; preset '{config.name}': {config.image_size}px {config.color_mode}"
        + (f" of a {config.cell_crop}-px window on each cell" if config.cell_crop else "")
        + f", {config.epochs} epoch(s), batch {config.batch_size}")
    if backend != "tensorflow":
        say(f"KERAS_BACKEND={backend}: models are saved without TFLite figures; "
            "`bcpareto edge` measures them afterwards (sizes, int8 TEST accuracy, latency)")
    if config.teacher is not None:
        say(f"Teacher: {config.teacher.label} ({config.teacher.path}, sha256 "
            f"{config.teacher.sha256}); distill_weight {config.distill_weight}, "
            f"distill_temperature {config.distill_temperature}")


@contextlib.contextmanager
def _storage_faults(request: Any) -> Iterator[None]:
    """Ctrl-C and a storage failing mid-search, in words (no traceback, no password)."""
    from .storage import default_storage_url, fault_line, redact

    try:
        yield
    except KeyboardInterrupt:
        click.echo("\nInterrupted: the running model is marked not completed; run the same "
                   "command again to resume.", err=True)
        sys.exit(interrupts.exit_code())
    except Exception as exc:
        if (type(exc).__module__.split(".")[0] not in ("sqlalchemy", "psycopg2", "psycopg")
                and type(exc).__name__ != "StorageInternalError"):  # optuna's wrapper of the same
            raise
        url = request.storage_url or default_storage_url(request.run_dir)
        raise click.ClickException(
            f"study storage {redact(url)}: {redact(fault_line(exc), url)}; the finished models are kept in "
            "it: once the storage answers again, the same command trains what is left") from None


def _search_summary(summary: Any, request: Any, *, as_json: bool, worker: bool = False) -> None:
    """The closing lines of a search (a worker of --workers N leaves the summary to its parent)."""
    csv_path = request.run_dir / "metrics_log.csv"
    if as_json:
        import dataclasses
        import json

        click.echo(json.dumps({**dataclasses.asdict(summary), "wall_seconds": round(summary.wall_seconds, 1),
                               "metrics_csv": str(csv_path)}, indent=2))
    elif worker:
        pass
    elif request.strategy.sampled:
        extra = [f"{n} {what}" for n, what in ((summary.stopped, "stopped by halving"),
                                              (summary.infeasible, "infeasible"),
                                              (summary.duplicates, "duplicates told, not trained")) if n]
        click.echo(f"Done: {summary.completed} model(s) completed in study '{summary.study_name}' "
                   f"({summary.trained_here} trained now{''.join(', ' + e for e in extra)}, "
                   f"{summary.wall_seconds:.0f} s); results in {csv_path}")
    else:
        per_point = summary.total // max(len(request.points), 1)
        noun = "grid points" if per_point == 1 else (
            f"models ({len(request.points)} grid points x {per_point} "
            + ("folds and seeds)" if request.config.validation == "cv" else "repeats)"))
        extra = [f"{n} {what}" for n, what in ((summary.stopped, "stopped by halving"),
                                              (summary.infeasible, "infeasible")) if n]
        click.echo(f"Done: {summary.completed}/{summary.total} {noun} completed in study "
                   f"'{summary.study_name}' ({summary.trained_here} trained now"
                   f"{''.join(', ' + e for e in extra)}, {summary.wall_seconds:.0f} s); results in {csv_path}")
    if summary.at_chance:
        click.echo(f"{len(summary.at_chance)} trained to no better than chance (kept in the CSV):\n  "
                   + "\n  ".join(summary.at_chance), err=True)
    if summary.failed:
        click.echo(f"{len(summary.failed)} failed:\n  " + "\n  ".join(summary.failed), err=True)
        sys.exit(1)


def _strategy(path: Path, *, config: Any, sampler: str, n_trials: int | None,
              budget_minutes: float | None, warm_start: bool, sampler_seed: int | None, fidelity: str,
              eta: int, min_epochs: int, max_int8_mb: float | None, max_macs: float | None,
              max_latency_ms: float | None) -> Any:
    """The search options as a Strategy, checked (exit 2 before anything is created)."""
    from .space import read_space
    from .strategy import Limits, Strategy, check_strategy

    space = read_space(path) if sampler != "grid" else None
    strategy = Strategy(
        sampler=sampler, space=space, n_trials=n_trials, budget_minutes=budget_minutes,
        warm_start=warm_start, eta=eta if "epochs" in fidelity else None, min_epochs=min_epochs,
        race="folds" in fidelity,
        limits=Limits(max_int8_mb=max_int8_mb, max_macs=max_macs, max_latency_ms=max_latency_ms),
        seed=config.seed if sampler_seed is None else sampler_seed,
    )
    check_strategy(strategy, sheet=str(path), epochs=config.epochs,
                   folds=config.folds if config.validation == "cv" else 0)
    if sampler_seed is not None and not strategy.sampled:
        raise BadInput("--sampler-seed seeds a sampler's draws; --sampler grid draws nothing (pass "
                       "--sampler random|tpe|nsga2|gp, or leave --sampler-seed out)")
    return strategy


def _echo_to(as_json: bool) -> Any:
    """Where a command's progress goes: stdout, or stderr when stdout carries its --json. A
    closed stdout (`| head`, a lost terminal) is said once on stderr; the command goes on."""
    from .progress import stdout_gone

    gone = False

    def say(line: str) -> None:
        nonlocal gone
        if gone:
            return
        try:
            click.echo(line, err=as_json)
        except (OSError, ValueError) as exc:  # BrokenPipeError, a closed file
            gone = True
            stdout_gone(exc)

    return say


def _finish_workers(outcome: Any, *, run_dir: Path, as_json: bool = False) -> None:
    """The summary line of `search --workers N`, and its exit code."""
    state = outcome.state
    if as_json:
        import json

        click.echo(json.dumps({
            "study_name": state.name, "completed": state.completed, "total": state.grid_size,
            "failed": list(state.failed), "remaining": state.remaining, "trained_now": outcome.trained_now,
            "workers": outcome.workers,
            "wall_seconds": round(outcome.wall_seconds, 1), "interrupted": bool(outcome.interrupted),
            "metrics_csv": str(run_dir / "metrics_log.csv")}, indent=2))
    else:
        click.echo(f"Done: {state.completed}/{state.grid_size} grid points completed, {len(state.failed)} "
                   f"failed, {state.remaining} remaining in study '{state.name}' ({outcome.trained_now} trained now, "
                   f"{outcome.workers} workers, {outcome.wall_seconds:.0f} s); results in {run_dir / 'metrics_log.csv'}")
    if outcome.interrupted:
        click.echo("Interrupted: running models are marked not completed; run the same command "
                   "again to resume.", err=True)
        sys.exit(interrupts.exit_code())
    if state.failed:
        click.echo(f"{len(state.failed)} failed:\n  " + "\n  ".join(state.failed), err=True)
    bad = [e for e in outcome.exits if e.returncode != 0]
    for e in bad:
        click.echo(f"worker {e.index} exited with code {e.returncode}", err=True)
    if bad:  # a worker exits 1 when a trial it ran failed, as a single search does
        sys.exit(1)


@cli.group()
def data() -> None:
    """Check or download the blood-cell images."""


@data.command("check")
@click.argument("data_dir", metavar="[DIR]", required=False, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print the audit as JSON instead of a table.")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Threads reading images.")
@click.option("--groups/--no-groups", default=True, show_default=True,
              help="Also recover the source groups (the augmented copies of one original smear; "
              "a few minutes the first time for 12.5k images, then cached) and count the TEST "
              "images that share a smear with TRAIN.")
@click.option("--contact-sheet", type=click.Path(dir_okay=False, path_type=Path), metavar="PNG",
              help="Save a contact sheet of 12 random source groups (one row each) to judge them by eye.")
def data_check(data_dir: Path | None, as_json: bool, workers: int | None, groups: bool,
               contact_sheet: Path | None) -> None:
    """Audit the data set in DIR (default: $BCPARETO_DATA, else data/blood-cells).

    Counts images per split and class; finds unreadable, truncated and non-image files, image
    sizes and modes, missing class folders, and byte-identical duplicates within and across splits;
    recovers the source groups. Exit code 0: usable; 1: not usable (problems listed); 2: DIR is
    not a data set.
    """
    import json

    from .audit import audit_dataset, group_files, render_groups, render_table
    from .dataset import default_data_dir

    root = data_dir if data_dir is not None else default_data_dir()
    if contact_sheet is not None:
        from .runs import check_creatable_dir

        with _errors():
            check_creatable_dir(contact_sheet.parent, option="--contact-sheet")
    try:
        report = audit_dataset(root, workers=workers)
    except DataError as exc:
        raise click.BadParameter(str(exc), param_hint="DIR") from exc
    summary = None
    if (groups or contact_sheet) and report.usable:
        from .groups import contact_sheet as draw_sheet
        from .groups import find_groups

        found = find_groups(group_files(report), progress=None if as_json else click.echo)
        summary = found.summary()
        if contact_sheet is not None:
            draw_sheet(found, contact_sheet)
    if as_json:
        click.echo(json.dumps({**report.to_dict(), "source_groups": summary}, indent=2))
    else:
        click.echo(render_table(report))
        if summary is not None:
            click.echo("\n" + render_groups(summary))
        if contact_sheet is not None and summary is not None:
            click.echo(f"Contact sheet: {contact_sheet}")
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

    from .download import download_dataset, present_dataset

    try:
        present = present_dataset(dest)
        path = present or download_dataset(dest=dest)
    except BcParetoError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Data set ready: {path} -> {path.resolve()}"
               + (" (already there; nothing downloaded)" if present else ""))
    if path == DEFAULT_DATA_DIR:
        click.echo("bcpareto finds it when run from this folder; from anywhere else, set:")
    else:
        click.echo(f"Pass --data-dir {shlex.quote(str(path))} to bcpareto, or set:")
    click.echo(f"BCPARETO_DATA={shlex.quote(str(path.resolve()))}")


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

    from .report import format_report, plot_report, report_to_dict
    from .runs import check_creatable_dir

    with _errors():
        check_creatable_dir(out_dir, option="--out")
        if budgets is not None and any(b <= 0 for b in budgets):
            raise click.BadParameter(f"{budgets}: expected positive sizes in MB", param_hint="--budgets")
        if len(csv_files) == 1 and x is None and y is None and z is None and not hv_seconds:
            from .cvreport import DEFAULT_BUDGETS, cv_report, format_cv_report, study_folder, write_cv_outputs
            from .cvreport import report_to_dict as cv_dict

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
            from .hvtrace import hv_seconds_report

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
    from .htmlreport import format_html_report, html_report

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
    from .cvreport import compare as compare_models
    from .cvreport import cv_report

    with _errors():
        click.echo(compare_models(cv_report(csv_file, study=study_name), a, b))


@cli.command("export")
@click.argument("grid_id", metavar="GRID_ID", type=click.IntRange(min=0))
@click.option("--format", "fmt", type=click.Choice(["keras", "tflite-fp32", "tflite-fp16", "tflite-int8"]),
              default="tflite-int8", show_default=True, help="What to write.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the model file and model_card.json.")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="The search's run directory.")
@_study_option("Study, when several trained this grid point.")
@click.option("--json", "as_json", is_flag=True, help="Print the files written as JSON.")
@click.option("--repeat", type=click.IntRange(min=0), default=0, show_default=True,
              help="Which run of the point, when the search ran with --repeats (0: the first).")
def export_command(
    grid_id: int, fmt: str, out_dir: Path, run_dir: Path, study_name: str | None, as_json: bool, repeat: int
) -> None:
    """Write the trained model of grid point GRID_ID for deployment, with a JSON model card.

    The card holds the class names in output order, input size and preprocessing, metrics and
    the split each comes from, file sizes, latency and how it was measured, and the training
    configuration.
    """
    from .export import export_trial
    from .quiet import import_tensorflow
    from .runs import check_creatable_dir, find_trial

    with _errors():
        _tensorflow_process()
        check_creatable_dir(out_dir, option="--out")
        trial = find_trial(run_dir, grid_id, study=study_name, repeat=repeat)
        trial.check()  # its files are the ones its record describes: before TensorFlow starts
        import_tensorflow()
        paths = export_trial(trial, fmt=fmt, out_dir=out_dir)
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
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The data set the model was trained on [default: $BCPARETO_DATA, else data/blood-cells].")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="The search's run directory.")
@click.option("--storage", metavar="URL", envvar="BCPARETO_STORAGE", show_envvar=True,
              help="The search's storage URL [default: bcpareto.db in --run-dir].")
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
    from .backends import describe_devices
    from .dataset import default_data_dir
    from .refine import refine as refine_model
    from .runs import find_trial
    from .request import check_data_dir
    from .tracking import parse_track

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

        from .report import json_value

        click.echo(json.dumps({"study": done.study, "grid_id": done.grid_id, "refined_from": grid_id,
                               "row": {k: json_value(v) for k, v in row.items()},
                               "metrics_csv": str(run_dir / "metrics_log.csv")}, indent=2))
        return
    click.echo(f"Done: grid point {done.grid_id} (refined from {grid_id}, {row['epochs']} epochs in all): "
               f"val_accuracy {row['val_accuracy']:.3f}, test_accuracy {row['test_accuracy']:.3f}"
               + (f", int8 TEST {row['int8_test_accuracy']:.3f}, int8 {row['tflite_int8_mb']:.4f} MB"
                  if "int8_test_accuracy" in row else "")
               + f"; in study '{done.study}' and {run_dir / 'metrics_log.csv'}")


@cli.command("edge")
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="The search's run directory (models under runs/).")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              help="The data set the models were trained on [default: $BCPARETO_DATA, else data/blood-cells].")
@click.option("--storage", metavar="URL", envvar="BCPARETO_STORAGE", show_envvar=True,
              help="The search's storage URL [default: bcpareto.db in --run-dir].")
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
    from .dataset import default_data_dir
    from .edge_fill import fill_edge
    from .quiet import import_tensorflow
    from .request import check_data_dir
    from .storage import check_storage_url, default_storage_url, open_storage

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
                               "metrics_csv": str(run_dir / "metrics_log.csv")}, indent=2, default=float))
    else:
        click.echo(f"Done: {len(filled)} model(s) measured; results in {run_dir / 'metrics_log.csv'}")
    if done.bad:  # exit 1: the good models are measured, these are not
        raise click.ClickException(f"{len(done.bad)} model(s) not measured, their files are bad:\n"
                                   + "\n".join(f"  {line}" for line in done.bad))


@cli.command()
@click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Where `bcpareto search` put its bcpareto.db.")
@click.option("--storage", metavar="URL", envvar="BCPARETO_STORAGE", show_envvar=True,
              help="Optuna storage URL [default: sqlite file bcpareto.db in --run-dir].")
@_study_option("Only this study [default: all].")
@click.option("--json", "as_json", is_flag=True, help="Print the studies as JSON, for scripts and dashboards.")
def status(run_dir: Path, storage: str | None, study_name: str | None, as_json: bool) -> None:
    """Completed, running, failed and remaining grid points of each study in the storage."""
    import dataclasses
    import json

    from .status import study_status
    from .storage import default_storage_url, redact

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


def main() -> None:
    cli()
