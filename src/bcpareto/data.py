"""Split the data set honestly, decode each split once into a cache, feed it to Keras (numpy batches).

Layout (as in the Kaggle data set): DIR/TRAIN/<CLASS>/*.jpeg and DIR/TEST/<CLASS>/*.jpeg; finding
and auditing the files is audit.py's job.
Decoding 320x240 JPEGs is the slow part of a small-model search, so each split is decoded once
per (file list, image size, colour mode) into uint8 arrays under the cache directory
(``BCPARETO_CACHE``, else ``~/.cache/bcpareto``); every later model and epoch reads the arrays.
A cache that cannot be written costs decoding again, never the search (cache.py says it once);
an entry that cannot be read back is discarded and decoded again. Image bytes are read through
``dataset.read_image_bytes``: a FIFO or device named like an image is skipped, never waited on.

One module, though over 400 lines: a Split is chosen, decoded and batched here, top to bottom,
and the three steps share the Split and DataSplits types that trial.py and distill.py take; if
it grows, the input pipeline (``augment_batch`` onwards) is the seam to split along.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import io
import os
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from . import cache
from .config import TrainConfig
from .dataset import CLASSES, cross_split_duplicates, find_split, map_threads, read_image_bytes
from .errors import DataError
from .pausepoints import pause_point
from .preprocess import LOCATOR_VERSION, crop_cell, decode_image, locate_cell  # noqa: F401 - public here too

if TYPE_CHECKING:
    import keras

    from .groups import SourceGroups



@dataclass(frozen=True)
class Split:
    """One decoded split: uint8 images (N, S, S, C), int labels (N,), and where they came from."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    paths: tuple[str, ...]
    skipped: tuple[str, ...] = field(default=())  # unreadable files, left out

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: np.ndarray, *, name: str) -> Split:
        keep = np.flatnonzero(mask)
        return Split(name, self.images[keep], self.labels[keep], tuple(self.paths[i] for i in keep))

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(CLASSES))
        return {c: int(n) for c, n in zip(CLASSES, counts)}


@dataclass(frozen=True)
class DataSplits:
    """What one search trains on (train), selects with (val) and reports on (test)."""

    train: Split
    val: Split
    test: Split
    val_source: str  # e.g. "TRAIN holdout 15%" or "TEST"
    test_source: str  # e.g. "TEST minus 108 TRAIN duplicates"
    test_duplicates_removed: int
    skipped: tuple[str, ...] = ()  # unreadable files left out, all splits
    groups: SourceGroups | None = None  # validation "grouped": the groups.SourceGroups the split was made with
    # validation "cv": train holds all of TRAIN and val nothing; folds[i] is the fold of train
    # image i (for_fold(k) gives the split of one fold model)
    folds: np.ndarray | None = None

    @property
    def n_folds(self) -> int:
        return 0 if self.folds is None else int(self.folds.max()) + 1

    def for_fold(self, fold: int) -> DataSplits:
        """The split fold model ``fold`` trains on (the other folds) and validates on (this one)."""
        if self.folds is None:
            return self
        held = self.folds == fold
        return dataclasses.replace(
            self, train=self.train.subset(~held, name="train"), val=self.train.subset(held, name="val"),
            val_source=f"{self.val_source}, fold {fold + 1}", folds=None,
        )

    def image_table(self) -> dict[str, np.ndarray]:
        """Every image a model is scored on, in a fixed order, with its class, source group and
        fold: the index that kept predictions refer to (cvstats.py). TRAIN's images come first
        (fold -1: only ever trained on), then TEST's (fold -2). Without source groups every
        image is its own group."""
        parts = (self.train,) if self.folds is not None else (self.train, self.val)
        folds = (self.folds if self.folds is not None
                 else np.r_[np.full(len(self.train), -1), np.zeros(len(self.val), dtype=int)])
        paths = [p for part in (*parts, self.test) for p in part.paths]
        group_of = self.groups.group_of if self.groups is not None else str
        return {
            "path": np.array(paths, dtype=str),
            "label": np.concatenate([part.labels for part in (*parts, self.test)]).astype(np.int8),
            "group": np.array([str(group_of(p)) for p in paths], dtype=str),
            "fold": np.r_[folds, np.full(len(self.test), -2)].astype(np.int16),
        }


def load_data(
    data_dir: Path,
    *,
    image_size: int,
    color_mode: str,
    cell_crop: int = 0,
    validation: str = "holdout",
    val_fraction: float = 0.15,
    folds: int = 5,
    drop_test_duplicates: bool = True,
    limit_per_class: int | None = None,
    seed: int = 0,
    on_bad_image: str = "skip",
    progress: Callable[[str], None] | None = None,
) -> DataSplits:
    """Find, audit for leakage, decode (once, cached) and split the data set.

    - validation "grouped": a stratified, seeded ``val_fraction`` of TRAIN's source groups
      (groups.py: the augmented copies of one original smear) selects models, no group on both
      sides; TEST then drops every image whose group also holds TRAIN images, so neither
      validation nor TEST has seen smears the model trained on. "holdout": a stratified, seeded
      ``val_fraction`` of TRAIN's images (copies of one smear on both sides: optimistic);
      "test": TEST doubles as validation data (the earlier version's protocol).
    - TEST files byte-identical to a TRAIN file are dropped (``drop_test_duplicates``).
    - ``cell_crop``: each image is first cut to a square of that many source pixels centred on
      the stained white cell (``locate_cell``); 0 keeps the whole frame.
    - ``limit_per_class``: a seeded random sample of that many files per class and split, so a
      quick run still sees images from across each folder.
    """
    if not data_dir.is_dir():
        raise DataError(
            f"data directory {data_dir} does not exist; pass --data-dir, set BCPARETO_DATA, "
            "or run `bcpareto data download` (expects TRAIN/ and TEST/ inside)"
        )
    train_files = find_split(data_dir / "TRAIN")
    test_files = find_split(data_dir / "TEST")
    duplicates: set[Path] = set()
    if drop_test_duplicates:
        duplicates = cross_split_duplicates(train_files, test_files)
        test_files = {c: [p for p in paths if p not in duplicates] for c, paths in test_files.items()}
    decode = dict(image_size=image_size, color_mode=color_mode, cell_crop=cell_crop,
                  on_bad_image=on_bad_image, echo=progress)
    train = _load("TRAIN", _sample(train_files, limit_per_class, f"{seed}-TRAIN"), **decode)
    test = _load("TEST", _sample(test_files, limit_per_class, f"{seed}-TEST"), **decode)
    test_source = f"TEST minus {len(duplicates)} TRAIN duplicates" if drop_test_duplicates else "TEST"
    skipped = train.skipped + test.skipped
    if validation == "test":
        return DataSplits(train, test, test, "TEST", test_source, len(duplicates), skipped)
    if validation not in ("grouped", "cv"):
        fit, val = _stratified_split(train, fraction=val_fraction, seed=seed)
        val_source = f"TRAIN holdout {val_fraction:.0%}"
        return DataSplits(fit, val, test, val_source, test_source, len(duplicates), skipped)

    from .groups import find_groups  # the readable images only: an unreadable file has no smear

    groups = find_groups({"TRAIN": _by_class(train), "TEST": _by_class(test)}, progress=progress)
    with_train = {groups.group_of(p) for p in train.paths}
    shares = np.array([groups.group_of(p) in with_train for p in test.paths], dtype=bool)
    test = test.subset(~shares, name="TEST")
    train_groups = np.array([groups.group_of(p) for p in train.paths], dtype=object)
    dropped = int(shares.sum()) + len(duplicates)
    test_source = (f"TEST minus {dropped} images sharing a source smear with TRAIN "
                   f"({len(duplicates)} of them byte-identical copies)")
    if validation == "cv":
        assignment = grouped_folds(train.labels, train_groups, folds=folds, seed=seed)
        val_source = f"TRAIN grouped {folds}-fold CV ({len(set(train_groups))} source groups)"
        empty = train.subset(np.zeros(len(train), dtype=bool), name="val")
        return DataSplits(train, empty, test, val_source, test_source, len(duplicates), skipped, groups,
                          folds=assignment)
    fit, val, n_val_groups = _grouped_split(train, train_groups, fraction=val_fraction, seed=seed)
    val_source = f"TRAIN grouped {val_fraction:.0%} ({n_val_groups} of {len(set(train_groups))} source groups)"
    return DataSplits(fit, val, test, val_source, test_source, len(duplicates), skipped, groups)


def load_data_for(
    data_dir: Path, config: TrainConfig, *, on_bad_image: str = "skip",
    progress: Callable[[str], None] | None = None,
) -> DataSplits:
    """load_data with a preset's image size, colour mode, protocol, sampling and seed."""
    return load_data(
        data_dir,
        image_size=config.image_size,
        color_mode=config.color_mode,
        cell_crop=config.cell_crop,
        validation=config.validation,
        val_fraction=config.val_fraction,
        folds=config.folds,
        drop_test_duplicates=config.drop_test_duplicates,
        limit_per_class=config.limit_per_class,
        seed=config.seed,
        on_bad_image=on_bad_image,
        progress=progress,
    )


def _sample(files: dict[str, list[Path]], limit: int | None, seed: str) -> list[tuple[Path, int]]:
    chosen: list[tuple[Path, int]] = []
    for label, name in enumerate(CLASSES):
        paths = files[name]
        if limit is not None and limit < len(paths):
            paths = sorted(random.Random(f"{seed}-{name}").sample(paths, limit))
        chosen += [(p, label) for p in paths]
    return chosen


def _by_class(split: Split) -> dict[str, list[Path]]:
    """A decoded split's paths by class: the form groups.find_groups takes."""
    return {name: [Path(p) for p, label in zip(split.paths, split.labels) if label == i]
            for i, name in enumerate(CLASSES)}


def _grouped_split(
    split: Split, groups: np.ndarray, *, fraction: float, seed: int
) -> tuple[Split, Split, int]:
    """Per class, seeded random whole source groups go to validation until they hold ``fraction``
    of the class's images (at least one group, never all); no group lands on both sides.
    Returns (train, validation, number of groups held out)."""
    rng = np.random.default_rng(seed)
    is_val = np.zeros(len(split), dtype=bool)
    held_out = 0
    for label in range(len(CLASSES)):
        members = np.flatnonzero(split.labels == label)
        names = sorted(set(groups[members]))
        if len(names) < 2:
            continue  # one group cannot be split; that class then has no validation images
        target = fraction * len(members)
        taken = 0
        for index in rng.permutation(len(names))[: len(names) - 1]:
            chosen = members[groups[members] == names[index]]
            is_val[chosen] = True
            taken += len(chosen)
            held_out += 1
            if taken >= target:
                break
    return split.subset(~is_val, name="train"), split.subset(is_val, name="val"), held_out


def grouped_folds(labels: np.ndarray, groups: np.ndarray, *, folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of every image: whole source groups, class-stratified, seeded.

    Per class (a group's class is its images' majority label), the groups in a seeded random
    order, largest first, each go to the fold that holds the fewest of the class's images so
    far (scikit-learn's StratifiedGroupKFold balances the same way). Raises DataError when a
    class has fewer groups than folds: a fold would then have no image of that class."""
    labels = np.asarray(labels)
    names, inverse = np.unique(np.asarray(groups, dtype=str), return_inverse=True)
    sizes = np.bincount(inverse, minlength=len(names))
    majority = np.array([np.bincount(labels[inverse == g], minlength=len(CLASSES)).argmax()
                         for g in range(len(names))])
    short = {CLASSES[c]: int((majority == c).sum()) for c in np.unique(labels)
             if (majority == c).sum() < folds}
    if short:
        raise DataError(
            f"{folds}-fold cross-validation needs at least {folds} source groups per class; "
            + ", ".join(f"{name} has {n}" for name, n in short.items())
            + f" in TRAIN. Use --folds {max(2, min(short.values()))} or fewer"
            + (" (or validation = \"grouped\")" if min(short.values()) < 2 else ""))
    rng = np.random.default_rng(seed)
    fold_of_group = np.zeros(len(names), dtype=np.int16)
    for label in np.unique(majority):
        members = np.flatnonzero(majority == label)
        members = members[rng.permutation(len(members))]
        members = members[np.argsort(-sizes[members], kind="stable")]  # ties stay shuffled
        load = np.zeros(folds)
        for g in members:
            target = int(np.argmin(load + rng.random(folds) * 1e-9))  # ties: a random fold
            fold_of_group[g] = target
            load[target] += sizes[g]
    return fold_of_group[inverse]


def _stratified_split(split: Split, *, fraction: float, seed: int) -> tuple[Split, Split]:
    """Per class, a seeded random `fraction` (at least one image) goes to validation."""
    rng = np.random.default_rng(seed)
    val_index = []
    for label in range(len(CLASSES)):
        members = np.flatnonzero(split.labels == label)
        n_val = min(len(members) - 1, max(1, round(fraction * len(members))))
        val_index.append(rng.permutation(members)[:n_val])
    is_val = np.zeros(len(split), dtype=bool)
    is_val[np.concatenate(val_index)] = True
    return split.subset(~is_val, name="train"), split.subset(is_val, name="val")


def _load(split: str, files: list[tuple[Path, int]], *, image_size: int, color_mode: str,
          cell_crop: int, on_bad_image: str, echo: Callable[[str], None] | None = None) -> Split:
    key = _cache_key(files, image_size=image_size, color_mode=color_mode, cell_crop=cell_crop)
    cached = _read_cache(key, echo=echo)
    if cached is None:
        cached = _decode_all(files, image_size=image_size, color_mode=color_mode, cell_crop=cell_crop)
        _write_cache(key, cached, echo=echo)
    images, labels, paths, skipped = cached
    if skipped and on_bad_image == "fail":
        raise DataError(
            f"{len(skipped)} unreadable image file(s) in {split}: {', '.join(skipped[:5])}; "
            "remove them or use --on-bad-image skip"
        )
    # Skipping must never make a class vanish: a model that never saw a class would train, be
    # measured and be logged as if it had (whatever --on-bad-image says).
    counts = np.bincount(labels, minlength=len(CLASSES))
    for label in sorted({label for _, label in files}):
        if counts[label] == 0:
            lost = [str(p) for p, of in files if of == label]
            raise DataError(
                f"{Path(lost[0]).parent}: no usable image in this class of {split}: all "
                f"{len(lost)} file(s) were unreadable and skipped ({', '.join(lost[:5])}"
                + (f", and {len(lost) - 5} more" if len(lost) > 5 else "") + "); a model trained "
                "without this class would never predict it. Replace the files (`bcpareto data "
                "check` lists every problem)"
            )
    return Split(split, images, labels, tuple(paths), tuple(skipped))


def _cache_key(files: list[tuple[Path, int]], *, image_size: int, color_mode: str,
               cell_crop: int = 0) -> str:
    digest = hashlib.sha1(f"v1 {image_size} {color_mode}".encode())
    if cell_crop:
        digest.update(f" cell_crop {cell_crop} {LOCATOR_VERSION}".encode())
    for path, label in files:
        try:
            stat = path.stat()
            digest.update(f"{path.resolve()}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        except (OSError, RuntimeError):  # a link loop: unreadable, skipped (or failed) when decoded
            digest.update(f"{path}\0{label}\0unreadable\n".encode())
    crop = f"-crop{cell_crop}" if cell_crop else ""
    return f"{image_size}px-{color_mode}{crop}-{digest.hexdigest()[:16]}"


_Decoded = tuple[np.ndarray, np.ndarray, list[str], list[str]]


def _read_cache(key: str, *, echo: Callable[[str], None] | None = None) -> _Decoded | None:
    """The decoded split under ``key``, or None when it is not cached. An entry that cannot be
    read back whole (a torn or edited file) is said, removed and decoded again."""
    folder = cache.cache_dir() / key
    try:
        if not folder.is_dir():
            return None
    except OSError:  # a cache folder that cannot even be looked into: nothing cached
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
        images = np.load(folder / "images.npy")
        labels = np.load(folder / "labels.npy")
        paths, skipped = [str(p) for p in meta["paths"]], [str(p) for p in meta["skipped"]]
        if (images.dtype != np.uint8 or images.ndim != 4 or labels.ndim != 1
                or not len(images) == len(labels) == len(paths)):
            raise ValueError(f"{len(images)} images, {len(labels)} labels and {len(paths)} paths")
    except (OSError, ValueError, EOFError, KeyError, TypeError) as exc:
        cache.discarded(folder, f"{type(exc).__name__}: {exc}"[:200], echo=echo)
        shutil.rmtree(folder, ignore_errors=True)  # a read-only cache keeps it: decoded each time
        return None
    return images, labels, paths, skipped


def _write_cache(key: str, decoded: _Decoded, *, echo: Callable[[str], None] | None = None) -> None:
    """Atomic: a failed or interrupted write leaves no half entry (the folder appears by rename)
    and no temporary folder; an unwritable cache is said once and only costs decoding again."""
    root = cache.writable_cache_dir(echo=echo)
    if root is None:
        return
    images, labels, paths, skipped = decoded
    final = root / key
    tmp = root / f".{key}.{os.getpid()}.tmp"
    try:
        shutil.rmtree(tmp, ignore_errors=True)  # a killed process's, if this pid came round again
        tmp.mkdir()
        np.save(tmp / "images.npy", images)
        np.save(tmp / "labels.npy", labels)
        (tmp / "meta.json").write_text(json.dumps({"paths": paths, "skipped": skipped}))
        os.rename(tmp, final)
    except OSError as exc:
        if not os.path.isdir(final):  # else another process got there first: theirs is as good
            cache.write_failed(exc, echo=echo)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _decode_all(files: list[tuple[Path, int]], *, image_size: int, color_mode: str,
                cell_crop: int = 0) -> _Decoded:
    def one(path: Path) -> np.ndarray | None:
        pause_point("decode")
        try:  # bytes first: a FIFO, device or dangling link named x.jpeg is skipped, never opened
            data = io.BytesIO(read_image_bytes(path))
            return decode_image(data, image_size=image_size, color_mode=color_mode, cell_crop=cell_crop)  # type: ignore[arg-type]
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, struct.error,
            return None  # DecompressionBombError... for unreadable, truncated or huge files

    # a SIGTERM while waiting cancels the files not yet started (map_threads): it stops at once
    arrays = map_threads(one, [p for p, _ in files], workers=min(8, (os.cpu_count() or 1) * 2))
    keep = [i for i, a in enumerate(arrays) if a is not None]
    channels = 1 if color_mode == "grayscale" else 3
    images = (
        np.stack([arrays[i] for i in keep])
        if keep
        else np.zeros((0, image_size, image_size, channels), np.uint8)
    )
    labels = np.array([files[i][1] for i in keep], dtype=np.int32)
    paths = [str(files[i][0]) for i in keep]
    skipped = [str(files[i][0]) for i, a in enumerate(arrays) if a is None]
    return images, labels, paths, skipped


def augment_batch(images: np.ndarray, augment: tuple[str, ...], rng: np.random.Generator) -> np.ndarray:
    """The one implementation of every augmentation: uint8 (N, S, S, C) -> float32 in [0, 255].

    Whole-batch numpy, a draw per image: flip (left-right, up-down), rot90 (a transpose: with both
    flips all 8 symmetries of the square), brightness (+-20 levels), contrast (x0.8-1.2 about the
    image mean), stain (a gain of 0.9-1.1 per colour channel, then saturation x0.7-1.3; colour
    images only), zoom (a random square of 80-100% of the side, anywhere, resized back bilinearly
    as tf.image.crop_and_resize does). Works alike under every Keras backend."""
    x = images  # the symmetries move uint8 pixels (a quarter of float32's bytes)
    n = len(x)

    def coin() -> np.ndarray:
        return rng.random((n, 1, 1, 1)) < 0.5

    if "flip" in augment:
        x = np.where(coin(), x[:, :, ::-1], x)
        x = np.where(coin(), x[:, ::-1], x)
    if "rot90" in augment:
        x = np.where(coin(), x.transpose(0, 2, 1, 3), x)
    x = x.astype(np.float32)
    if "brightness" in augment:
        x = x + rng.uniform(-20.0, 20.0, (n, 1, 1, 1)).astype(np.float32)
    if "contrast" in augment:
        mean = x.mean(axis=(1, 2, 3), keepdims=True)
        x = (x - mean) * rng.uniform(0.8, 1.2, (n, 1, 1, 1)).astype(np.float32) + mean
    if "stain" in augment and x.shape[-1] == 3:
        x = x * rng.uniform(0.9, 1.1, (n, 1, 1, 3)).astype(np.float32)
        gray = x.mean(axis=-1, keepdims=True)
        x = gray + (x - gray) * rng.uniform(0.7, 1.3, (n, 1, 1, 1)).astype(np.float32)
    if "zoom" in augment:
        side = rng.uniform(0.8, 1.0, (n, 1))
        corner = rng.random((n, 2)) * (1.0 - side)
        x = _crop_and_resize(x, corner, side[:, 0])
    return np.clip(x, 0.0, 255.0, out=x)


def _crop_and_resize(x: np.ndarray, corner: np.ndarray, side: np.ndarray) -> np.ndarray:
    """Each image's square window (normalised top-left ``corner`` (y, x), ``side``) resized back
    to the full size, bilinear, sampled as tf.image.crop_and_resize samples a box.

    Bilinear is separable: out = Wy @ image @ Wx^T per channel, with interpolation matrices of
    two taps per row: two batched matrix products, cheaper than gathering the four neighbours of
    every output pixel."""
    n, height, width, channels = x.shape
    steps = np.arange(height) / max(height - 1, 1)  # 0..1 across the output

    def weights(start: np.ndarray, size: int) -> np.ndarray:
        """(n, S, size): row i holds the two taps sampling output position i."""
        where = (start[:, None] + steps * side[:, None]) * (size - 1)  # (n, S) source positions
        low = np.clip(np.floor(where).astype(np.int64), 0, size - 1)
        frac = (where - low).astype(np.float32)
        matrix = np.zeros((n, len(steps), size), np.float32)
        b, i = np.ogrid[:n, :len(steps)]
        matrix[b, i, low] = 1.0 - frac
        matrix[b, i, np.minimum(low + 1, size - 1)] += frac  # one (b, i) per tap: no collisions
        return matrix

    rows = weights(corner[:, 0], height) @ x.reshape(n, height, width * channels)  # (n, S, W*C)
    rows = rows.reshape(n, -1, width, channels).transpose(0, 2, 1, 3).reshape(n, width, -1)
    out = weights(corner[:, 1], width) @ rows  # (n, S_x, S_y*C)
    return out.reshape(n, width, -1, channels).transpose(0, 2, 1, 3)


def training_dataset(
    split: Split, *, batch_size: int, augment: tuple[str, ...], seed: int,
    targets: np.ndarray | None = None,
) -> keras.utils.PyDataset:
    """Shuffled, batched, augmented float32 pixels in [0, 255], as a keras.utils.PyDataset.

    Numpy only (augment_batch), so it feeds every Keras backend alike and imports no TensorFlow.
    The order is reshuffled every epoch and every batch draws its augmentation from its own
    generator seeded with (seed, epoch, batch): the same seed gives the same batches on any
    backend, in any order Keras asks for them. Indices are shuffled, not images: a batch gathers
    its images (and its targets, with the same index) from the decoded arrays. Every batch is
    full: the last ``len(split) % batch_size`` images of each epoch's order wait for the next
    epoch (another order), since a smaller last batch costs JAX a second compile of the
    training step, once per model.

    ``targets``: what each image's batches carry instead of its label, one row per image (a
    distilled student's label and teacher probabilities: distill.training_targets)."""
    import keras

    labels = split.labels if targets is None else targets
    ops = tuple(augment)

    class TrainingBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0

        def __len__(self) -> int:  # full batches only: one input shape, one compiled step (JAX)
            return max(1, len(split) // batch_size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            return self.batch(self.epoch, index)

        def batch(self, epoch: int, index: int) -> tuple[np.ndarray, np.ndarray]:
            """Batch ``index`` of epoch ``epoch``: a pure function of (seed, epoch, index)."""
            order = _permutation(seed, epoch, len(split))
            chosen = np.sort(order[index * batch_size:(index + 1) * batch_size])
            rng = np.random.default_rng((seed, epoch, index))
            return augment_batch(split.images[chosen], ops, rng), labels[chosen]

        def on_epoch_end(self) -> None:
            self.epoch += 1

    return TrainingBatches()


@functools.lru_cache(maxsize=4)
def _permutation(seed: int, epoch: int, n: int) -> np.ndarray:
    return np.random.default_rng((seed, epoch)).permutation(n)


def fit_input(batches: keras.utils.PyDataset, *, epochs: int) -> Any:
    """What model.fit takes for ``epochs`` epochs of training_dataset's batches.

    JAX and PyTorch take the batches as they are (JAX dispatches a step and returns, so the next
    batch is made while the step runs). Under TensorFlow a PyDataset is read one batch at a time
    in the training loop's own thread; a tf.data pipeline makes the very same numpy batches
    (batch(epoch, index)) on tf.data's threads, several at once, ahead of the step
    (benchmarks/bench_backends.py measures both). Call fit with steps_per_epoch=len(batches)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return batches
    import tensorflow as tf

    steps = len(batches)
    first = batches.batch(0, 0)  # (x, y); x may be a dict of arrays (packed.py: pixels and masks)
    flat0 = keras.tree.flatten(first)

    def make(k: np.ndarray) -> list[np.ndarray]:
        return keras.tree.flatten(batches.batch(int(k) // steps, int(k) % steps))

    def one(k: tf.Tensor) -> Any:
        flat = tf.numpy_function(make, [k], [tf.as_dtype(a.dtype) for a in flat0], stateful=False)
        return keras.tree.pack_sequence_as(first, [tf.ensure_shape(t, a.shape) for t, a in zip(flat, flat0)])

    ds = tf.data.Dataset.range(epochs * steps)
    return ds.map(one, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(split: Split, *, batch_size: int) -> keras.utils.PyDataset:
    """The split in order, float32 pixels and labels, batch by batch (numpy; any backend)."""
    import keras

    class EvalBatches(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()

        def __len__(self) -> int:
            return math.ceil(len(split) / batch_size)

        def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray]:
            part = slice(index * batch_size, (index + 1) * batch_size)
            return split.images[part].astype(np.float32), split.labels[part]

    return EvalBatches()
