"""A search's request: everything it needs, built and checked once, frozen.

The `search` command (or the Python API) builds one SearchRequest from the sheet, the preset and
the options, checks it before anything is created (``check``), and hands the same object to the
loop (search.run_search), to the workers of ``--workers N`` (as a file: ``save``/``load``, never
a rebuilt command line) and to what reads the study afterwards. The storage URL is the one part a
worker gets from its environment instead (workers.STORAGE_ENV), so a password is in no file.
Also here: the cheap up-front checks and the data a search decodes once per image size.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import TrainConfig
from .errors import DataError, TrialFailed
from .gridspec import GridPoint
from .metrics_log import check_metrics_csv
from .model import cost
from .storage import default_storage_url
from .strategy import Strategy
from .tracking import Tracking


@dataclass(frozen=True)
class SearchRequest:
    """What one search trains and where: the sheet's points, the preset (with the command line's
    overrides), the data, the run directory and storage, and the search options."""

    points: tuple[GridPoint, ...]
    config: TrainConfig
    data_dir: Path
    run_dir: Path
    grid_name: str  # the sheet's file name (the study's default name comes from it)
    storage_url: str | None = None  # None: sqlite bcpareto.db in run_dir; may hold a password
    study_name: str | None = None  # None: default_study_name
    retry_failed: bool = False
    repeats: int = 1
    on_bad_image: str = "skip"
    strategy: Strategy = field(default_factory=Strategy)
    tracking: Tracking | None = None
    pack: int = 1  # units of one grid point claimed and trained together (packed.py); 1: one at a time

    def check(self) -> None:
        """Everything cheap to check, before anything is created (check_search_inputs)."""
        check_search_inputs(list(self.points), config=self.config, data_dir=self.data_dir,
                            run_dir=self.run_dir, storage_url=self.storage_url)

    def for_study(self, name: str) -> SearchRequest:
        """What each worker of --workers N gets: the same request, joining study ``name``, which
        its parent queued (failed units included, with --retry-failed: not requeued again)."""
        return dataclasses.replace(self, study_name=name, retry_failed=False)

    def save(self, folder: Path) -> Path:
        """Write the request, without its storage URL, to a new private file in ``folder``."""
        fd, name = tempfile.mkstemp(prefix=".search-request-", suffix=".pickle", dir=folder)
        with os.fdopen(fd, "wb") as handle:
            pickle.dump(dataclasses.replace(self, storage_url=None), handle)
        return Path(name)

    @staticmethod
    def load(path: Path, *, storage_url: str | None) -> SearchRequest:
        """A request saved by ``save`` (by this same bcpareto: the file is its own), with the URL."""
        with open(path, "rb") as handle:
            request = pickle.load(handle)  # noqa: S301 - written by this process's parent, mode 0600
        if not isinstance(request, SearchRequest):
            raise TypeError(f"{path} holds no search request")
        return dataclasses.replace(request, storage_url=storage_url)


def check_search_inputs(
    points: list[GridPoint], *, config: TrainConfig, data_dir: Path, run_dir: Path,
    storage_url: str | None,
) -> None:
    """Everything a search needs that is cheap to check, before anything is created: grid
    points that collapse, the run directory, the storage URL (and a PostgreSQL server's
    answer), the data set's folders. Decoding the images (an empty class) comes next, still before the study."""
    from .runs import check_creatable_dir
    from .storage import check_storage_reachable, check_storage_url, heartbeat_settings

    check_feature_maps(points, config=config)
    heartbeat_settings()
    check_creatable_dir(run_dir, option="--run-dir")
    check_metrics_csv(run_dir)  # a folder named metrics_log.csv: before anything is trained
    url = storage_url or default_storage_url(run_dir)
    check_storage_url(url)
    check_storage_reachable(url)
    check_data_dir(data_dir)


def check_data_dir(data_dir: Path) -> None:
    """The data set's folders are there (cheap: lists files, decodes nothing)."""
    from .dataset import find_split

    if not data_dir.is_dir():
        raise DataError(
            f"data directory {data_dir} does not exist; pass --data-dir, set BCPARETO_DATA, "
            "or run `bcpareto data download` (expects TRAIN/ and TEST/ inside)"
        )
    for split in ("TRAIN", "TEST"):
        find_split(data_dir / split)


def check_feature_maps(points: list[GridPoint], *, config: TrainConfig) -> None:
    """Reject, before any training, every point whose feature map collapses at this size."""
    problems = []
    for point in points:
        try:
            cost(point, image_size=config.at(point).image_size, channels=config.channels,
                 padding=config.padding)
        except TrialFailed as exc:
            problems.append(str(exc))
    if problems:
        sizes = sorted({config.at(p).image_size for p in points})
        raise TrialFailed(
            f"{len(problems)} grid point(s) cannot be built at {'/'.join(map(str, sizes))} px "
            f"(padding '{config.padding}'):\n  " + "\n  ".join(problems)
            + "\nUse a larger --image-size (or image_size cell), or remove these points from the sheet."
        )


def image_sizes(points: list[GridPoint], config: TrainConfig, strategy: Strategy) -> list[int]:
    """Every input side the search may train (the sheet's, and the space's when a sampler draws),
    the preset's own first, then ascending: the order the search decodes them in."""
    sizes = {config.at(p).image_size for p in points} if not strategy.sampled or strategy.warm_start else set()
    if strategy.sampled and strategy.space is not None:
        spec = strategy.space.distributions().get("image_size")
        if spec is None:
            sizes.add(config.image_size)
        elif spec[0] == "categorical":
            sizes |= {int(v) for v in spec[1]}
        else:  # a fixed value (low == high): space.py refuses a range
            sizes.add(int(spec[1]))
    return sorted(sizes or {config.image_size}, key=lambda s: (s != config.image_size, s))


def load_sizes(points: list[GridPoint], *, config: TrainConfig, strategy: Strategy, data_dir: Path,
               on_bad_image: str, echo: Callable[[str], None]) -> dict[int, Any]:
    """The data at every image size the search may train (first: the preset's), and the header
    lines that say what it holds."""
    from .data import load_data_for

    echo(f"Data: {data_dir} (decoded once per size and colour mode, then cached)")
    sizes = image_sizes(points, config, strategy)
    by_size = {}
    for size in sizes:
        by_size[size] = load_data_for(data_dir, dataclasses.replace(config, image_size=size),
                                      on_bad_image=on_bad_image, progress=echo if not by_size else None)
    data = by_size[sizes[0]]
    if len(sizes) > 1:
        echo(f"  image sizes of this grid: {', '.join(f'{s} px' for s in sorted(sizes))}")
    n_fit, n_val = model_shares(data)
    if data.n_folds:
        echo(f"  TRAIN {len(data.train)} images in {data.n_folds} folds ({data.val_source}): each model "
             f"trains on ~{n_fit}, validates on the other ~{n_val}; "
             f"test {len(data.test)} ({data.test_source})")
    else:
        echo(f"  train {len(data.train)} images; validation {len(data.val)} ({data.val_source}); "
             f"test {len(data.test)} ({data.test_source})")
    if data.skipped:
        echo(f"  skipped {len(data.skipped)} unreadable file(s): " + ", ".join(data.skipped[:5]))
    return by_size


def model_shares(data: Any) -> tuple[int, int]:
    """(images one model trains on, images it validates on): under CV, fold 1's shares."""
    n_val = int((data.folds == 0).sum()) if data.folds is not None else len(data.val)
    return len(data.train) - (n_val if data.folds is not None else 0), n_val
