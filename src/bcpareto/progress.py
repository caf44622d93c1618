"""What the user sees while a search runs: the time estimate, a progress bar, elapsed time, ETA."""

from __future__ import annotations

import os
import sys
import time
from typing import IO, TYPE_CHECKING, Any, Callable

from .config import TrainConfig
from .gridspec import GridPoint
from .model import cost

if TYPE_CHECKING:
    import optuna

WORKER_COUNT_ENV = "BCPARETO_WORKER_COUNT"  # set for each worker: how many share this machine's study


def calibrate(*, points: list[GridPoint], config: TrainConfig) -> Callable[[GridPoint], float] | None:
    """Seconds per training step as a + b * MACs, fitted on the cheapest and costliest point.

    A point that cannot be built or timed (too big for memory, any error) is left out here; it
    fails with its reason when its turn comes. None when no point could be timed.
    """
    from .trial import time_train_step

    def macs(p: GridPoint) -> int:
        return cost(p, image_size=config.at(p).image_size, channels=config.channels, padding=config.padding).macs

    measured: list[tuple[int, float]] = []
    for candidates in (sorted(points, key=macs), sorted(points, key=macs, reverse=True)):
        for point in candidates:
            try:
                seconds = time_train_step(point, config=config)
            except Exception:  # noqa: BLE001 - the trial itself reports why
                continue
            if not measured or measured[0][0] != macs(point):
                measured.append((macs(point), seconds))
            break
    if not measured:
        return None
    if len(measured) == 1:
        return lambda p: measured[0][1]
    (m0, t0), (m1, t1) = sorted(measured)
    slope = max(0.0, (t1 - t0) / (m1 - m0))
    return lambda p: max(t0 + slope * (macs(p) - m0), 1e-4)


def study_eta(done: list[tuple[int, float]], left: list[int], *, workers: int) -> float | None:
    """Seconds until the study's last model is done, for a worker of several (``--workers N``).

    ``done``: (multiply-adds, wall seconds) of the models the study has finished, any worker's;
    ``left``: the multiply-adds of each model not finished yet. Each model left is predicted by
    the least-squares line of wall seconds on multiply-adds through ``done`` (the mean, while
    ``done`` holds one size only; never below the fastest model done), and the sum is shared
    by ``workers``. None before any model is done: nothing measured to go by yet.
    """
    if not done:
        return None
    n = len(done)
    mean_m = sum(m for m, _ in done) / n
    mean_s = sum(s for _, s in done) / n
    spread = sum((m - mean_m) ** 2 for m, _ in done)
    slope = sum((m - mean_m) * (s - mean_s) for m, s in done) / spread if spread else 0.0
    floor = min(s for _, s in done)
    total = sum(max(floor, mean_s + max(0.0, slope) * (m - mean_m)) for m in left)
    return total / max(1, workers)


def clock(seconds: float) -> str:
    seconds = int(max(0, seconds))
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class Progress:
    """A text progress bar over the grid with the current model, elapsed time and ETA."""

    def __init__(
        self, todo: list[tuple[GridPoint, int]], *, config: TrainConfig, n_train: int, n_eval: int,
        echo: Callable[[str], None],
    ) -> None:
        """``todo``: (point, repeat) of every model this worker may train."""
        self.todo, self.config, self.echo = todo, config, echo
        self.folds = config.folds if config.validation == "cv" else 0
        self.steps = config.epochs * (-(-n_train // config.batch_size) + n_eval / max(config.batch_size, 64) / 3)
        self.predicted: dict[tuple[int, int], float] = {}
        self.actual: dict[tuple[int, int], float] = {}
        self.done = 0
        self.t0 = time.perf_counter()

    def announce(self, step_seconds: Callable[[GridPoint], float], *, workers: int = 1) -> None:
        """Print the whole search's estimate before the first model; ``workers`` share the models
        (a first guess: each worker trains on its share of the cores)."""
        self.predicted = {(p.grid_id, r): self.steps * step_seconds(p) + 3.0 for p, r in self.todo}
        total = sum(self.predicted.values()) / max(1, workers)
        self.echo(f"Estimated time for {len(self.todo)} model(s)"
                  + (f" on {workers} workers" if workers > 1 else "") + f": {clock(total)} "
                  "(from a short measured calibration; refined as models finish)")
        if total > 3600:
            presets = {"quick": "the `quick` preset (16 small CNNs, 48 px, 2 epochs: 5-23 min on a 2-core CPU)",
                       "edge": "the `edge` preset (the same grid at 64 px, 5 epochs: 16-53 min)"}
            helps = [text for name, text in presets.items() if name != self.config.name]
            if self.config.validation == "cv":
                helps.append(f"racing over the folds (`--fidelity folds`), or fewer folds (`--folds`; "
                             f"{self.config.folds} train each point {self.config.folds} times)")
            helps += ["`--limit-per-class N` (N images per class) for a first look",
                      "a GPU (`pip install 'tensorflow[and-cuda]'`)",
                      "on a machine with GPUs or many cores, `--workers N`"]
            self.echo(f"  Warning: this search will take over an hour here ({len(self.todo)} models, "
                      f"{self.config.image_size} px, {self.config.epochs} epochs). What helps: "
                      + "; ".join(helps) + ".")

    def _eta(self) -> float:
        left = [g for g in self.predicted if g not in self.actual]
        ratio = 1.0
        if self.actual:
            ratio = sum(self.actual.values()) / sum(self.predicted[g] for g in self.actual)
        return ratio * sum(self.predicted[g] for g in left)

    def start(self, point: GridPoint, repeat: int = 0) -> None:
        n = len(self.todo)
        width = 24
        filled = int(width * self.done / max(n, 1))
        self.echo(
            f"[{'#' * filled}{'.' * (width - filled)}] {self.done}/{n}  {unit_label(point.grid_id, repeat, folds=self.folds)}: "
            f"{point.describe()} | elapsed {clock(time.perf_counter() - self.t0)}"
            f" | ETA {clock(self._eta())}"
        )

    def finish(
        self, point: GridPoint, repeat: int = 0, *, seconds: float | None, row: dict[str, Any] | None = None
    ) -> None:
        self.done += 1
        unit = (point.grid_id, repeat)
        if unit in self.predicted:
            self.actual[unit] = seconds if seconds is not None else self.predicted[unit]
        if row is not None:
            self.echo(
                f"  {unit_label(point.grid_id, repeat, folds=self.folds)} done in {seconds:.0f} s: val_accuracy "
                f"{row['val_accuracy']:.3f}, test_accuracy {row['test_accuracy']:.3f}, model_size(MB) "
                f"{row['model_size(MB)']:.3f}, {row['n_params']:,} params"
            )


def unit_label(grid_id: int, repeat: int = 0, *, folds: int = 0) -> str:
    """"grid point 3", or "grid point 3 repeat 1" for a further run of --repeats; under
    ``folds``-fold cross-validation "grid point 3 fold 2/5" (and "seed 1" from the second seed)."""
    if folds:
        seed = repeat // folds
        return f"grid point {grid_id} fold {repeat % folds + 1}/{folds}" + (f" seed {seed}" if seed else "")
    return f"grid point {grid_id}" + (f" repeat {repeat}" if repeat else "")


def stdout_gone(exc: BaseException, *, what: str = "the search's output") -> None:
    """Say once on stderr (if it still works) that output is dropped; send stdout to /dev/null,
    so that no later line can fail the search (a closed pipe: `search | head`, a lost terminal)."""
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    try:
        sys.stderr.write(f"bcpareto: stdout is closed ({reason}): {what} is dropped from here on; the "
                         "search goes on (`bcpareto status` shows where it stands)\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        _to_devnull(sys.stderr)
    _to_devnull(sys.stdout)


def _to_devnull(stream: IO[str]) -> None:
    """Point the file descriptor under ``stream`` at /dev/null (not a stream without one)."""
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # e.g. click's CliRunner: nothing to redirect
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def announce_estimate(points: list[GridPoint], study: optuna.Study, *, config: TrainConfig, data: Any,
                      echo: Callable[[str], None], workers: int = 1) -> None:
    """The whole grid's time estimate before the first model (a short calibration: TensorFlow
    times one training step of the cheapest and of the costliest point)."""
    from .request import model_shares
    from .study import remaining_units

    by_id = {p.grid_id: p for p in points}
    todo = [(by_id[g], r) for g, r in remaining_units(study) if g in by_id]
    if not todo:
        return
    n_fit, n_val = model_shares(data)
    step_seconds = calibrate(points=sorted({p for p, _ in todo}, key=lambda p: p.grid_id), config=config)
    if step_seconds is not None:
        Progress(todo, config=config, n_train=n_fit, n_eval=n_val + len(data.test), echo=echo).announce(
            step_seconds, workers=workers)


def study_eta_line(rows: list[dict[str, Any]], todo: list[tuple[GridPoint, int]], *, config: TrainConfig) -> str:
    """'ETA h:mm:ss' for the study, from its finished models' wall seconds (progress.study_eta)."""
    done = {(int(r["grid_id"]), int(r.get("repeat") or 0)) for r in rows}
    finished = [(int(r["macs"]), float(r["wall_seconds"])) for r in rows
                if r.get("macs") not in (None, "") and r.get("wall_seconds") not in (None, "")]
    left = [cost(p, image_size=config.at(p).image_size, channels=config.channels, padding=config.padding).macs
            for p, repeat in todo if (p.grid_id, repeat) not in done]
    try:
        workers = int(os.environ.get(WORKER_COUNT_ENV, "1"))
    except ValueError:
        workers = 1
    eta = study_eta(finished, left, workers=workers)
    return "ETA after the first model" if eta is None else f"ETA {clock(eta)}"
