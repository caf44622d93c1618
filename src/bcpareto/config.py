"""Training presets: configs/*.toml -> a small frozen TrainConfig. No TensorFlow here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .gridspec import MAX_IMAGE_SIDE, MIN_IMAGE_SIDE, GridPoint

DEFAULT_GRID = "hyper_parameters.xlsx"  # a preset without `grid`: this sheet in the working folder


def shipped_configs() -> Path:
    """The folder of the presets and grid sheets that ship with bcpareto.

    They live in the repository's top-level configs/, which pyproject.toml maps to the package
    ``bcpareto.configs``. Run from a checkout (on PYTHONPATH, or installed editable), that is the
    checkout's own configs/; from a wheel, it is the installed package data.
    """
    package = Path(__file__).resolve().parent
    checkout = package.parents[1]
    # The checkout first: another checkout's editable install may map bcpareto.configs to its
    # own configs/ while this source tree runs (PYTHONPATH=src).
    if package.parent.name == "src" and (checkout / "pyproject.toml").is_file():
        return checkout / "configs"
    return Path(str(resources.files("bcpareto.configs")))  # wheels install as plain folders


@dataclass(frozen=True)
class Teacher:
    """A trained model whose softened outputs students learn from (``search --teacher``)."""

    label: str  # what the user named: a grid id ("0") or the .keras file's name
    path: str  # the .keras file
    sha256: str  # short digest of that file: the teacher's identity in the study name


def _config_dirs() -> tuple[Path, ...]:
    """Where preset names and relative grid sheets are looked up: ./configs, then the shipped."""
    return (Path.cwd() / "configs", shipped_configs())


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides how one grid point is trained and measured.

    The defaults are configs/default.toml's values (tests/test_config.py keeps them equal), so
    code that builds a TrainConfig directly trains the same way as the default preset."""

    name: str = "default"
    image_size: int = 64
    color_mode: str = "rgb"  # "rgb" | "grayscale"
    cell_crop: int = 144  # side (source pixels) of a square window on the stained cell; 0: whole frame
    padding: str = "same"  # "same" | "valid" (the earlier version used "valid")
    rescale: bool = True  # divide pixels by 255 inside the model
    bn_momentum: float = 0.9  # Keras default; lower settles the BatchNorm statistics in short runs
    conv_dropout: float = 0.1
    dense_dropout: float = 0.1
    batch_size: int = 32
    epochs: int = 10
    optimizer: str = "adam"
    learning_rate: float = 0.002
    lr_schedule: str = "cosine"  # "constant" | "cosine"
    warmup_epochs: int = 0
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    augment: tuple[str, ...] = ("flip", "rot90", "brightness", "zoom")  # any of "flip", "rot90", "brightness", "contrast", "stain", "zoom"
    limit_per_class: int | None = None  # images per class and split, for quick runs
    # "grouped": a share of TRAIN's source smears (groups.py), no smear on both sides, and TEST
    # without the images whose smear is in TRAIN; "holdout": a share of TRAIN's images (copies
    # of one smear on both sides: optimistic); "test": TEST (the earlier way)
    validation: str = "grouped"
    val_fraction: float = 0.15  # share of TRAIN held out for model selection
    # validation "cv": grouped, class-stratified K-fold cross-validation over TRAIN's source
    # smears; each grid point trains once per fold (cvstats.py pools the out-of-fold predictions)
    folds: int = 5
    drop_test_duplicates: bool = True  # TEST files byte-identical to TRAIN files leak; drop them
    edge_metrics: bool = True  # TFLite fp32/fp16/int8 sizes, int8 TEST accuracy, latency
    latency_runs: int = 50  # timed single-image runs (after 10 warm-up runs), 1 thread
    # TFLite files without tensor and signature names (4.5-6.5 KB less each, measured; read
    # inputs and outputs by index, get_input_details(), not by signature name)
    strip_tflite_names: bool = False
    # int8 weights with one scale per tensor instead of one per output channel (the converter's
    # default): smaller files for small nets, fewer quantisation records (benchmarks/bench_bytes.py)
    int8_per_tensor: bool = False
    # Distillation (only with --teacher): loss = (1 - w) CE(labels) + w T^2 KL(teacher_T || student_T).
    distill_temperature: float = 4.0  # softens the teacher's ranking of wrong classes; T 2 lost more than 4
    distill_weight: float = 0.5  # w on the soft term; 0.5 lost less than 0.9 (experiments/recipe.md "Distillation")
    teacher: Teacher | None = None  # set by --teacher, never by a preset
    # Pruned grid points (the sheet's prune column): epochs of fine-tuning the pruned model after
    # its parent trained for `epochs`; 0 = half of `epochs`, rounded up (not tuned by measurement)
    prune_finetune_epochs: int = 0
    seed: int = 0
    grid: str | None = None  # grid sheet; relative: beside the preset, else shipped (None: DEFAULT_GRID)

    @property
    def channels(self) -> int:
        return 1 if self.color_mode == "grayscale" else 3

    @property
    def finetune_epochs(self) -> int:
        """Epochs a pruned model is fine-tuned for: prune_finetune_epochs, else half of epochs."""
        return self.prune_finetune_epochs or -(-self.epochs // 2)

    def at(self, point: GridPoint) -> TrainConfig:
        """This preset as one grid point trains: with the point's own image size, if its sheet
        row gives one (the sheet's image_size column wins over the preset and --image-size)."""
        if not point.image_size or point.image_size == self.image_size:
            return self
        return dataclasses.replace(self, image_size=point.image_size)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["augment"] = list(self.augment)
        return data

    def fingerprint(self) -> str:
        """Short hash of every value that changes a trained model (the name excluded)."""
        data = self.to_dict()
        data.pop("name")
        data.pop("grid")  # the grid's points are hashed into the study name on their own
        if not self.strip_tflite_names:  # added later: the studies made before keep their names
            data.pop("strip_tflite_names")
        if not self.int8_per_tensor:
            data.pop("int8_per_tensor")
        if not self.prune_finetune_epochs:
            data.pop("prune_finetune_epochs")
        if self.validation != "cv":  # folds change nothing then: old study names stay
            data.pop("folds")
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
    "validation": ("grouped", "cv", "holdout", "test"),
}
_AUGMENTATIONS = ("flip", "rot90", "brightness", "contrast", "stain", "zoom")


def resolve_preset(name_or_path: str) -> Path:
    """A preset name (configs/NAME.toml, looked up in ./configs, then the shipped presets) or a path."""
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
    if raw.get("grid"):
        raw["grid"] = str(_grid_beside(path, raw["grid"]))
    given = {k: v for k, v in overrides.items() if v is not None}
    raw.update(given)
    return _validate(raw, source=str(path), options=set(given))


def resolve_grid(config: TrainConfig) -> Path:
    """The grid sheet a command uses when none is named: the preset's, else DEFAULT_GRID."""
    return Path(config.grid) if config.grid else Path(DEFAULT_GRID)


def _grid_beside(preset: Path, grid: str) -> Path:
    """A preset's `grid`: absolute as written; relative, beside the preset, else shipped.

    So a user's ./configs/quick.toml copied from the shipped one still finds edge_grid.xlsx.
    When the sheet is in neither place, the path beside the preset is returned, for the error.
    """
    beside = (preset.parent / grid).resolve()
    if beside.is_file() or Path(grid).is_absolute():
        return beside
    shipped = shipped_configs() / grid
    return shipped.resolve() if shipped.is_file() else beside


# Upper bounds where a value can exhaust memory or time. The frames are 320x240 (a cell window
# 144 px): a larger input only upsamples them, while the decoded cache grows with the square of
# the side (12.4k TRAIN images at 512 px RGB: 9.8 GB) and every conv layer's activations too.
MAX_IMAGE_SIZE = MAX_IMAGE_SIDE  # the grid sheet's image_size column has the same range
MAX_BATCH_SIZE = 4096  # a batch of 4096 64-px images is 200 MB of float32 input alone
MAX_EPOCHS = 10_000
MAX_LATENCY_RUNS = 100_000
MAX_FOLDS = 50  # the smallest class has ~16 source smears in TRAIN: data.py checks the real bound
_KINDS = {  # key -> (expected TOML type(s), how the message names it)
    "name": (str, "a string"), "color_mode": (str, "a string"), "padding": (str, "a string"),
    "optimizer": (str, "a string"), "lr_schedule": (str, "a string"), "validation": (str, "a string"),
    "rescale": (bool, "true or false"), "drop_test_duplicates": (bool, "true or false"),
    "edge_metrics": (bool, "true or false"), "strip_tflite_names": (bool, "true or false"),
    "int8_per_tensor": (bool, "true or false"),
    "image_size": (int, "a whole number"), "cell_crop": (int, "a whole number"),
    "batch_size": (int, "a whole number"), "epochs": (int, "a whole number"),
    "warmup_epochs": (int, "a whole number"), "latency_runs": (int, "a whole number"),
    "seed": (int, "a whole number"), "limit_per_class": (int, "a whole number"),
    "folds": (int, "a whole number"), "prune_finetune_epochs": (int, "a whole number"),
    "bn_momentum": (float, "a number"), "conv_dropout": (float, "a number"),
    "dense_dropout": (float, "a number"), "learning_rate": (float, "a number"),
    "weight_decay": (float, "a number"), "label_smoothing": (float, "a number"),
    "val_fraction": (float, "a number"), "grid": (str, "a path string"),
    "augment": (list, "a list of strings"),
}
_RANGES: dict[str, tuple[float, float, str]] = {  # key -> (low, high, what the range is)
    "image_size": (MIN_IMAGE_SIDE, MAX_IMAGE_SIZE, f"{MIN_IMAGE_SIDE}-{MAX_IMAGE_SIZE} px (the frames are 320x240: a larger "
                   "input only upsamples them, and memory grows with its square)"),
    "batch_size": (1, MAX_BATCH_SIZE, f"1-{MAX_BATCH_SIZE}"),
    "epochs": (1, MAX_EPOCHS, f"1-{MAX_EPOCHS}"),
    "warmup_epochs": (0, MAX_EPOCHS, f"0-{MAX_EPOCHS}"),
    "prune_finetune_epochs": (0, MAX_EPOCHS, f"0-{MAX_EPOCHS} (0: half of epochs)"),
    "latency_runs": (1, MAX_LATENCY_RUNS, f"1-{MAX_LATENCY_RUNS}"),
    "seed": (0, 2**32 - 1, "0-4294967295"),
    "limit_per_class": (1, 10**9, "a positive whole number"),
    "folds": (2, MAX_FOLDS, f"2-{MAX_FOLDS} (cross-validation needs at least two folds)"),
    "bn_momentum": (0, 1, "[0, 1)"), "weight_decay": (0, 1, "[0, 1)"),
}


def _kind_problem(key: str, value: Any) -> str | None:
    """A message when ``value`` is not of the key's type (a TOML string where a number belongs)."""
    if key not in _KINDS or (key in ("limit_per_class", "grid") and value is None):
        return None
    kind, expected = _KINDS[key]
    ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
    if kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is list:
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
    if ok:
        return None
    hint = ""
    if isinstance(value, str) and kind in (int, float):
        hint = f" (write {key} = {value.strip()} without quotes)" if _numeric(value) else ""
    return f"{key} = {value!r}: expected {expected}{hint}"


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _validate(raw: dict[str, Any], *, source: str, options: set[str] = frozenset()) -> TrainConfig:
    """Every value's type, then its range; a value given on the command line is named as its
    option (``--image-size 100000: expected ...``), a preset's as its key."""
    problems: list[str] = []
    for key, value in raw.items():  # types first: the range checks below compare numbers
        problem = _kind_problem(key, value)
        if problem:
            problems.append(problem)
    if problems:
        raise ConfigError(_problems(source, problems, raw, options))
    for key, value in raw.items():
        if key in _CHOICES and value not in _CHOICES[key]:
            problems.append(f"{key} = {value!r}: expected one of {', '.join(_CHOICES[key])}")
    for key, (low, high, what) in _RANGES.items():
        value = raw.get(key)
        if value is None:
            continue
        upper_open = key in ("bn_momentum", "weight_decay")
        if value < low or (value >= high if upper_open else value > high):
            problems.append(f"{key} = {value!r}: expected {what}")
    if "cell_crop" in raw and (not 0 <= raw["cell_crop"] <= 4096 or 0 < raw["cell_crop"] < 16):
        problems.append(f"cell_crop = {raw['cell_crop']!r}: expected 0 (whole frame) or a window side "
                        "in source pixels, 16-4096 (e.g. 144)")
    for key in ("conv_dropout", "dense_dropout", "label_smoothing"):
        if key in raw and not 0 <= raw[key] < 1:
            problems.append(f"{key} = {raw[key]!r}: expected a number in [0, 1)")
    if "val_fraction" in raw and not 0 < raw["val_fraction"] < 1:
        problems.append(f"val_fraction = {raw['val_fraction']!r}: expected a number in (0, 1)")
    if "learning_rate" in raw and not raw["learning_rate"] > 0:
        problems.append(f"learning_rate = {raw['learning_rate']!r}: expected a positive number")
    problems += _distill_problems(raw)
    if "augment" in raw:  # left out: the default's (an empty list turns augmentation off)
        bad = [a for a in raw["augment"] if a not in _AUGMENTATIONS]
        if bad:
            problems.append(f"augment has {bad[0]!r}: expected any of {', '.join(_AUGMENTATIONS)}")
        raw["augment"] = tuple(raw["augment"])
    if problems:
        raise ConfigError(_problems(source, problems, raw, options))
    return TrainConfig(**raw)


def _problems(source: str, problems: list[str], raw: dict[str, Any], options: set[str]) -> str:
    lines = []
    for line in problems:
        key = line.split(" = ", 1)[0]
        if key in options:  # the command line's value, not the preset's
            line = f"--{key.replace('_', '-')} {raw[key]}:" + line.split(":", 1)[1]
        lines.append(line)
    if all(line.startswith("--") for line in lines):
        return "\n".join(lines)
    return f"{source}:\n  " + "\n  ".join(lines)


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
