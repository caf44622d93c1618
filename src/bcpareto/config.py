"""Training presets: configs/*.toml -> a small frozen TrainConfig. No TensorFlow here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Teacher:
    """A trained model whose softened outputs students learn from (``search --teacher``)."""

    label: str  # what the user named: a grid id ("0") or the .keras file's name
    path: str  # the .keras file
    sha256: str  # short digest of that file: the teacher's identity in the study name


def _config_dirs() -> tuple[Path, ...]:
    """Where preset names are looked up: ./configs, then the repository's configs/."""
    return (Path.cwd() / "configs", Path(__file__).resolve().parents[2] / "configs")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how one grid point is trained and measured."""

    name: str = "default"
    image_size: int = 64
    color_mode: str = "rgb"  # "rgb" | "grayscale"
    cell_crop: int = 0  # side (source pixels) of a square window on the stained cell; 0: whole frame
    padding: str = "same"  # "same" | "valid" (the earlier version used "valid")
    rescale: bool = True  # divide pixels by 255 inside the model
    bn_momentum: float = 0.99  # Keras default; lower settles the BatchNorm statistics in short runs
    conv_dropout: float = 0.3
    dense_dropout: float = 0.5
    batch_size: int = 32
    epochs: int = 10
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"  # "constant" | "cosine"
    warmup_epochs: int = 0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: tuple[str, ...] = ()  # any of "flip", "rot90", "brightness", "contrast", "stain", "zoom"
    limit_per_class: int | None = None  # images per class and split, for quick runs
    validation: str = "holdout"  # "holdout": stratified share of TRAIN; "test": TEST (earlier way)
    val_fraction: float = 0.15  # share of TRAIN held out for model selection
    drop_test_duplicates: bool = True  # TEST files byte-identical to TRAIN files leak; drop them
    edge_metrics: bool = True  # TFLite fp32/fp16/int8 sizes, int8 TEST accuracy, latency
    latency_runs: int = 50  # timed single-image runs (after 10 warm-up runs), 1 thread
    # Distillation (only with --teacher): loss = (1 - w) CE(labels) + w T^2 KL(teacher_T || student_T).
    distill_temperature: float = 4.0  # softens the teacher's ranking of wrong classes; T 2 lost more than 4
    distill_weight: float = 0.5  # w on the soft term; 0.5 lost less than 0.9 (benchmarks/recipe.md "Distillation")
    teacher: Teacher | None = None  # set by --teacher, never by a preset
    seed: int = 0
    grid: str | None = None  # default grid sheet, relative to the preset (None: hyper_parameters.xlsx)

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "grayscale" else 3

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["augment"] = list(self.augment)
        return data

    def fingerprint(self) -> str:
        """Short hash of every value that changes a trained model (the name excluded)."""
        data = self.to_dict()
        data.pop("name")
        data.pop("grid")  # the grid's points are hashed into the study name on their own
        if self.teacher is None:  # distillation settings change nothing then: old study names stay
            for key in ("teacher", "distill_temperature", "distill_weight"):
                data.pop(key)
        else:  # the teacher is its file's content, wherever it lies and however it was named
            data["teacher"] = self.teacher.sha256
        blob = json.dumps(data, sort_keys=True).encode()
        return hashlib.sha1(blob).hexdigest()[:8]


_FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
_CHOICES = {
    "color_mode": ("rgb", "grayscale"),
    "padding": ("same", "valid"),
    "optimizer": ("adam", "adamw", "sgd"),
    "lr_schedule": ("constant", "cosine"),
    "validation": ("holdout", "test"),
}
_AUGMENTATIONS = ("flip", "rot90", "brightness", "contrast", "stain", "zoom")


def resolve_preset(name_or_path: str) -> Path:
    """A preset name (configs/NAME.toml, looked up in ./configs then the repository) or a path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise ConfigError(f"{path}: no such preset file")
        return path
    for folder in _config_dirs():
        candidate = folder / f"{name_or_path}.toml"
        if candidate.is_file():
            return candidate
    known = sorted({p.stem for d in _config_dirs() if d.is_dir() for p in d.glob("*.toml")})
    raise ConfigError(
        f"unknown preset {name_or_path!r}; expected a .toml path or one of: {', '.join(known)}"
    )


def load_config(name_or_path: str = "default", **overrides: Any) -> TrainConfig:
    """Read a preset, apply non-None overrides (CLI options), validate every value."""
    path = resolve_preset(name_or_path)
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from exc
    raw.setdefault("name", path.stem)
    unknown = sorted(set(raw) - set(_FIELDS))
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(unknown)}; known keys: {', '.join(_FIELDS)}"
        )
    if raw.get("grid"):  # relative to the preset's folder
        raw["grid"] = str((path.parent / raw["grid"]).resolve())
    raw.update({k: v for k, v in overrides.items() if v is not None})
    return _validate(raw, source=str(path))


def _validate(raw: dict[str, Any], *, source: str) -> TrainConfig:
    problems = []
    for key, value in raw.items():
        if key in _CHOICES and value not in _CHOICES[key]:
            problems.append(f"{key} = {value!r}: expected one of {', '.join(_CHOICES[key])}")
    for key in ("image_size", "batch_size", "epochs"):
        if key in raw and (not isinstance(raw[key], int) or raw[key] < 1):
            problems.append(f"{key} = {raw[key]!r}: expected a positive integer")
    if "cell_crop" in raw and (not isinstance(raw["cell_crop"], int) or not 0 <= raw["cell_crop"] <= 4096
                               or 0 < raw["cell_crop"] < 16):
        problems.append(f"cell_crop = {raw['cell_crop']!r}: expected 0 (whole frame) or a window side "
                        "in source pixels, 16-4096 (e.g. 144)")
    if raw.get("limit_per_class") is not None and (
        not isinstance(raw["limit_per_class"], int) or raw["limit_per_class"] < 1
    ):
        problems.append(f"limit_per_class = {raw['limit_per_class']!r}: expected a positive integer")
    for key in ("conv_dropout", "dense_dropout", "label_smoothing"):
        if key in raw and not 0 <= raw[key] < 1:
            problems.append(f"{key} = {raw[key]!r}: expected a number in [0, 1)")
    if "val_fraction" in raw and not 0 < raw["val_fraction"] < 1:
        problems.append(f"val_fraction = {raw['val_fraction']!r}: expected a number in (0, 1)")
    if "learning_rate" in raw and not raw["learning_rate"] > 0:
        problems.append(f"learning_rate = {raw['learning_rate']!r}: expected a positive number")
    problems += _distill_problems(raw)
    augment = raw.get("augment", [])
    bad = [a for a in augment if a not in _AUGMENTATIONS]
    if bad:
        problems.append(f"augment has {bad[0]!r}: expected any of {', '.join(_AUGMENTATIONS)}")
    raw["augment"] = tuple(augment)
    if problems:
        raise ConfigError(f"{source}:\n  " + "\n  ".join(problems))
    return TrainConfig(**raw)


def _distill_problems(raw: dict[str, Any]) -> list[str]:
    """distill_temperature > 0 (at most 100), distill_weight in [0, 1]; teacher only from --teacher."""
    problems = []
    ranges = {"distill_temperature": ("a number in (0, 100]", lambda v: 0 < v <= 100),
              "distill_weight": ("a number in [0, 1]", lambda v: 0 <= v <= 1)}
    for key, (expected, ok) in ranges.items():
        value = raw.get(key, 1.0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not ok(value):
            problems.append(f"{key} = {value!r}: expected {expected}")
        elif key in raw:
            raw[key] = float(value)
    if raw.get("teacher") is not None and not isinstance(raw["teacher"], Teacher):
        problems.append(f"teacher = {raw['teacher']!r}: set the teacher with `search --teacher`, "
                        "not in a preset")
    return problems
