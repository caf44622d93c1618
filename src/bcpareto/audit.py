"""The `bcpareto data check` report: reads every image once and says whether the set is usable.

It hashes the bytes (byte-identical duplicates within and across splits) and decodes the image
(unreadable, truncated and non-image files; sizes and modes). It never writes anything. The
layout it checks is dataset.py's; library code raises ``DataError``, only cli.py prints and exits.

One module, though over 400 lines: each check is a field of the report's dataclasses, the scan
that fills it and the line of the table that prints it, so a new check is one edit in one file.
"""

from __future__ import annotations

import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .dataset import (
    CLASSES,
    REQUIRED_SPLITS,
    SPLITS,
    all_paths,
    class_folder_hint,
    data_set_folders,
    default_workers,
    digest,
    find_split,
    map_threads,
    read_image_bytes,
    scan_class_dir,
    suffix_list,
)
from .errors import DataError

# Decoding at 1/8 scale reads every byte of a JPEG (so truncation still shows) in less time.
_DRAFT_SCALE = 8
_MAX_DETAIL_CHARS = 200

# --------------------------------------------------------------------------- inspecting files


@dataclass(frozen=True)
class _FileInfo:
    path: Path
    digest: str | None  # None: the bytes could not be read
    format: str | None = None
    mode: str | None = None
    size: tuple[int, int] | None = None
    problem: str | None = None  # "unreadable" | "truncated" | "non_image"
    detail: str = ""


def _inspect(path: Path) -> _FileInfo:
    from PIL import Image, UnidentifiedImageError

    try:
        data = read_image_bytes(path)  # a FIFO named x.jpeg: "unreadable", never waited on
    except OSError as exc:
        return _FileInfo(path, None, problem="unreadable", detail=str(exc.strerror or exc))
    file_digest = digest(data)
    header: tuple[str | None, str, tuple[int, int]] | None = None
    try:
        with Image.open(io.BytesIO(data)) as image:
            header = (image.format, image.mode, image.size)
            small = (max(1, image.width // _DRAFT_SCALE), max(1, image.height // _DRAFT_SCALE))
            image.draft(image.mode, small)
            image.load()
    except UnidentifiedImageError:
        return _FileInfo(path, file_digest, problem="non_image", detail="not an image Pillow can identify")
    except Exception as exc:  # Pillow raises OSError, SyntaxError, struct.error, ... on corrupt data
        detail = f"{type(exc).__name__}: {exc}"[:_MAX_DETAIL_CHARS]
        problem = "truncated" if "truncated" in str(exc).lower() else "unreadable"
        fmt, mode, size = header if header else (None, None, None)
        return _FileInfo(path, file_digest, fmt, mode, size, problem=problem, detail=detail)
    fmt, mode, size = header
    return _FileInfo(path, file_digest, fmt, mode, size)


# --------------------------------------------------------------------------- the report


@dataclass(frozen=True)
class SplitAudit:
    """What one split folder holds. Paths are relative to the data set's root, as strings."""

    name: str
    present: bool
    images: dict[str, int] = field(default_factory=dict)  # class -> files with an image suffix
    missing_classes: tuple[str, ...] = ()
    empty_classes: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()
    truncated: tuple[str, ...] = ()
    non_image: tuple[str, ...] = ()  # an image suffix, but not an image
    stray: tuple[str, ...] = ()  # ignored: .DS_Store, Thumbs.db, any file without an image suffix
    sizes: dict[str, int] = field(default_factory=dict)  # "320x240" -> images
    modes: dict[str, int] = field(default_factory=dict)  # "RGB" -> images
    formats: dict[str, int] = field(default_factory=dict)  # "JPEG" -> images

    @property
    def n_images(self) -> int:
        return sum(self.images.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "present": self.present,
            "n_images": self.n_images,
            "images": dict(self.images),
            "missing_classes": list(self.missing_classes),
            "empty_classes": list(self.empty_classes),
            "unreadable": list(self.unreadable),
            "truncated": list(self.truncated),
            "non_image": list(self.non_image),
            "stray": list(self.stray),
            "sizes": dict(self.sizes),
            "modes": dict(self.modes),
            "formats": dict(self.formats),
        }


@dataclass(frozen=True)
class DuplicateAudit:
    """Byte-identical files: in ``second``, the files whose bytes already occur in ``first``.

    ``first == second`` means within one split: every copy after the first (in path order) counts.
    ``cross_class`` counts the files whose identical twin lies in a different class folder.
    """

    first: str
    second: str
    counts: dict[str, int]  # class of the file in `second` -> duplicate files
    cross_class: int
    files: tuple[str, ...]  # the duplicate files in `second`, relative to the root
    cross_class_pairs: tuple[tuple[str, str], ...] = ()  # (file in second, its twin in another class)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def label(self) -> str:
        return f"within {self.first}" if self.first == self.second else f"{self.second} in {self.first}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "total": self.total,
            "counts": dict(self.counts),
            "cross_class": self.cross_class,
            "files": list(self.files),
            "cross_class_pairs": [list(pair) for pair in self.cross_class_pairs],
        }


@dataclass(frozen=True)
class AuditReport:
    """The whole audit. ``problems`` make the data set unusable; ``warnings`` are worth knowing."""

    root: Path
    splits: tuple[SplitAudit, ...]
    duplicates: tuple[DuplicateAudit, ...]
    problems: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def usable(self) -> bool:
        return not self.problems

    def split(self, name: str) -> SplitAudit:
        return next(s for s in self.splits if s.name == name)

    def duplicate(self, first: str, second: str) -> DuplicateAudit | None:
        return next((d for d in self.duplicates if (d.first, d.second) == (first, second)), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "usable": self.usable,
            "classes": list(CLASSES),
            "splits": {s.name: s.to_dict() for s in self.splits},
            "duplicates": [d.to_dict() for d in self.duplicates],
            "problems": list(self.problems),
            "warnings": list(self.warnings),
        }


# --------------------------------------------------------------------------- the audit


def _not_a_data_set_hint(root: Path) -> str:
    names = {p.name for p in root.iterdir() if p.is_dir()}
    if any(c in names for c in CLASSES):
        return f"; it holds class folders, so it looks like one split: pass its parent {root.parent}"
    lower = sorted(n for n in names if n.upper() in SPLITS)
    if lower:
        return f"; found {', '.join(lower)}: split folder names are upper-case"
    inside = data_set_folders(root, max_depth=3)
    return f"; did you mean {inside[0]}?" if inside else ""


def _check_root(root: Path) -> None:
    expected = (
        "expected a folder holding TRAIN and TEST (and optionally TEST_SIMPLE), each with one folder "
        f"per class ({', '.join(CLASSES)})"
    )
    if not root.exists():
        raise DataError(
            f"{root}: data directory not found; {expected}. "
            "`bcpareto data download` fetches it, or pass DIR / set BCPARETO_DATA"
        )
    if not root.is_dir():
        raise DataError(f"{root}: not a folder; {expected}")
    if not any((root / s).is_dir() for s in SPLITS):
        raise DataError(f"{root}: not a blood-cell data set; {expected}{_not_a_data_set_hint(root)}")


def _tally(values: Iterable[str]) -> dict[str, int]:
    return dict(sorted(Counter(values).items(), key=lambda kv: (-kv[1], kv[0])))  # most first, then by name


def _scan_split(
    root: Path, name: str, problems: list[str], warnings: list[str]
) -> tuple[dict[str, list[Path]], list[Path]]:
    """Per-class image lists of one present split and its stray files; records folder problems."""
    split_dir = root / name
    by_class: dict[str, list[Path]] = {}
    stray: list[Path] = []
    for cls in CLASSES:
        class_dir = split_dir / cls
        if not class_dir.is_dir():
            problems.append(f"{class_dir}: class folder missing{class_folder_hint(split_dir, cls)}")
            continue
        images, class_stray, subdirs = scan_class_dir(class_dir)
        by_class[cls] = images
        stray += class_stray
        if not images:
            problems.append(f"{class_dir}: class folder holds no images ({suffix_list()})")
        for sub in subdirs:
            warnings.append(f"{sub}: folder ignored (images must lie directly in {class_dir.name}/)")
    for extra in sorted(p for p in split_dir.iterdir() if p.is_dir() and p.name not in CLASSES):
        warnings.append(f"{extra}: folder ignored (class folders are {', '.join(CLASSES)})")
    return by_class, stray


def _split_audit(
    root: Path, name: str, by_class: dict[str, list[Path]], stray: list[Path], infos: dict[Path, _FileInfo]
) -> SplitAudit:
    def rel(path: Path) -> str:
        return path.relative_to(root).as_posix()

    files = [infos[p] for p in all_paths(by_class)]
    kinds = ("unreadable", "truncated", "non_image")
    bad = {kind: tuple(rel(f.path) for f in files if f.problem == kind) for kind in kinds}
    good = [f for f in files if f.problem is None]
    return SplitAudit(
        name=name,
        present=True,
        images={cls: len(by_class[cls]) for cls in CLASSES if cls in by_class},
        missing_classes=tuple(cls for cls in CLASSES if cls not in by_class),
        empty_classes=tuple(cls for cls in CLASSES if cls in by_class and not by_class[cls]),
        stray=tuple(rel(p) for p in stray),
        sizes=_tally(f"{f.size[0]}x{f.size[1]}" for f in good if f.size),
        modes=_tally(f.mode for f in good if f.mode),
        formats=_tally(f.format for f in good if f.format),
        **bad,
    )


def _duplicates(
    root: Path,
    first: str,
    second: str,
    splits: dict[str, dict[str, list[Path]]],
    infos: dict[Path, _FileInfo],
) -> DuplicateAudit:
    def labelled(split: str) -> list[tuple[Path, str, str]]:
        return [
            (p, cls, infos[p].digest)
            for cls, paths in splits[split].items()
            for p in paths
            if infos[p].digest
        ]

    seen: dict[str, list[tuple[Path, str]]] = defaultdict(list)  # digest -> (path, class) in `first`
    counts = {cls: 0 for cls in CLASSES if cls in splits[second]}
    files: list[str] = []
    cross: list[tuple[str, str]] = []
    if first != second:
        for path, cls, digest in labelled(first):
            seen[digest].append((path, cls))
    for path, cls, digest in sorted(labelled(second)):
        twins = seen[digest]
        if twins:
            counts[cls] += 1
            files.append(path.relative_to(root).as_posix())
            other = next((p for p, c in twins if c != cls), None)
            if other is not None:
                cross.append((files[-1], other.relative_to(root).as_posix()))
        if first == second:
            twins.append((path, cls))
    return DuplicateAudit(first, second, counts, len(cross), tuple(files), tuple(cross))


def _describe_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{k} {v:,}" for k, v in counts.items() if v)


def _split_warnings(split: SplitAudit) -> list[str]:
    warnings = []
    if split.stray:
        shown = ", ".join(split.stray[:3]) + (", ..." if len(split.stray) > 3 else "")
        warnings.append(f"{split.name}: {len(split.stray)} stray file(s) ignored: {shown}")
    if len(split.sizes) > 1:
        sizes = _describe_counts(split.sizes)
        warnings.append(f"{split.name}: images come in {len(split.sizes)} sizes ({sizes})")
    not_rgb = {mode: n for mode, n in split.modes.items() if mode != "RGB"}
    if not_rgb:
        warnings.append(
            f"{split.name}: {sum(not_rgb.values())} image(s) not RGB ({_describe_counts(not_rgb)}); "
            "loaders must convert them to RGB (grayscale ones carry no colour)"
        )
    return warnings


def _duplicate_warning(dup: DuplicateAudit) -> str:
    if dup.first == dup.second:
        text = f"{dup.first}: {dup.total} file(s) byte-identical to another file in {dup.first}"
    else:
        text = f"{dup.second}: {dup.total} file(s) byte-identical to {dup.first} files"
    text += f" ({_describe_counts(dup.counts)})"
    if dup.cross_class:
        text += f"; {dup.cross_class} of them under a different class than their twin (conflicting labels)"
    return text


def audit_dataset(root: Path, *, workers: int | None = None) -> AuditReport:
    """Audit the data set in ``root`` (reads every image once, writes nothing).

    Raises ``DataError`` naming the folder when ``root`` is missing or holds no split folder at all
    (bad input); everything else wrong with the data set lands in the report's ``problems``.
    """
    root = Path(root)
    _check_root(root)
    problems: list[str] = []
    warnings: list[str] = []
    scanned: dict[str, tuple[dict[str, list[Path]], list[Path]]] = {}
    for name in SPLITS:
        split_dir = root / name
        if split_dir.is_dir():
            scanned[name] = _scan_split(root, name, problems, warnings)
        elif split_dir.exists():
            problems.append(f"{split_dir}: not a folder; expected a split folder with one folder per class")
        elif name in REQUIRED_SPLITS:
            needs = " and ".join(REQUIRED_SPLITS)
            problems.append(f"{split_dir}: split folder missing (a data set needs {needs})")
        else:
            warnings.append(f"{split_dir}: optional split folder missing")
    for extra in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SPLITS):
        if not extra.name.startswith("."):
            warnings.append(f"{extra}: folder ignored (split folders are {', '.join(SPLITS)})")

    paths = [p for by_class, _ in scanned.values() for p in all_paths(by_class)]
    infos = dict(zip(paths, map_threads(_inspect, paths, workers=workers or default_workers())))
    for info in infos.values():
        if info.problem:
            kind = info.problem.replace("_", "-")
            problems.append(f"{info.path}: {kind} ({info.detail})")

    splits = tuple(
        _split_audit(root, name, *scanned[name], infos) if name in scanned else SplitAudit(name, False)
        for name in SPLITS
    )
    for split in splits:
        warnings += _split_warnings(split)

    by_split = {name: by_class for name, (by_class, _) in scanned.items()}
    pairs = [(s, s) for s in by_split] + [
        (a, b) for i, a in enumerate(SPLITS) for b in SPLITS[i + 1 :] if a in by_split and b in by_split
    ]
    duplicates = tuple(_duplicates(root, a, b, by_split, infos) for a, b in pairs)
    warnings += [_duplicate_warning(d) for d in duplicates if d.total]
    return AuditReport(root, splits, duplicates, tuple(problems), tuple(warnings))


# --------------------------------------------------------------------------- the table


def _table(rows: list[list[str]]) -> list[str]:
    """Left-align the first column, right-align the others."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
        .rstrip()
        for row in rows
    ]


def _short_tally(tally: Mapping[str, int]) -> str:
    if not tally:
        return "-"
    if len(tally) == 1:
        return next(iter(tally))
    return " ".join(f"{k}:{v:,}" for k, v in tally.items())


def render_table(report: AuditReport, *, max_lines: int = 20) -> str:
    """The audit as plain-text tables, for people (``report.to_dict()`` is for machines)."""
    present = [s for s in report.splits if s.present]
    lines = [f"Data set: {report.root}", ""]
    rows = [["images", *CLASSES, "total"]]
    for s in present:
        counts = (f"{s.images[c]:,}" if c in s.images else "missing" for c in CLASSES)
        rows.append([s.name, *counts, f"{s.n_images:,}"])
    lines += _table(rows) + [""]
    rows = [["files", "unreadable", "truncated", "non-image", "stray", "sizes", "modes", "formats"]]
    for s in present:
        rows.append(
            [
                s.name,
                *(str(len(x)) for x in (s.unreadable, s.truncated, s.non_image, s.stray)),
                _short_tally(s.sizes),
                _short_tally(s.modes),
                _short_tally(s.formats),
            ]
        )
    lines += _table(rows) + [""]
    if report.duplicates:
        lines.append("Byte-identical duplicates ('TEST in TRAIN': TEST files whose bytes occur in TRAIN;")
        lines.append("'within X': extra copies inside X; cross-class: the twin lies under another class):")
        rows = [["duplicates", *CLASSES, "total", "cross-class"]]
        for d in report.duplicates:
            counts = (f"{d.counts[c]:,}" if c in d.counts else "-" for c in CLASSES)
            rows.append([d.label, *counts, f"{d.total:,}", str(d.cross_class)])
        lines += _table(rows) + [""]
    for title, items in (("Problems", report.problems), ("Warnings", report.warnings)):
        if items:
            lines.append(f"{title} ({len(items)}):")
            lines += [f"  - {item}" for item in items[:max_lines]]
            if len(items) > max_lines:
                lines.append(f"  ... and {len(items) - max_lines} more (--json lists them all)")
    verdict = "usable" if report.usable else f"NOT usable: {len(report.problems)} problem(s)"
    lines.append(f"Result: {verdict}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- source groups


def group_files(report: AuditReport) -> dict[str, dict[str, list[Path]]]:
    """TRAIN's and TEST's readable images by class: what groups.find_groups takes."""
    files: dict[str, dict[str, list[Path]]] = {}
    for name in REQUIRED_SPLITS:
        split = report.split(name)
        bad = {report.root / p for p in (*split.unreadable, *split.truncated, *split.non_image)}
        files[name] = {cls: [p for p in paths if p not in bad]
                       for cls, paths in find_split(report.root / name).items()}
    return files


def render_groups(summary: Mapping[str, Any]) -> str:
    """The source-group section of `data check`: groups per class and TEST images sharing a
    smear with TRAIN (a held-out figure must leave them out)."""
    lines = [f"Source groups (the augmented copies of one original smear; {summary['method']}):",
             summary["message"]]
    rows = [["class", "images", "groups", "size min/median/max", "TEST sharing a smear with TRAIN",
             "of them byte-identical"]]
    for cls, row in summary["per_class"].items():
        size = row["group_size"]
        rows.append([cls, f"{row['images']:,}", f"{row['groups']:,}",
                     f"{size['min']}/{size['median']:g}/{size['max']}", f"{row['test_sharing_train']:,}",
                     f"{row['test_sharing_train_byte_identical']:,}"])
    rows.append(["total", f"{summary['images']:,}", f"{summary['groups']:,}", "",
                 f"{summary['test_sharing_train']:,}", f"{summary['test_sharing_train_byte_identical']:,}"])
    return "\n".join(lines + _table(rows))
