"""Study storage: storage URLs, opening the Optuna storage, locks between workers, redaction.

The storage (an SQLite file or a PostgreSQL database) is what coordinates workers; this module
opens it with heartbeats and stale-trial retry switched on, provides the locks under which
workers create and enqueue a study, and keeps storage passwords out of every message.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import random
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import quote, quote_plus, unquote, unquote_plus

from .errors import ConfigError, StorageError

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
    # quoted: a folder named 'what-if?' or 'a%25b' stays a path (SQLAlchemy unquotes it), not a
    # query string or an escape
    return f"sqlite:///{quote(str((run_dir / DB_NAME).resolve()), safe='/')}"


# What `--storage` accepts. SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which
# bcpareto does not install; the `postgres` extra installs psycopg2 (binary wheels for every
# platform, and the driver SQLAlchemy 1.4/2.0 chose for postgresql://), so a bare postgresql://
# is opened with psycopg2. An explicit postgresql+psycopg:// still uses psycopg 3.
BACKENDS = ("sqlite", "postgresql")
SQLITE_MAX_PATH = 511  # SQLite's default SQLITE_MAX_PATHNAME is 512 bytes, its terminator included
POSTGRES_DRIVER = "psycopg2"
_DRIVER_MODULES = {"psycopg2": "psycopg2", "psycopg": "psycopg", "pg8000": "pg8000", "asyncpg": "asyncpg"}
_DRIVER_PACKAGES = {"psycopg2": "bcpareto[postgres]", "psycopg": "psycopg[binary]"}
URL_FORMS = ("sqlite:///PATH/bcpareto.db, or "
             "postgresql://USER:PASSWORD@HOST[:PORT]/DATABASE (percent-encode @ and % in the password)")


def _parse(url: str) -> Any | None:
    """SQLAlchemy's own reading of a URL (the one the connection uses), or None."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url)
    except (ArgumentError, ValueError, TypeError):
        return None


def _is_secret_key(key: str) -> bool:
    key = key.lower()
    return any(word in key for word in ("pass", "pwd", "secret", "token"))


def _secrets(url: str) -> set[str]:
    """Every password of ``url`` as written and as decoded, from parsing it as SQLAlchemy does.

    The password of ``scheme://user:PASSWORD@host`` (it may hold '/', ':' or '%XX'), and the value
    of any query parameter that names a password (``?password=...``, ``sslpassword``, ...).
    """
    found: set[str] = set()
    parsed = _parse(url)
    if parsed is not None and parsed.password:
        found.add(str(parsed.password))
    if parsed is not None:
        for key, value in parsed.query.items():
            if _is_secret_key(key):
                found.update([value] if isinstance(value, str) else value)
    # As written. SQLAlchemy ends the userinfo at the first '@', a browser at the last one: both
    # readings are masked, so an unencoded '@' in a password leaks under neither.
    rest = url.split("://", 1)[1] if "://" in url else ""
    for userinfo in (rest.split("@", 1)[0] if "@" in rest else "", _userinfo(rest)):
        if ":" in userinfo:
            found.add(userinfo.split(":", 1)[1])
    query = rest.split("?", 1)[1] if "?" in rest else ""
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if _is_secret_key(unquote_plus(key)):
            found.add(value)
    written = set(found)
    for secret in written:
        found.update({unquote(secret), unquote_plus(secret), quote(unquote(secret), safe=""),
                      quote_plus(unquote(secret))})
    return {s for s in found if s}


def _userinfo(rest: str) -> str:
    """``user:password`` of a URL after its ``scheme://``: up to the last '@' before the query,
    or the last '@' of all when the password holds a '?' (the widest reading: never too little)."""
    head = rest.split("?", 1)[0]
    if "@" in head:
        return head.rpartition("@")[0]
    return rest.rpartition("@")[0] if "@" in rest and ":" in rest.split("@", 1)[0] else ""


def _display(url: str) -> str:
    """``url`` with its passwords replaced by ***, rebuilt from its parsed parts."""
    if "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    userinfo = _userinfo(rest)
    at = "@" if userinfo or rest.startswith("@") else ""
    hostpart = rest[len(userinfo) + len(at):]
    if ":" in userinfo:
        userinfo = userinfo.split(":", 1)[0] + ":***"
    location, question, query = hostpart.partition("?")
    if question:
        pairs = []
        for pair in query.split("&"):
            key, eq, value = pair.partition("=")
            pairs.append(f"{key}=***" if eq and _is_secret_key(unquote_plus(key)) else pair)
        query = "&".join(pairs)
    return f"{scheme}://{userinfo}{at}{location}{question}{query}"


def redact(text: str, url: str | None = None) -> str:
    """``text`` (a URL or a message) with storage passwords replaced by ***.

    ``url`` (default: ``text`` itself) is parsed as SQLAlchemy parses it; where ``text`` quotes
    the URL it becomes the URL rebuilt with every password masked, however short, and each
    password is masked wherever else it appears, as written, percent-decoded or encoded (a
    driver's message may quote it in its own words).
    """
    url = text.strip() if url is None else url
    masked = text
    if "://" in url:
        for form in (url, engine_url(url)):
            masked = masked.replace(form, _display(form))
    for secret in sorted(_secrets(url), key=len, reverse=True):
        if len(secret) >= 4:  # masking a 1-3 character password would mangle every message
            masked = masked.replace(secret, "***")
    return masked


def engine_url(url: str) -> str:
    """The URL handed to SQLAlchemy: a bare ``postgresql://`` gets the driver bcpareto installs."""
    for bare in ("postgresql://", "postgres://"):
        if url.startswith(bare):
            return f"postgresql+{POSTGRES_DRIVER}://" + url[len(bare):]
    return url


def check_storage_url(url: str) -> None:
    """The URL's form and its driver, before anything is created (no connection, no file)."""
    import importlib.util

    parsed = _parse(engine_url(url))
    shown = redact(url) if "://" in url else "(no scheme://)"
    if parsed is None:
        raise StorageError(f"--storage {shown}: not a storage URL; expected {URL_FORMS}")
    backend, driver = parsed.get_backend_name(), parsed.get_driver_name()
    if backend not in BACKENDS:
        raise StorageError(
            f"--storage {shown}: unsupported scheme {url.split('://', 1)[0]!r}; expected {URL_FORMS}"
        )
    if backend == "sqlite":
        if not parsed.database or parsed.database == ":memory:" or parsed.database.startswith("file:"):
            raise StorageError(f"--storage {shown}: an SQLite URL needs a file path; expected {URL_FORMS}")
        if len(str(Path(parsed.database).resolve())) > SQLITE_MAX_PATH:
            raise StorageError(
                f"--storage {shown}: the SQLite file's path is {len(str(Path(parsed.database).resolve()))} "
                f"characters; SQLite opens at most {SQLITE_MAX_PATH}: use a shorter --run-dir (or a "
                "PostgreSQL --storage)")
        return
    if not parsed.host:
        raise StorageError(f"--storage {shown}: no host; expected {URL_FORMS}")
    if not parsed.database:
        raise StorageError(f"--storage {shown}: no database name; expected {URL_FORMS}")
    module = _DRIVER_MODULES.get(driver)
    if module and importlib.util.find_spec(module) is None:
        package = _DRIVER_PACKAGES.get(driver, module)
        raise StorageError(
            f"--storage {shown}: the PostgreSQL driver {module} is not installed; "
            f"install it with: pip install '{package}'"
        )


def check_storage_reachable(url: str) -> None:
    """Connect once and disconnect (PostgreSQL): a wrong host or password stops here, before any
    study, file or folder is created. SQLite files are created later, in the run directory."""
    import sqlalchemy

    if not engine_url(url).startswith("postgresql"):
        return
    try:
        engine = sqlalchemy.create_engine(engine_url(url), connect_args={"connect_timeout": 10})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # driver errors: host down, bad password, no such database
        raise StorageError(f"cannot connect to the study storage {redact(url)}: "
                           f"{redact(first_line(exc), url)}") from None


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


def open_storage(
    url: str, *, read_only: bool = False, must_exist: bool = False
) -> optuna.storages.RDBStorage:
    """The shared study storage, with heartbeats and retry of stale trials switched on.

    ``read_only`` (``bcpareto status``): open a storage that holds studies without writing to it
    (no table creation, no lock file; an SQLite file is opened read-only), and refuse one that
    is missing or holds no study tables.
    """
    import optuna
    import sqlalchemy.exc

    read_only = read_only or must_exist  # must_exist: the earlier name
    check_storage_url(url)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    heartbeat, grace = heartbeat_settings()
    target = engine_url(url)
    engine_kwargs: dict[str, Any] = {}
    creating: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext
    if target.startswith("sqlite"):
        engine_kwargs = {"connect_args": {"timeout": 60}}  # several workers on one file
        path = _sqlite_path(target)
        if read_only:  # no lock file, no tables (a read may still roll back a killed writer's journal)
            _check_sqlite_study_file(path)
        else:
            creating = functools.partial(file_lock, Path(f"{path}.lock"))  # one process creates the tables
    else:  # a server: a pooled connection that a restart of the server broke is replaced, not used
        engine_kwargs = {"pool_pre_ping": True}
        if read_only:
            _check_server_has_studies(url)
    problem = ""
    for _ in range(3):
        try:
            with creating():  # a new one each try: a generator's context manager enters once
                return optuna.storages.RDBStorage(
                    target,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=heartbeat,
                    grace_period=grace,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(
                        max_retry=MAX_RETRY
                    ),
                    skip_table_creation=read_only,
                )
        except ImportError as exc:  # Optuna re-raises the driver's ImportError in its own words
            module = getattr(exc.__cause__, "name", None) or POSTGRES_DRIVER
            raise StorageError(
                f"cannot open the study storage {redact(url)}: the database driver {module} is not "
                f"installed; install it with: pip install '{_DRIVER_PACKAGES.get(module, module)}'"
            ) from None
        except Exception as exc:  # SQLAlchemy/driver errors: bad URL, server down, bad password
            problem = first_line(exc)
            if not (isinstance(exc, sqlalchemy.exc.IntegrityError) or "already exists" in problem):
                break
            # Workers that start together on an empty database race to create its tables; the
            # losers see "already exists" and succeed on the next try.
            time.sleep(0.5 + random.random())
    raise StorageError(f"cannot open the study storage {redact(url)}: {redact(problem, url)}")


def _sqlite_path(url: str) -> str:
    """The file of an SQLite URL, unquoted as SQLAlchemy opens it."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).database or ""
    except Exception:  # noqa: BLE001 - a URL SQLAlchemy cannot parse: as written
        return url.split("///", 1)[-1].split("?", 1)[0]


def _check_sqlite_study_file(path: str) -> None:
    """``path`` is an SQLite file holding Optuna's tables: checked read-only, nothing written."""
    import sqlite3

    hint = "run `bcpareto search` first, or pass --run-dir or --storage"
    if not Path(path).is_file():
        raise StorageError(f"no study storage at {path}; {hint}")
    try:
        # mode=rw: never creates the file; reading sqlite_master writes nothing (a 0-byte file
        # stays 0 bytes), and may roll back the journal of a writer that was killed.
        with contextlib.closing(sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?mode=rw",
                                                uri=True, timeout=60)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path}: not a study storage (SQLite says: {exc}); {hint}") from None
    if "studies" not in tables:
        raise StorageError(f"{path}: holds no studies ({'an empty file' if not tables else 'no study tables'}); "
                           f"{hint}")


def _check_server_has_studies(url: str) -> None:
    import sqlalchemy

    check_storage_reachable(url)
    engine = sqlalchemy.create_engine(engine_url(url))
    try:
        has = sqlalchemy.inspect(engine).has_table("studies")
    except Exception as exc:  # noqa: BLE001 - driver errors, in the user's words
        raise StorageError(f"cannot read the study storage {redact(url)}: {redact(first_line(exc), url)}") from None
    finally:
        engine.dispose()
    if not has:
        raise StorageError(f"no studies in {redact(url)} (no study tables); run `bcpareto search` first")


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def fault_line(exc: BaseException) -> str:
    """The first line of the database's own error under Optuna's wrapper (StorageInternalError
    says only "An exception is raised during the commit ..." whatever the server said)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if type(cause).__module__.split(".")[0] in ("sqlalchemy", "psycopg2", "psycopg", "sqlite3"):
            return first_line(cause)
        cause = cause.__cause__ or cause.__context__
    return first_line(exc)


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
    path = _sqlite_path(url) if url.startswith("sqlite") else None
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
