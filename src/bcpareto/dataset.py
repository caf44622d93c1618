"""The data set's layout: classes, split folders, image files and their byte digests.

A data set is a folder holding split folders (TRAIN, TEST, optionally TEST_SIMPLE), each holding
one folder per class with the images directly inside, exactly as Kaggle's
``paultimothymooney/blood-cells`` ships it under ``dataset2-master/dataset2-master/images``.
Finding files and hashing them lives here; the `data check` report is audit.py, fetching the
data set download.py, recovering source groups groups.py. Stdlib only: importing it is cheap.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from .errors import DataError

CLASSES = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")
SPLITS = ("TRAIN", "TEST", "TEST_SIMPLE")
REQUIRED_SPLITS = ("TRAIN", "TEST")  # TEST_SIMPLE (71 images) is a demo split nothing depends on
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"})  # compared lower-cased

_T = TypeVar("_T")
_R = TypeVar("_R")

DATA_DIR_ENV = "BCPARETO_DATA"
DEFAULT_DATA_DIR = Path("data/blood-cells")  # relative to the current directory


def default_data_dir() -> Path:
    """The data directory when none is given: ``$BCPARETO_DATA``, else ``data/blood-cells``."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


# --------------------------------------------------------------------------- finding files


def is_image_name(name: str) -> bool:
    # Hidden files (.DS_Store, macOS "._x.jpeg" resource forks) are never images.
    return not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES


def scan_class_dir(class_dir: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(image files, stray files, subfolders) directly inside one class folder, each sorted.

    Lists names only, opens nothing. An image name that is not a regular file (a FIFO, a socket,
    a device, a dangling link) stays among the images: every reader of image bytes goes through
    ``read_image_bytes``, which refuses it without opening it, so it is reported as unreadable
    (`data check`) or skipped (a search), never waited on."""
    images: list[Path] = []
    stray: list[Path] = []
    subdirs: list[Path] = []
    with os.scandir(class_dir) as entries:
        for entry in entries:
            path = class_dir / entry.name
            try:
                is_dir = entry.is_dir()
            except OSError:  # a link loop: a file that cannot be opened, reported as unreadable
                is_dir = False
            if is_dir:
                subdirs.append(path)
            elif is_image_name(entry.name):
                images.append(path)
            else:
                stray.append(path)
    return sorted(images), sorted(stray), sorted(subdirs)


def class_folder_hint(split_dir: Path, name: str) -> str:
    others = [p.name for p in split_dir.iterdir() if p.is_dir() and p.name.lower() == name.lower()]
    return f" (found {others[0]!r}: class folder names are upper-case)" if others else ""


def _join_errors(where: Path, errors: list[str]) -> str:
    if len(errors) == 1:
        return errors[0]
    return f"{where}: {len(errors)} problems:\n  " + "\n  ".join(errors)


def find_split(split_dir: Path) -> dict[str, list[Path]]:
    """Class name -> sorted image paths of one split folder (e.g. ``.../TRAIN``).

    Raises ``DataError`` naming the folder if the split folder is missing or not a folder, or if a
    class folder is missing or holds no images. Stray files (``.DS_Store``, ``Thumbs.db``, any file
    without an image suffix) are ignored.
    """
    split_dir = Path(split_dir)
    expected = f"expected one folder per class ({', '.join(CLASSES)}) holding the images"
    if not split_dir.exists():
        raise DataError(f"{split_dir}: split folder not found; {expected}")
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: not a folder; {expected}")
    errors: list[str] = []
    found: dict[str, list[Path]] = {}
    for name in CLASSES:
        class_dir = split_dir / name
        if not class_dir.is_dir():
            errors.append(f"{class_dir}: class folder missing{class_folder_hint(split_dir, name)}")
            continue
        images, _, _ = scan_class_dir(class_dir)
        if not images:
            errors.append(f"{class_dir}: class folder holds no images ({suffix_list()})")
        found[name] = images
    if errors:
        raise DataError(_join_errors(split_dir, errors))
    return found


def suffix_list() -> str:
    return "files ending in " + ", ".join(sorted(IMAGE_SUFFIXES))


# --------------------------------------------------------------------------- reading files


class NotARegularFile(OSError):
    """An image name that is a FIFO, socket, device, folder or dangling link: never opened."""


def not_regular(path: Path) -> str | None:
    """What ``path`` is when it exists but is not a regular file (following links; a dangling
    link counts), else None. Never opens it."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a symbolic link to a missing file" if os.path.islink(path) else None
    except OSError:  # a link loop, a folder we may not enter: opening it says why
        return None
    if stat.S_ISREG(mode):
        return None
    for test, what in ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return what
    return "not a regular file"


def read_image_bytes(path: Path | str) -> bytes:
    """The bytes of one image file, never blocking: anything but a regular file raises
    ``NotARegularFile`` (an OSError) naming what it is, unopened. (Opening a FIFO named
    x.jpeg for reading would wait for a writer forever, and one SIGTERM could not end it.)

    The check is repeated on the open file (opened non-blocking, so even a FIFO put there in
    between is never waited on)."""
    what = not_regular(Path(path))
    if what is not None:
        raise NotARegularFile(errno.EINVAL, f"not a regular file but {what}; never opened", str(path))
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file; never read", str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    with open(fd, "rb") as handle:
        return handle.read()


def map_threads(fn: Callable[[_T], _R], items: Iterable[_T], *, workers: int) -> list[_R]:
    """``list(pool.map(fn, items))`` on ``workers`` threads that never hold up an interrupt.

    On any exception (a SIGTERM's KeyboardInterrupt while the results are awaited) the
    items not yet started are cancelled and nothing is waited for, so Ctrl-C or SIGTERM stops
    a decode of 12,000 images at once instead of after the last one (the threads still busy
    finish their one file by themselves)."""
    pool = ThreadPoolExecutor(max(1, workers))
    try:
        results = list(pool.map(fn, items))
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


# --------------------------------------------------------------------------- hashing


def default_workers() -> int:
    return min(8, (os.cpu_count() or 1) + 2)  # reading files waits on the disk, not the CPU


def digest(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def file_digests(paths: Iterable[Path], *, workers: int | None = None) -> dict[Path, str]:
    """Path -> blake2b hex digest of the file's bytes (equal digests: byte-identical files)."""

    def one(path: Path) -> str:
        try:
            return digest(read_image_bytes(path))
        except OSError as exc:
            raise DataError(f"{path}: cannot read file ({exc.strerror or exc})") from exc

    paths = [Path(p) for p in paths]
    return dict(zip(paths, map_threads(one, paths, workers=workers or default_workers())))


def all_paths(by_class: Mapping[str, list[Path]]) -> list[Path]:
    return [p for paths in by_class.values() for p in paths]


def cross_split_duplicates(
    train: Mapping[str, list[Path]],
    test: Mapping[str, list[Path]],
    *,
    digests: Mapping[Path, str] | None = None,
    workers: int | None = None,
) -> set[Path]:
    """The ``test`` files byte-identical to some ``train`` file, whatever their classes.

    ``train`` and ``test`` are ``find_split`` results. Pass ``digests`` (from ``file_digests``) to
    skip hashing files already hashed.
    """
    known = dict(digests or {})
    todo = [p for p in all_paths(train) + all_paths(test) if p not in known]
    known.update(_readable_digests(todo, workers=workers))
    train_digests = {known[p] for p in all_paths(train) if p in known}
    return {p for p in all_paths(test) if p in known and known[p] in train_digests}


def _readable_digests(paths: list[Path], *, workers: int | None) -> dict[Path, str]:
    """Digests of the files that can be read; an unreadable one is no one's duplicate (the
    decoder then skips it, or stops with --on-bad-image fail)."""

    def one(path: Path) -> str | None:
        try:
            return digest(read_image_bytes(path))
        except OSError:
            return None

    digests = map_threads(one, paths, workers=workers or default_workers())
    return {p: d for p, d in zip(paths, digests) if d is not None}



def data_set_folders(top: Path, *, max_depth: int) -> list[Path]:
    """Folders at most ``max_depth`` levels below ``top`` that hold both TRAIN and TEST."""
    found = []
    for dirpath, dirnames, _ in os.walk(top, followlinks=True):  # kagglehub's cache may hold links
        if "TRAIN" in dirnames and "TEST" in dirnames:
            found.append(Path(dirpath))
            dirnames.clear()
        elif len(Path(dirpath).relative_to(top).parts) >= max_depth:
            dirnames.clear()
    return sorted(found)

