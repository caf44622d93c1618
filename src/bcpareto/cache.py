"""Where bcpareto caches what it can compute again: decoded images, source groups, teacher outputs.

A cache only saves time, so nothing about it stops a command. A cache folder that cannot be
created or written (read-only, full, a file where the folder should be) is reported once per
process, naming the folder and why, and the command goes on without keeping anything new (what
is already there is still read). A cache file that cannot be read back (torn, truncated,
edited) is reported, discarded and computed again. The modules that cache (data.py, groups.py,
distill.py) write each entry through ``write_atomic``, the one atomic writer every file bcpareto
writes goes through (a temporary file beside the target, flushed, renamed into place, removed
whatever happens), so an entry is whole or absent.

``BCPARETO_CACHE`` naming a regular file (the user's setting, not the environment's state) is
a warning too, not exit 2: the decision (issue 29) is that a setting that only decides where
time is saved should not stop a search that can run in full without it; the warning names the
variable and the file, and every command that caches says it once.
"""

from __future__ import annotations

import errno
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

CACHE_ENV = "BCPARETO_CACHE"

Echo = Callable[[str], None]


class CacheWarning(UserWarning):
    """The cache cannot be written, or one of its files was damaged (shown where no echo is given)."""


def cache_dir() -> Path:
    """``BCPARETO_CACHE``, else ``~/.cache/bcpareto``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "bcpareto")


_lock = threading.Lock()
_unwritable: set[Path] = set()  # cache roots a write into has failed: no more writes this process
_said: set[str] = set()


def writable_cache_dir(sub: str = "", *, echo: Echo | None = None) -> Path | None:
    """``cache_dir() / sub``, created if need be, or None (said once) when nothing can be
    written there: a read-only or full folder, or a file in its place."""
    root = cache_dir()
    if root in _unwritable:
        return None
    folder = root / sub
    try:
        if root.exists() and not root.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "a file, not a folder", str(root))
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK | os.X_OK):  # root may write anyway: then a write tells
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(folder))
    except OSError as exc:
        write_failed(exc, echo=echo)
        return None
    return folder


def can_write() -> bool:
    """False once a write into this process's cache folder has failed (nothing more is tried)."""
    return cache_dir() not in _unwritable


def write_failed(exc: OSError, *, echo: Echo | None = None) -> None:
    """A cache write failed with ``exc``: say so once, naming the folder and why; stop writing.

    Call it from the ``except`` around the write, with the temporary file removed in ``finally``."""
    root = cache_dir()
    with _lock:
        _unwritable.add(root)
    _say(f"cache at {root} is {_state(exc, root)}: going on without a cache (what it would keep "
         f"is computed again next time); set {CACHE_ENV} to a writable folder", echo)


def discarded(path: Path, reason: str, *, echo: Echo | None = None, once_per: str | None = None) -> None:
    """Say that a damaged cache file (or entry folder) was thrown away and is computed again;
    ``once_per``: a kind of entry said once only (one warning for many damaged feature files)."""
    _say(f"cache entry {path} could not be read back ({reason}): discarded and computed again", echo,
         once=once_per and f"damaged {once_per}")


def _say(message: str, echo: Echo | None, *, once: str | None = None) -> None:
    key = once or message
    with _lock:
        if key in _said:
            return
        _said.add(key)
    if echo is not None:
        echo(f"warning: {message}")
    else:
        warnings.warn(message, CacheWarning, stacklevel=3)


def _state(exc: OSError, root: Path) -> str:
    """How the folder is unusable, in the words of the warning: 'read-only (...)', 'full (...)'."""
    why = exc.strerror or str(exc)
    try:
        a_file = root.exists() and not root.is_dir()
    except OSError:
        a_file = False
    if exc.errno in (errno.ENOTDIR, errno.EEXIST) or a_file:
        return "not a folder (a file is in its place)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"read-only ({why})"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return f"full ({why})"
    if exc.errno is None and "requested and" in why:  # numpy's short write: a full disk or a size limit
        return f"full (a write stopped short: {why})"
    return f"not writable ({why})"


def write_atomic(path: Path, data: bytes | str) -> None:
    """Replace ``path`` with ``data`` (str is written as UTF-8) so readers never see half of it."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def new_file_mode() -> int:
    """What open() gives a new file: 0o666 less the umask. mkstemp's temporary files are 0600
    whatever the umask, so without a chmod every file bcpareto writes would be private."""
    mask = os.umask(0o077)  # only os.umask tells the umask: read it and set it straight back
    os.umask(mask)
    return 0o666 & ~mask
