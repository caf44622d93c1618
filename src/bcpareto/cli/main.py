from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any, Iterator

import click

from .. import __version__
from ..backends import BackendError, chosen_backend
from ..errors import (
    ArtefactError,
    BcParetoError,
    ColumnError,
    ConfigError,
    DataError,
    GridSpecError,
    StorageError,
    StrategyError,
)
from ..quiet import VERBOSE_ENV

"""Command-line interface: parses options, calls one library function, turns errors into messages.

Heavy modules (TensorFlow, pandas, matplotlib, Optuna) are imported inside the commands, so
`bcpareto --help` starts fast.
"""


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


def _run_dir_option(text: str) -> Any:
    """--run-dir, the same on every command that reads or writes a run (its help says what for)."""
    return click.option("--run-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
                        show_default=True, help=text)


def _data_dir_option(text: str) -> Any:
    """--data-dir (None: $BCPARETO_DATA, else data/blood-cells; dataset.default_data_dir)."""
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help=text)


def _storage_option(text: str) -> Any:
    """--storage, also read from BCPARETO_STORAGE (where a password stays out of `ps`)."""
    return click.option("--storage", metavar="URL", envvar="BCPARETO_STORAGE", show_envvar=True, help=text)


def _track_option(func: Any) -> Any:
    """--track, shared by `search`, `refine` and `export` (tracking.py parses it)."""
    return click.option(
        "--track", multiple=True, metavar="mlflow[:URI]|tensorboard[:DIR]",
        help="Also log every trained model to MLflow (a run per model: parameters, per-epoch and final "
        "metrics, its .keras/.tflite/.json files; default store sqlite <run-dir>/mlflow.db, needs "
        "pip install 'bcpareto[track]') or its per-epoch curve to TensorBoard event files [default "
        "DIR: <run-dir>/tensorboard]. Repeat for both.")(func)


def _grid_argument(func: Any) -> Any:
    return click.argument("xlsx", required=False, type=click.Path(dir_okay=False, path_type=Path))(func)


def _load(xlsx: Path | None, preset: str, **overrides: Any) -> tuple[Path, list[Any], Any]:
    from ..config import load_config, resolve_grid
    from ..gridspec import read_grid

    config = load_config(preset, **overrides)
    path = xlsx or resolve_grid(config)
    return path, read_grid(path), config


def _tensorflow_process() -> None:
    """edge and export convert with TensorFlow's TFLite converter, whatever KERAS_BACKEND says
    (a model trained on JAX or PyTorch is a .keras file that TensorFlow loads alike)."""
    if "keras" not in sys.modules:
        os.environ["KERAS_BACKEND"] = "tensorflow"
    if chosen_backend() != "tensorflow" or importlib.util.find_spec("tensorflow") is None:
        raise BackendError("converting to TFLite needs TensorFlow in this process; install it with: "
                           "pip install tensorflow")


def _echo_to(as_json: bool) -> Any:
    """Where a command's progress goes: stdout, or stderr when stdout carries its --json. A
    closed stdout (`| head`, a lost terminal) is said once on stderr; the command goes on."""
    from ..progress import stdout_gone

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


def _csv_name() -> str:
    from ..metrics_log import (
        CSV_NAME,  # here, not at the top: `--help` imports no numpy
    )

    return CSV_NAME


def main() -> None:
    cli()
