"""The one owner of a run directory's files: runs/<study>/grid_<id>.* and atomic writes.

    <run_dir>/runs/<study>/grid_<id>.keras        the trained Keras model
    <run_dir>/runs/<study>/grid_<id>_int8.tflite  the int8 file whose accuracy and latency were measured
    <run_dir>/runs/<study>/grid_<id>.json         the CSV row, TEST confusion matrix, classes, config
    <run_dir>/runs/<study>/grid_<id>_predictions.npz  class probabilities on validation and TEST
    <run_dir>/runs/<study>/images_<digest>.npz    the scored images: path, class, source group, fold

Every file bcpareto writes goes through ``write_atomic`` (cache.py; ``save_keras_atomic`` for Keras): written to a
temporary file beside the target, flushed, then renamed, so a crash never leaves half a file.
A model's record is written last and holds the sha256 and size of each of its files
(``artefacts``), so a file replaced, truncated or deleted later is caught before it is used
(``TrialArtefacts.check``); records of older runs have none and are checked for readability only.
Over 400 lines on purpose: it is the one place that knows the layout, so every reader and writer
of these files (search, export, edge, refine, report) goes through it.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import re
import stat
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .cache import new_file_mode, write_atomic
from .errors import ArtefactError, BcParetoError, ConfigError

if TYPE_CHECKING:
    import keras

RUNS = "runs"


def save_keras_atomic(model: keras.Model, path: Path) -> None:
    """``model.save(path)`` through a temporary .keras file (Keras insists on the suffix)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".keras")
    os.close(fd)
    try:
        with warnings.catch_warnings():  # Keras 3.15 + numpy 2 warn inside save(); not ours to fix
            warnings.filterwarnings("ignore", message="__array__ implementation", category=DeprecationWarning)
            model.save(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def study_dir(run_dir: Path, study: str) -> Path:
    """Where the trained models of one study go (always inside ``run_dir/runs``)."""
    if not study or study in (".", "..") or "/" in study or "\\" in study or "\0" in study:
        raise ConfigError(f"study name {study!r}: not usable as a folder name under {Path(run_dir) / RUNS}")
    return Path(run_dir) / RUNS / study


def check_creatable_dir(path: Path, *, option: str) -> None:
    """``path`` is a writable folder, or one that can be created (nothing is created here)."""
    path = Path(path)
    probe = path
    while True:
        try:
            mode = probe.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            if probe.parent == probe:
                break
            probe = probe.parent
            continue
        except OSError as exc:
            raise ConfigError(f"{option} {path}: cannot be used ({exc.strerror or exc} at {probe}); "
                              "expected a folder that exists or can be created") from None
        if not stat.S_ISDIR(mode):
            where = "exists and is" if probe == path else f"cannot be created: {probe} is"
            raise ConfigError(f"{option} {path}: {where} a file, not a folder; expected a folder "
                              "that exists or can be created")
        if not os.access(probe, os.W_OK | os.X_OK):
            where = "is not writable" if probe == path else f"cannot be created: no permission to write in {probe}"
            raise ConfigError(f"{option} {path}: {where}")
        return


def _stem(grid_id: int, repeat: int = 0) -> str:
    return f"grid_{grid_id}" + (f"_r{repeat}" if repeat else "")  # repeat 0: the names of old runs


def _keras_path(folder: Path, grid_id: int, repeat: int = 0) -> Path:
    return folder / f"{_stem(grid_id, repeat)}.keras"


def _int8_path(folder: Path, grid_id: int, repeat: int = 0) -> Path:
    return folder / f"{_stem(grid_id, repeat)}_int8.tflite"


def _record_path(folder: Path, grid_id: int, repeat: int = 0) -> Path:
    return folder / f"{_stem(grid_id, repeat)}.json"


def save_models(
    folder: Path, grid_id: int, *, repeat: int = 0, model: keras.Model, int8: bytes | None
) -> Path:
    """The trained Keras model (and its measured int8 file); returns the .keras path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = _keras_path(folder, grid_id, repeat)
    save_keras_atomic(model, path)
    if int8 is not None:
        write_atomic(_int8_path(folder, grid_id, repeat), int8)
    return path


def save_int8(folder: Path, grid_id: int, *, repeat: int = 0, int8: bytes) -> Path:
    """The int8 TFLite file of a model measured after its search (`bcpareto edge`)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = _int8_path(folder, grid_id, repeat)
    write_atomic(path, int8)
    return path


def save_record(folder: Path, grid_id: int, *, repeat: int = 0, record: dict[str, Any]) -> None:
    """The trial's record (row, confusion matrix, classes, edge protocol, config) as JSON, with
    the sha256 and size of every file of the model as it is on disk now (``DIGESTS``): write
    the record after the model's files, and again whenever one of them is rewritten."""
    folder.mkdir(parents=True, exist_ok=True)
    digests = {path.name: file_digest(path) for path in _unit_files(folder, grid_id, repeat) if path.is_file()}
    record = {**record, DIGESTS: digests}
    write_atomic(_record_path(folder, grid_id, repeat), json.dumps(record, indent=1, default=str))


DIGESTS = "artefacts"  # a record's key: file name -> {"sha256", "bytes"} of each file of its model


def file_digest(path: Path) -> dict[str, Any]:
    """{"sha256": hex digest, "bytes": size} of a file, read in blocks."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"sha256": digest.hexdigest(), "bytes": size}


def _unit_files(folder: Path, grid_id: int, repeat: int = 0) -> list[Path]:
    """The files of one model that its record vouches for."""
    return [_keras_path(folder, grid_id, repeat), _int8_path(folder, grid_id, repeat),
            _predictions_path(folder, grid_id, repeat)]


def record_files(folder: Path) -> dict[tuple[int, int], Path]:
    """The trial records of one study folder, keyed by ``(grid_id, repeat)``, sorted by key.

    Records are written atomically (``save_record``), so every file listed is complete, even
    while the search that writes them is running.
    """
    found = {}
    for path in Path(folder).glob("grid_*.json"):
        match = re.fullmatch(r"grid_(\d+)(?:_r(\d+))?", path.stem)
        if match:
            found[int(match[1]), int(match[2] or 0)] = path
    return dict(sorted(found.items()))


@dataclass(frozen=True)
class TrialArtefacts:
    """What a finished trial left in the run directory (runs/<study>/grid_<id>.*)."""

    study: str
    keras_model: Path
    int8_model: Path | None
    record: dict[str, Any]  # row, confusion, classes, edge_protocol, config, artefacts (DIGESTS)
    record_file: Path | None = None
    grid_id: int = 0
    repeat: int = 0

    @property
    def verified(self) -> bool:
        """Whether the record holds its files' digests (records before digests hold none)."""
        return isinstance(self.record.get(DIGESTS), dict)

    def problems(self) -> list[str]:
        """Each file of this model that is missing, changed since its record was written, or
        unreadable, as "<path>: what is wrong"; [] when all are sound. Files with a digest in
        the record are compared with it; the others (older runs) are checked for readability."""
        folder = self.keras_model.parent
        expected = self.record.get(DIGESTS) if self.verified else {}
        found = []
        for path in _unit_files(folder, self.grid_id, self.repeat):
            want = expected.get(path.name)
            if not (isinstance(want, dict) and {"sha256", "bytes"} <= want.keys()):
                want = None
            if path != self.keras_model and want is None and not path.is_file():
                continue  # an optional file (int8, predictions) the record does not list
            problem = _file_problem(path, want, record=self.record_file)
            if problem:
                found.append(f"{path}: {problem}")
        return found

    def check(self) -> None:
        """Raise ArtefactError naming every bad file of this model and what to do; else return."""
        problems = self.problems()
        if not problems:
            return
        what = f"grid point {self.grid_id}" + (f" repeat {self.repeat}" if self.repeat else "")
        parent = self.record.get("row", {}).get("parent_grid_id")
        again = (f"refine grid point {parent} again (`bcpareto refine {parent} --epochs N`)"
                 if isinstance(parent, int) else
                 f"train {what} again in a new study (`bcpareto search ... --study NEW_NAME`)")
        raise ArtefactError(
            f"{what} of study {self.study!r} cannot be used: " + "; ".join(problems)
            + f". Restore the file{'s' if len(problems) > 1 else ''} from a copy of the run directory, or {again}"
        )


def _file_problem(path: Path, want: dict[str, Any] | None, *, record: Path | None) -> str | None:
    """What is wrong with one file of a model (None: nothing), against its digest when known."""
    if not path.exists():
        return "missing" + (f" (its record {record.name} lists it)" if want and record else "")
    if not path.is_file():
        return "not a file"
    try:
        have = file_digest(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if want is not None:
        if have["sha256"] == want["sha256"] and have["bytes"] == want["bytes"]:
            return None  # the very bytes that were written and measured
        how = "truncated or replaced" if have["bytes"] < want["bytes"] else "replaced or edited"
        return (f"{how} since it was written ({have['bytes']:,} bytes, sha256 {have['sha256'][:12]}; "
                f"the record{' ' + record.name if record else ''} expects {want['bytes']:,} bytes, "
                f"sha256 {str(want['sha256'])[:12]})")
    if path.suffix in (".keras", ".npz"):
        try:
            with zipfile.ZipFile(path) as archive:
                broken = archive.testzip()
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
            return f"unreadable: not a {'Keras model' if path.suffix == '.keras' else 'NumPy .npz'} file ({exc})"
        if broken is not None:
            return f"unreadable: {broken} inside it is corrupt"
        if path.suffix == ".keras" and "config.json" not in names:
            return "unreadable: not a Keras model file (no config.json inside)"
    elif path.suffix == ".tflite":
        with open(path, "rb") as handle:
            head = handle.read(8)
        if head[4:8] != b"TFL3":
            return "unreadable: not a TFLite file (no TFL3 identifier)"
    return None


def load_keras(path: Path) -> keras.Model:
    """A saved model, loaded without its optimizer; an unreadable file is an ArtefactError naming it."""
    import keras

    try:
        return keras.saving.load_model(path, compile=False)
    except Exception as exc:  # Keras raises ValueError, OSError, KeyError, zip errors... for a bad file
        reason = (str(exc).strip().splitlines() or [""])[0][:200]
        raise ArtefactError(f"{path}: unreadable as a Keras model ({type(exc).__name__}: {reason})") from None


def studies_with_trial(run_dir: Path, grid_id: int, *, repeat: int = 0) -> list[str]:
    """The studies under run_dir/runs that hold a record of this grid point, sorted (whether its
    files are all there and sound is ``TrialArtefacts.check``'s to say)."""
    folders = sorted(p for p in (Path(run_dir) / RUNS).glob("*") if p.is_dir())
    return [f.name for f in folders if _record_path(f, grid_id, repeat).is_file()]


def find_trial(
    run_dir: Path, grid_id: int, *, study: str | None = None, repeat: int = 0
) -> TrialArtefacts:
    """The artefacts of grid point `grid_id` (its `repeat`-th run; 0 is the first); `study` is
    needed only when several studies have it. Its record is read here (an unreadable one is an
    ArtefactError naming it); its files are checked by the caller, ``TrialArtefacts.check``."""
    runs = Path(run_dir) / RUNS
    found = [runs / s for s in studies_with_trial(run_dir, grid_id, repeat=repeat) if study in (None, s)]
    what = f"grid point {grid_id}" + (f" repeat {repeat}" if repeat else "")
    if not found:
        stems = {p.stem.removeprefix("grid_") for p in runs.glob("*/grid_*.json")}
        known = sorted((s for s in stems if re.fullmatch(r"\d+(_r\d+)?", s)),
                       key=lambda s: [int(n) for n in s.split("_r")])
        raise BcParetoError(
            f"no finished trial for {what} under {runs}"
            + (f" in study {study!r}" if study else "")
            + (f"; finished grid points: {', '.join(k.replace('_r', ' repeat ') for k in known)}" if known
               else "; run `bcpareto search` first")
        )
    if len(found) > 1:
        raise BcParetoError(
            f"{what} was trained in {len(found)} studies; pick one with --study: "
            + ", ".join(f.name for f in found)
        )
    folder = found[0]
    int8 = _int8_path(folder, grid_id, repeat)
    record_file = _record_path(folder, grid_id, repeat)
    return TrialArtefacts(
        study=folder.name,
        keras_model=_keras_path(folder, grid_id, repeat),
        int8_model=int8 if int8.is_file() else None,
        record=read_record(record_file),
        record_file=record_file,
        grid_id=grid_id,
        repeat=repeat,
    )


def read_record(path: Path) -> dict[str, Any]:
    """One model's record (``save_record``); a file that is not one is an ArtefactError naming it."""
    try:
        record = json.loads(Path(path).read_bytes())
    except OSError as exc:
        raise ArtefactError(f"{path}: the model's record cannot be read ({exc.strerror or exc})") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        raise ArtefactError(
            f"{path}: the model's record is not valid JSON ({exc}); it was truncated or edited. Restore "
            "it from a copy of the run directory, or train the point again in a new study "
            "(`bcpareto search ... --study NEW_NAME`)"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("row"), dict):
        raise ArtefactError(f"{path}: not a model's record (a JSON object with a 'row' object expected)")
    return record


# Kept predictions (cvstats.py recomputes every statistic from them). One image table per study
# folder, named by its digest, lists every scored image; each model's file refers to it by index.
_TABLE_PREFIX = "images_"


def save_image_table(folder: Path, table: dict[str, np.ndarray]) -> str:
    """Write the study's image table once (atomic; the same bytes from every worker); returns its name."""
    short = {**table, "path": np.array(["/".join(Path(p).parts[-3:]) for p in table["path"]], dtype=str)}
    digest = hashlib.sha1()
    for key in sorted(short):
        digest.update(key.encode())
        digest.update(np.ascontiguousarray(short[key]).tobytes())
    name = f"{_TABLE_PREFIX}{digest.hexdigest()[:12]}"
    path = folder / f"{name}.npz"
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_atomic(path, _npz_bytes(short))
    return name


def save_predictions(folder: Path, grid_id: int, *, repeat: int = 0, table: str, predictions: Any) -> None:
    """A model's class probabilities on its validation and TEST images (float32; int8 outputs float16), by table index."""
    index = _table_index(folder, table)
    arrays: dict[str, np.ndarray] = {"table": np.array(table)}
    for split in ("val", "test"):
        paths = getattr(predictions, f"{split}_paths")
        arrays[f"{split}_index"] = np.array([index["/".join(Path(p).parts[-3:])] for p in paths],
                                            dtype=np.int32)
        for suffix in ("", "_int8"):
            values = getattr(predictions, f"{split}{suffix}")
            if values is not None:
                # float32: float16 would turn near-ties into ties and move an argmax (int8 outputs,
                # q/256, are exact in float16)
                arrays[f"{split}_prob{suffix}"] = np.asarray(values, dtype=np.float16 if suffix else np.float32)
    write_atomic(_predictions_path(folder, grid_id, repeat), _npz_bytes(arrays))


def load_predictions(folder: Path) -> tuple[dict[str, dict[str, np.ndarray]], dict[tuple[int, int], dict[str, np.ndarray]]]:
    """(image tables by name, each model's kept predictions keyed by (grid_id, repeat))."""
    folder = Path(folder)
    tables = {p.stem: dict(np.load(p)) for p in sorted(folder.glob(f"{_TABLE_PREFIX}*.npz"))}
    found = {}
    for path in folder.glob("grid_*_predictions.npz"):
        match = re.fullmatch(r"grid_(\d+)(?:_r(\d+))?_predictions", path.stem)
        if match:
            with np.load(path) as data:
                found[int(match[1]), int(match[2] or 0)] = {k: data[k] for k in data.files}
    return tables, dict(sorted(found.items()))


def _predictions_path(folder: Path, grid_id: int, repeat: int = 0) -> Path:
    return folder / f"{_stem(grid_id, repeat)}_predictions.npz"


@functools.lru_cache(maxsize=8)
def _cached_index(path: Path, mtime_ns: int) -> dict[str, int]:
    with np.load(path) as data:
        return {str(p): i for i, p in enumerate(data["path"])}


def _table_index(folder: Path, table: str) -> dict[str, int]:
    path = folder / f"{table}.npz"
    return _cached_index(path, path.stat().st_mtime_ns)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()
