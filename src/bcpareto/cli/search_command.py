"""`bcpareto search`: its options as one checked SearchRequest (request.py), then one search
or --workers N of them (workers.py), and the closing summary."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import click

from .. import interrupts
from ..backends import check_backend
from ..errors import (
    TrialFailed,
)
from .main import (
    SAMPLER_CHOICES,
    BadInput,
    WorkersType,
    _csv_name,
    _data_dir_option,
    _echo_to,
    _errors,
    _grid_argument,
    _load,
    _preset_options,
    _run_dir_option,
    _storage_option,
    _study_option,
    _track_option,
    cli,
)


@cli.command()
@_grid_argument
@_preset_options
@click.option("--epochs", type=click.IntRange(min=1), help="Epochs per model (overrides the preset).")
@click.option("--batch-size", type=click.IntRange(min=1), help="Batch size (overrides the preset).")
@click.option("--limit-per-class", type=click.IntRange(min=1), metavar="N",
              help="Use N images per class and split (a seeded sample), for quick runs.")
@_data_dir_option("Data set folder with TRAIN/ and TEST/ [default: $BCPARETO_DATA, else data/blood-cells].")
@_run_dir_option("Where metrics_log.csv, the study database and trained models go.")
@_storage_option("Optuna storage URL shared by workers, e.g. postgresql://user:pass@host/db "
                 "[default: sqlite file bcpareto.db in --run-dir]. The password is never printed.")
@_study_option("Study name [default: from the sheet, preset and a hash of both, so the same "
               "command resumes]. Workers with the same --storage and --study share one grid.")
@click.option("--workers", type=WorkersType(), default="auto", show_default=True, metavar="N|auto",
              envvar="BCPARETO_WORKERS", show_envvar=True,
              help="Worker processes on this machine, each pinned to one GPU (round robin) when "
              "there are GPUs; on CPU they share the cores, one thread each. auto: one per GPU, "
              "else one per core (at most 4): on 2 cores, 2 workers of 1 thread trained 12-21% "
              "faster than 1 of 2 (benchmarks/bench_backends.py).")
@click.option("--pack", type=click.IntRange(min=1), default=1, show_default=True, metavar="M",
              help="Train up to M waiting models of one grid point (its folds and repeats) as one "
              "packed model, on one stream of batches decoded and augmented once; each is saved, "
              "measured and logged as if trained alone (not with a sampler, --fidelity or "
              "--teacher). Off by default: on 2 CPU cores, packing the 5 fold models of each "
              "edge-grid point (conv nets, 48 px) took 1.5x the training seconds of training them "
              "one at a time (2026-12-07/08, docs/results/cross-validation.md); it paid for the small "
              "separable nets at 96 px (benchmarks/bench_packed.py). A GPU is not measured yet.")
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
    pack: int,
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
    from ..request import SearchRequest
    from ..search import run_search
    from ..storage import heartbeat_settings
    from ..workers import STORAGE_ENV, auto_workers, search_in_workers

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
            max_latency_ms=max_latency_ms, track=track, pack=pack)
        heartbeat_settings()  # a bad BCPARETO_*_SECONDS stops here, before anything starts
        interrupts.install()  # Ctrl-C and a scheduler's SIGTERM stop the search cleanly
        _search_header(request, path=path, backend=backend, say=say)
        if workers == "auto":
            workers = auto_workers()
        with _storage_faults(request):
            if workers > 1:
                _finish_workers(search_in_workers(request, workers=workers, echo=say), run_dir=run_dir,
                                n_points=len(request.points), as_json=as_json)
                return
            summary = run_search(request, echo=say)
    _search_summary(summary, request, as_json=as_json)


def _search_request(xlsx: Path | None, *, preset: str, data_dir: Path | None, run_dir: Path, storage: str | None,
                    study_name: str | None, edge_metrics: bool | None, retry_failed: bool, repeats: int,
                    folds: int | None, on_bad_image: str, teacher: str | None, sampler: str,
                    n_trials: int | None, budget_minutes: float | None, warm_start: bool,
                    sampler_seed: int | None, fidelity: str, eta: int, min_epochs: int,
                    max_int8_mb: float | None, max_macs: float | None, max_latency_ms: float | None,
                    track: tuple[str, ...], pack: int = 1, **overrides: Any) -> tuple[Any, Path, str]:
    """The search's options as one checked SearchRequest (exit 2 before anything is created),
    with the sheet's path and the Keras backend."""
    from ..dataset import default_data_dir
    from ..request import SearchRequest, check_feature_maps
    from ..tracking import parse_track

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
        from ..distill import resolve_teacher

        teacher_ref = resolve_teacher(teacher, run_dir=run_dir)
    path, points, config = _load(xlsx, preset, edge_metrics=edge_metrics, teacher=teacher_ref, folds=folds,
                                 validation="cv" if folds is not None else None, **overrides)
    if config.teacher is not None:
        from ..distill import check_teacher

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
        repeats=repeats, on_bad_image=on_bad_image, strategy=strategy, tracking=tracking,
        pack=_pack(pack, config=config, strategy=strategy))
    return request, path, backend


def _pack(pack: int, *, config: Any, strategy: Any) -> int:
    """--pack, checked: a pack of several where packing cannot work is exit 2."""
    blockers = [what for what, on in (("a sampler draws one model at a time", strategy.sampled),
                                      ("--fidelity epochs judges each model epoch by epoch", strategy.halving),
                                      ("--fidelity folds races each point fold by fold", strategy.race),
                                      ("--teacher distils, which the packed trainer does not yet",
                                       config.teacher is not None)) if on]
    if pack > 1 and blockers:
        raise BadInput(f"--pack {pack} trains a grid point's models together, but {blockers[0]}; "
                       "leave --pack out (1: one at a time)")
    return pack


def _search_header(request: Any, *, path: Path, backend: str, say: Callable[[str], None]) -> None:
    config, strategy = request.config, request.strategy
    say((f"Space: {path} ('space' sheet, {len(strategy.space.parameters)} parameters)"
         if strategy.sampled else f"Grid: {path} ({len(request.points)} points)")
        + f"; preset '{config.name}': {config.image_size}px {config.color_mode}"
        + (f" of a {config.cell_crop}-px window on each cell" if config.cell_crop else "")
        + f", {config.epochs} epoch(s), batch {config.batch_size}")
    if request.pack > 1:
        from ..study import units_per_point

        per_point = units_per_point(config, request.repeats)
        if per_point > 1:
            say(f"Packed: up to {min(request.pack, per_point)} of each grid point's {per_point} models "
                "trained as one (--pack; --pack 1 trains them one at a time)")
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
    from ..storage import default_storage_url, fault_line, redact

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
    csv_path = request.run_dir / _csv_name()
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
    from ..space import read_space
    from ..strategy import Limits, Strategy, check_strategy

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


def _finish_workers(outcome: Any, *, run_dir: Path, as_json: bool = False, n_points: int = 0) -> None:
    """The summary line of `search --workers N`, and its exit code."""
    state = outcome.state
    if as_json:
        import json

        click.echo(json.dumps({
            "study_name": state.name, "completed": state.completed, "total": state.grid_size,
            "failed": list(state.failed), "remaining": state.remaining, "trained_now": outcome.trained_now,
            "workers": outcome.workers,
            "wall_seconds": round(outcome.wall_seconds, 1), "interrupted": bool(outcome.interrupted),
            "metrics_csv": str(run_dir / _csv_name())}, indent=2))
    else:
        noun = "grid points" if not n_points or state.grid_size == n_points else "models"  # folds, repeats, draws
        click.echo(f"Done: {state.completed}/{state.grid_size} {noun} completed, {len(state.failed)} "
                   f"failed, {state.remaining} remaining in study '{state.name}' ({outcome.trained_now} trained now, "
                   f"{outcome.workers} workers, {outcome.wall_seconds:.0f} s); results in {run_dir / _csv_name()}")
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
