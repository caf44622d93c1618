"""`bcpareto data download`: fetch Kaggle's blood-cell images with kagglehub and link them.

A data set already at the destination or at ``$BCPARETO_DATA`` is used as it is, without asking
Kaggle; offline, a version already in kagglehub's cache is used; when nothing works the error
carries the manual steps. The layout it checks is dataset.py's.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .dataset import DATA_DIR_ENV, REQUIRED_SPLITS, data_set_folders, find_split
from .errors import DataError

KAGGLE_HANDLE = "paultimothymooney/blood-cells"
_MAX_DETAIL_CHARS = 200


def present_dataset(dest: Path) -> Path | None:
    """The folder that already holds a data set, so that nothing needs downloading, or None.

    ``dest`` first, then ``$BCPARETO_DATA`` when set (the folder every command reads first).
    "Holds a data set" means ``TRAIN`` and ``TEST`` each with the four class folders and at least
    one image in each (``dataset.find_split``); it lists folders and reads no image (`bcpareto data
    check` audits the images).
    """
    candidates = [Path(dest)]
    from_env = os.environ.get(DATA_DIR_ENV)
    if from_env:
        candidates.append(Path(from_env))
    for folder in candidates:
        if _holds_dataset(folder):
            return folder
    return None


def _holds_dataset(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    try:
        for split in REQUIRED_SPLITS:
            find_split(folder / split)
    except (DataError, OSError):
        return False
    return True


def _manual_steps(dest: Path, reason: str) -> str:
    return (
        f"Could not download the Kaggle data set {KAGGLE_HANDLE} with kagglehub: {reason}\n"
        "Manual steps:\n"
        f"  1. On a machine with internet, download it from https://www.kaggle.com/datasets/{KAGGLE_HANDLE}\n"
        "     (Download button), or run:\n"
        f"     python -c \"import kagglehub; print(kagglehub.dataset_download('{KAGGLE_HANDLE}'))\"\n"
        "     If Kaggle asks for credentials: create an API token at https://www.kaggle.com/settings\n"
        "     and save it as ~/.kaggle/kaggle.json, or set KAGGLE_USERNAME and KAGGLE_KEY.\n"
        "  2. Unpack it and find the folder dataset2-master/dataset2-master/images\n"
        "     (it holds TRAIN, TEST, TEST_SIMPLE).\n"
        f"  3. Copy or link that folder to {dest}, or set {DATA_DIR_ENV}=/path/to/images.\n"
        f"  4. Check it: bcpareto data check {dest}"
    )


def _failure_reason(exc: BaseException) -> str:
    import requests

    text = f"{type(exc).__name__}: {exc}"[: _MAX_DETAIL_CHARS * 2]
    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return f"cannot reach Kaggle (no network?). {text}"
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403) or type(exc).__name__ in ("UnauthenticatedError", "CredentialError"):
        return f"Kaggle refused access (credentials needed?). {text}"
    return text


def _newest_cached_version() -> int | None:
    """The newest version marked complete in kagglehub's cache (``<n>.complete`` beside ``versions/``)."""
    from kagglehub.config import get_cache_folder

    owner, name = KAGGLE_HANDLE.split("/")
    folder = Path(get_cache_folder()) / "datasets" / owner / name
    versions = [int(p.stem) for p in folder.glob("*.complete") if p.stem.isdigit()]
    return max(versions, default=None)


def _kagglehub_download(dest: Path) -> Path:
    """Download (or find in kagglehub's cache) the data set; the folder kagglehub returns."""
    try:
        import kagglehub
        import requests
    except ImportError as exc:
        reason = "the Python package kagglehub is not installed (pip install kagglehub)"
        raise DataError(_manual_steps(dest, reason)) from exc
    try:
        return Path(kagglehub.dataset_download(KAGGLE_HANDLE))
    except Exception as exc:  # kagglehub raises requests, OS and its own errors: any means "do it by hand"
        failure = exc
    # Without a version kagglehub asks Kaggle for the newest one first, so offline it fails even
    # when the data set is cached; asking for the cached version by number reads the cache.
    offline = isinstance(failure, (requests.ConnectionError, requests.Timeout))
    version = _newest_cached_version() if offline else None
    if version is not None:
        try:
            return Path(kagglehub.dataset_download(f"{KAGGLE_HANDLE}/versions/{version}"))
        except Exception:  # noqa: BLE001 - report the first failure, the one the user can act on
            pass
    raise DataError(_manual_steps(dest, _failure_reason(failure))) from failure


def find_images_dir(download_dir: Path) -> Path:
    """The ``.../images`` folder (holding TRAIN and TEST) inside an unpacked Kaggle download."""
    download_dir = Path(download_dir)
    candidates = data_set_folders(download_dir, max_depth=6)
    if not candidates:
        raise DataError(
            f"{download_dir}: no folder holding TRAIN and TEST found inside; expected "
            "dataset2-master/dataset2-master/images/{TRAIN,TEST,TEST_SIMPLE} as Kaggle ships it"
        )
    # Kaggle's archive has one such folder; prefer dataset2-master's should a copy appear beside it.
    return min(candidates, key=lambda p: ("dataset2-master" not in p.parts, len(p.parts), str(p)))


def _link_or_copy(images: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        dest.symlink_to(images.resolve(), target_is_directory=True)
    except OSError:  # no symlinks here (e.g. Windows without developer mode): copy instead
        partial = dest.with_name(dest.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        shutil.copytree(images, partial)
        partial.rename(dest)


def download_dataset(*, dest: Path) -> Path:
    """Fetch Kaggle's blood-cell images with kagglehub and make ``dest`` point at them.

    When a data set is already in place (``present_dataset``: ``dest``, else ``$BCPARETO_DATA``),
    Kaggle is not contacted and that folder is returned as it is. Otherwise ``dest`` becomes a
    symlink to (or, where links fail, a copy of) the downloaded
    ``dataset2-master/dataset2-master/images`` folder; returns ``dest``. Offline, a version already in
    kagglehub's cache (``$KAGGLEHUB_CACHE``, else ``~/.cache/kagglehub``) is used. Raises
    ``DataError`` with the manual steps when the download fails, and when ``dest`` already exists
    as something other than a link to the same folder; then nothing is written to ``dest``.
    """
    dest = Path(dest)
    present = present_dataset(dest)
    if present is not None:
        return present
    if dest.exists() and not dest.is_symlink():
        raise DataError(
            f"{dest}: already exists; remove it or choose another --dest "
            f"(`bcpareto data check {dest}` audits what is there)"
        )
    images = find_images_dir(_kagglehub_download(dest))
    for split in REQUIRED_SPLITS:
        find_split(images / split)
    if dest.is_symlink():
        if dest.resolve() == images.resolve():
            return dest  # downloaded before: nothing to do
        raise DataError(
            f"{dest}: already links to {os.readlink(dest)}; remove the link to point it at {images}"
        )
    _link_or_copy(images, dest)
    return dest
