"""Study storage: storage URLs, opening the Optuna storage, locks between workers, redaction.

The storage (an SQLite file or a PostgreSQL database) is what coordinates workers; this module
opens it with heartbeats and stale-trial retry switched on, provides the locks under which
workers create and enqueue a study, and keeps storage passwords out of every message.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import random
import re
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator
from urllib.parse import unquote, urlsplit

from .errors import BcParetoError, ConfigError

if TYPE_CHECKING:
    import optuna

DB_NAME = "bcpareto.db"
# A worker records a heartbeat every HEARTBEAT_SECONDS; a running trial without one for
# GRACE_SECONDS is taken as dead (worker killed, machine lost), failed and queued again.
# Environment variables BCPARETO_HEARTBEAT_SECONDS / BCPARETO_GRACE_SECONDS override both
# (tests use 1 s / 4 s so a killed worker's trial is retried within seconds).
HEARTBEAT_SECONDS = 20
GRACE_SECONDS = 90  # long enough for a busy database or a slow epoch-end on a loaded machine
MAX_RETRY = 3  # a point whose worker dies 4 times is left failed ("stale"): --retry-failed


def default_storage_url(run_dir: Path) -> str:
    """The embedded default: an SQLite file in the run directory."""
    return f"sqlite:///{(run_dir / DB_NAME).resolve()}"


def redact(text: str, url: str | None = None) -> str:
    """``text`` (a URL or a message) with storage passwords replaced by ***.

    Masks the password of every ``scheme://user:password@`` in the text; with ``url``, also that
    URL's password wherever else it appears, as written or percent-decoded (a driver's message
    may quote it in its own words).
    """
    masked = re.sub(r"(://[^:/@\s]*:)[^\s/]*@", r"\1***@", text)
    password = _password(url) if url else None
    for secret in {password, unquote(password)} if password else ():
        if len(secret) >= 4:  # masking a 1-3 character password would mangle every message
            masked = masked.replace(secret, "***")
    return masked


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def heartbeat_settings() -> tuple[int, int]:
    """(heartbeat interval, grace period) in seconds, from the environment or the defaults."""
    values = {}
    for name, default in (("HEARTBEAT", HEARTBEAT_SECONDS), ("GRACE", GRACE_SECONDS)):
        var = f"BCPARETO_{name}_SECONDS"
        raw = os.environ.get(var, "").strip()
        try:
            values[name] = int(raw) if raw else default
        except ValueError:
            values[name] = 0
        if values[name] < 1:
            raise ConfigError(f"{var}={raw!r}: expected a positive whole number of seconds")
    if values["GRACE"] <= values["HEARTBEAT"]:
        raise ConfigError(
            f"BCPARETO_GRACE_SECONDS ({values['GRACE']}) must exceed BCPARETO_HEARTBEAT_SECONDS "
            f"({values['HEARTBEAT']}), or live trials would be taken as dead"
        )
    return values["HEARTBEAT"], values["GRACE"]


def open_storage(url: str, *, must_exist: bool = False) -> optuna.storages.RDBStorage:
    """The shared study storage, with heartbeats and retry of stale trials switched on.

    ``must_exist``: refuse to create an SQLite file that is not there (``bcpareto status``).
    """
    import optuna
    import sqlalchemy.exc

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    heartbeat, grace = heartbeat_settings()
    engine_kwargs: dict[str, Any] = {}
    creating: contextlib.AbstractContextManager[None] = contextlib.nullcontext()
    if url.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}  # several workers on one file
        path = url.split("///", 1)[-1]
        if must_exist and not Path(path).is_file():
            raise BcParetoError(f"no study storage at {path}; run `bcpareto search` first, or "
                                "pass --run-dir or --storage")
        creating = file_lock(Path(f"{path}.lock"))  # one process creates the tables
    problem = ""
    for _ in range(3):
        try:
            with creating:
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=MAX_RETRY
                    ),
                )
        except ModuleNotFoundError as exc:  # e.g. psycopg2 for postgresql:// URLs
            problem = f"{exc}; for PostgreSQL: pip install 'bcpareto[postgres]'"
            break
        except Exception as exc:  # SQLAlchemy/driver errors: bad URL, server down, bad password
            problem = first_line(exc)
            if not (isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in problem):
                break
            # Workers that start together on an empty database race to create its tables; the
            # losers see "already exists" and succeed on the next try.
            time.sleep(0.5 + random.random())
    raise BcParetoError(f"cannot open the study storage {redact(url)}: {redact(problem, url)}")


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@contextlib.contextmanager
def storage_lock(storage: optuna.storages.RDBStorage, url: str, name: str) -> Iterator[None]:
    """Mutual exclusion between workers that share one storage (file lock or advisory lock)."""
    if url.startswith("postgresql"):
        import sqlalchemy

        key = int(hashlib.sha1(name.encode()).hexdigest()[:15], 16)
        with storage.engine.connect() as conn:
            conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        return
    path = url.split("///", 1)[-1] if url.startswith("sqlite") else None
    lock_path = Path(f"{path}.lock") if path else Path(tempfile.gettempdir()) / f"bcpareto-{name}.lock"
    with file_lock(lock_path):
        yield


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
