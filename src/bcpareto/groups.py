"""Recover which original smear each image was augmented from ("source groups").

The data set's images are turned, flipped, shifted, zoomed and rotated copies of a few hundred
original smears, and no file name says which. Groups are found within each class, over all
splits together:

1. features: each frame is decoded at half size (160x120) and gets up to 200 ORB keypoints on
   its grey image and 200 on its mirror image (ORB is rotation-invariant, not flip-invariant);
   the black corners that rotation leaves are masked out. Cached per file.
2. candidates: a 256-word bag of visual words (k-majority clustering of the class's descriptor
   bits, fixed seed), tf-idf weighted; each image's most similar images (either orientation) are its
   candidates, best first.
3. verification: ORB matches (cross-checked) between the pair, then a rotation + shift + scale
   fit by RANSAC (``cv2.estimateAffinePartial2D``); a pair is the same smear when at least
   ``_MIN_INLIERS`` matches agree and the scale is near 1. Unrelated smears reach about 8.
4. union-find over verified pairs. A pair already in one group is not verified again, and an
   image stops after ``_MAX_MISSES`` rejected candidates in a row.
5. groups against groups: each group's summed histogram picks its most similar groups, and the
   most similar image pairs between them are verified as in 3 (this joins a TEST original that
   is also a TRAIN original when no single image's candidates crossed over).

Everything is deterministic (fixed seeds, fixed order). The result is cached under
``cache_dir()/groups`` keyed by the file list (resolved path, size, mtime), each file written
under a temporary name and renamed into place; a cache that cannot be written is said once and
costs computing again (cache.py), a cached file that cannot be read back is discarded and
recomputed. Image bytes are read through ``dataset.read_image_bytes`` (a FIFO named x.jpeg is
never opened), and the long steps stop at a Ctrl-C or SIGTERM (``interrupts.check``).

One module, though over 400 lines: the five steps above are one algorithm, read in that order,
whose thresholds (the constants below) were chosen together on the real data set; its cache and
the contact sheet that draws its result for a person to judge sit beside it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import statistics
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import cache, interrupts
from .dataset import map_threads, read_image_bytes

METHOD = (
    "ORB keypoints (half-size frame and its mirror), bag-of-words candidates, "
    "RANSAC similarity fit with >= {min_inliers} inliers, union-find within each class"
)
_FEATURE_VERSION = "orb-half-200-v1"  # change when _extract changes: old cached features are ignored
_GROUPS_VERSION = "groups-v4"  # change when grouping changes: old cached groupings are ignored
_N_FEATURES = 200  # per orientation; 200 at half size matches as well as 400 at full size, 4x faster
_FAST_THRESHOLD = 5  # smears are low-contrast: the default 20 finds ~50 corners per frame
_PATCH = 10  # ORB patch at half size (31 at full size would drop every corner within 15 px of an edge)
_VOCABULARY = 256  # words; 256 already ranks 30 of a group's 32 copies in its top 30 (EOSINOPHIL)
_CANDIDATES = 16  # most similar images verified per image (fewer once it has joined its group)
_MAX_MISSES = 5  # rejected candidates in a row before an image's list is abandoned (3 left a NEUTROPHIL image alone)
_GROUP_CANDIDATES = 3  # pass 2: most similar groups checked per group
_GROUP_TRIES = 3  # pass 2: most similar image pairs verified per pair of groups
_MIN_INLIERS = 15  # copies of one smear: 13-76 inliers at half size; different smears: at most 8
_SCALE_RANGE = (0.7, 1.45)  # the augmentations zoom by about 0.8-1.2
_RANSAC_PX = 2.5  # reprojection threshold at half size


# --------------------------------------------------------------------------- result


@dataclass(frozen=True)
class SourceGroups:
    """Path (str) -> group id ("EOSINOPHIL-0042"), the split and class of each path, and how."""

    group: Mapping[str, str]
    split: Mapping[str, str]  # path -> "TRAIN" | "TEST" | ...
    method: str
    digest: Mapping[str, str] = field(default_factory=dict)  # path -> blake2b of the bytes
    stats: Mapping[str, Any] = field(default_factory=dict)  # verifications made, inlier counts

    def group_of(self, path: str | Path) -> str:
        key = str(Path(path).resolve())
        if key not in self.group:
            raise KeyError(f"{path}: not in the grouped file list")
        return self.group[key]

    def members(self) -> dict[str, list[str]]:
        """Group id -> its paths, groups and paths sorted."""
        out: dict[str, list[str]] = {}
        for path in sorted(self.group):
            out.setdefault(self.group[path], []).append(path)
        return dict(sorted(out.items()))

    def summary(self) -> dict[str, Any]:
        """Groups per class, group sizes, TEST images whose group also holds TRAIN images."""
        members = self.members()
        train_digests = {self.digest[p] for p in self.group if self.split[p] == "TRAIN" and p in self.digest}
        per_class: dict[str, dict[str, Any]] = {}
        for gid, paths in members.items():
            cls = gid.rsplit("-", 1)[0]
            row = per_class.setdefault(cls, {"images": 0, "groups": 0, "singletons": 0, "sizes": [],
                                             "train_in_shared_groups": 0, "test_sharing_train": 0,
                                             "test_sharing_train_byte_identical": 0})
            row["images"] += len(paths)
            row["groups"] += 1
            row["singletons"] += len(paths) == 1
            row["sizes"].append(len(paths))
            if len(paths) > 1:
                row["train_in_shared_groups"] += sum(self.split[p] == "TRAIN" for p in paths)
            if any(self.split[p] == "TRAIN" for p in paths):
                test = [p for p in paths if self.split[p] == "TEST"]
                row["test_sharing_train"] += len(test)
                row["test_sharing_train_byte_identical"] += sum(self.digest.get(p) in train_digests for p in test)
        for row in per_class.values():
            sizes = row.pop("sizes")
            row["group_size"] = {"min": min(sizes), "median": statistics.median(sizes), "max": max(sizes)}
            row["test_sharing_train_beyond_identical"] = (
                row["test_sharing_train"] - row["test_sharing_train_byte_identical"])
        total = {key: sum(row[key] for row in per_class.values())
                 for key in ("images", "groups", "singletons", "train_in_shared_groups",
                             "test_sharing_train", "test_sharing_train_byte_identical",
                             "test_sharing_train_beyond_identical")}
        nothing = total["groups"] == total["images"]
        return {
            "method": self.method,
            **total,
            "grouping_found_nothing": nothing,
            "message": ("no two images were found to come from one original: every image is its own "
                        "group (a data set without augmented copies?)" if nothing else
                        f"{total['images']} images in {total['groups']} source groups "
                        f"({total['singletons']} singletons)"),
            "per_class": dict(sorted(per_class.items())),
        }

    def to_json(self) -> dict[str, Any]:
        return {"version": _GROUPS_VERSION, "method": self.method, "group": dict(self.group),
                "split": dict(self.split), "digest": dict(self.digest), "stats": dict(self.stats)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SourceGroups:
        return cls(group=data["group"], split=data["split"], method=data["method"],
                   digest=data.get("digest", {}), stats=data.get("stats", {}))


# --------------------------------------------------------------------------- entry point


def find_groups(
    files: Mapping[str, Mapping[str, Sequence[Path]]],
    *,
    progress: Callable[[str], None] | None = None,
    workers: int | None = None,
) -> SourceGroups:
    """Group ``files`` ({split: {class: [paths]}}, e.g. from ``audit.find_split`` per split) by
    the original smear they were augmented from. Groups never cross classes. Cached."""
    say = progress or (lambda message: None)
    entries = sorted({(str(Path(p).resolve()), split, cls)
                      for split, by_class in files.items()
                      for cls, paths in by_class.items() for p in paths})
    stamps = {path: _stamp(path) for path, _, _ in entries}
    key = hashlib.blake2b(json.dumps([_GROUPS_VERSION, [(p, s, c, stamps[p]) for p, s, c in entries]])
                          .encode(), digest_size=16).hexdigest()
    cached = _groups_dir() / f"{key}.json"
    found = _read_groups(cached, [p for p, _, _ in entries], echo=progress)
    if found is not None:
        say(f"source groups: cached ({cached})")
        return found

    paths = [p for p, _, _ in entries]
    say(f"source groups: features of {len(paths)} images")
    features = _features_for(paths, stamps, workers=workers, echo=progress)
    digests = _digests(paths, workers=workers)
    by_class: dict[str, list[str]] = {}
    for path, _, cls in entries:
        by_class.setdefault(cls, []).append(path)

    def one_class(cls: str) -> tuple[list[list[str]], dict[str, int]]:
        return _group_class(by_class[cls], features)

    group: dict[str, str] = {}
    stats: dict[str, Any] = {}
    pool = ThreadPoolExecutor(workers or _default_workers())
    try:  # each class said as it ends; an interrupt cancels the classes not started
        for cls, (components, class_stats) in zip(by_class, pool.map(one_class, list(by_class))):
            say(f"source groups: {cls}: {len(by_class[cls])} images -> {len(components)} groups")
            for number, component in enumerate(components):
                for path in component:
                    group[path] = f"{cls}-{number:04d}"
            stats[cls] = class_stats
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    result = SourceGroups(group=group, split={p: s for p, s, _ in entries},
                          method=METHOD.format(min_inliers=_MIN_INLIERS), digest=digests, stats=stats)
    _write_groups(cached, json.dumps(result.to_json()).encode(), echo=progress)
    return result


def _read_groups(path: Path, paths: list[str], *, echo: Callable[[str], None] | None) -> SourceGroups | None:
    """The cached grouping of exactly ``paths``, or None. A file that cannot be read back whole
    (torn, edited, another layout) is said, removed and recomputed; an older version's is not
    an error, only not used."""
    try:
        if not path.is_file():
            return None
    except OSError:
        return None
    try:
        data = json.loads(path.read_text())
        if data.get("version") != _GROUPS_VERSION:
            return None
        found = SourceGroups.from_json(data)
        missing = [p for p in paths if p not in found.group or p not in found.split]
        if missing:
            raise ValueError(f"{len(missing)} of its {len(paths)} images are not in it")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        cache.discarded(path, f"{type(exc).__name__}: {exc}"[:200], echo=echo)
        _remove(path)
        return None
    return found


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class _Features:
    points: tuple[np.ndarray, np.ndarray]  # (n, 2) float32 keypoint positions: plain, mirrored
    descriptors: tuple[np.ndarray, np.ndarray]  # (n, 32) uint8 ORB descriptors: plain, mirrored


_EMPTY = _Features((np.zeros((0, 2), np.float32),) * 2, (np.zeros((0, 32), np.uint8),) * 2)


def _extract(path: str) -> _Features:
    """ORB keypoints of one frame at half size, and of its mirror image (an unreadable file: none)."""
    import cv2

    try:
        data = np.frombuffer(read_image_bytes(path), dtype=np.uint8)
    except OSError:  # unreadable, or a FIFO / device named like an image: never waited on
        return _EMPTY
    image = cv2.imdecode(data, cv2.IMREAD_REDUCED_COLOR_2) if data.size else None
    if image is None:
        return _EMPTY
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    # rotated copies have black corners: their straight edges would match between any two frames
    mask = cv2.erode((image.max(axis=2) > 40).astype(np.uint8) * 255, np.ones((5, 5), np.uint8))
    orb = cv2.ORB_create(nfeatures=_N_FEATURES, fastThreshold=_FAST_THRESHOLD,
                         edgeThreshold=_PATCH, patchSize=_PATCH)
    points, descriptors = [], []
    for g, m in ((grey, mask), (np.ascontiguousarray(grey[:, ::-1]), np.ascontiguousarray(mask[:, ::-1]))):
        keypoints, desc = orb.detectAndCompute(g, m)
        points.append(np.float32([k.pt for k in keypoints]).reshape(-1, 2))
        descriptors.append(desc if desc is not None else np.zeros((0, 32), np.uint8))
    return _Features((points[0], points[1]), (descriptors[0], descriptors[1]))


def _features_for(paths: list[str], stamps: Mapping[str, list], *, workers: int | None,
                  echo: Callable[[str], None] | None = None) -> dict[str, _Features]:
    """Features of every path, from the per-file cache where it has them (a damaged file is
    recomputed; one warning for all of them)."""
    folder = cache.cache_dir() / "groups" / "features"
    writable = cache.writable_cache_dir("groups/features", echo=echo) is not None

    def one(path: str) -> _Features:
        interrupts.check()  # a SIGTERM stops a first grouping of 12,500 images here, not minutes later
        key = hashlib.blake2b(json.dumps([_FEATURE_VERSION, path, stamps[path]]).encode(),
                              digest_size=16).hexdigest()
        file = folder / key[:2] / f"{key}.npz"
        try:
            with np.load(file) as z:
                return _Features((z["p0"], z["p1"]), (z["d0"], z["d1"]))
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            if os.path.exists(file):  # a torn or foreign file: recomputed, and replaced below
                cache.discarded(file, f"{type(exc).__name__}: {exc}"[:200], echo=echo,
                                once_per="source-group feature files")
                _remove(file)
        features = _extract(path)
        if writable and cache.can_write():
            _save_features(file, features, echo=echo)
        return features

    return dict(zip(paths, map_threads(one, paths, workers=workers or _default_workers())))


def _save_features(file: Path, features: _Features, *, echo: Callable[[str], None] | None) -> None:
    """Written atomically (cache.write_atomic): a full disk leaves neither half a file nor a
    temporary one (it is said once, and nothing more is written)."""
    buffer = io.BytesIO()
    np.savez(buffer, p0=features.points[0], p1=features.points[1],
             d0=features.descriptors[0], d1=features.descriptors[1])
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        cache.write_atomic(file, buffer.getvalue())
    except OSError as exc:
        cache.write_failed(exc, echo=echo)


# --------------------------------------------------------------------------- grouping one class


def _group_class(paths: list[str], features: Mapping[str, _Features]) -> tuple[list[list[str]], dict[str, int]]:
    """Connected components of verified same-smear pairs, largest first (ties: first path)."""
    import cv2

    n = len(paths)
    feats = [features[p] for p in paths]
    hist_plain, hist_mirror = _bag_of_words(feats)
    candidates, mirrored = _candidates(hist_plain, hist_mirror)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    matcher = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True)
    stats = {"verified": 0, "accepted": 0, "best_rejected_inliers": 0}
    inliers_hist = np.zeros(101, np.int64)

    def check(i: int, j: int, flip: bool) -> bool:
        inliers = _verify(matcher, feats[i], feats[j], flip=flip)
        stats["verified"] += 1
        inliers_hist[min(inliers, 100)] += 1
        if inliers < _MIN_INLIERS:
            stats["best_rejected_inliers"] = max(stats["best_rejected_inliers"], inliers)
            return False
        stats["accepted"] += 1
        a, b = find(i), find(j)
        parent[max(a, b)] = min(a, b)
        return True

    # pass 1: each image against its most similar images
    for i in range(n):
        interrupts.check()  # a class of 3,000 images takes minutes: a SIGTERM stops it here
        misses = 0
        for j, flip in zip(candidates[i], mirrored[i]):
            if find(i) == find(j):
                continue
            if check(i, int(j), bool(flip)):
                misses = 0
            else:
                misses += 1
                if misses >= _MAX_MISSES:
                    break
    # pass 2: each group against its most similar groups (a TEST original that is also a TRAIN
    # original ends pass 1 as two groups when no image's candidates crossed over)
    groups = _components(find, n)
    if len(groups) > 1:
        stats["group_links"] = 0
        centre_plain = _unit_rows(np.stack([hist_plain[g].sum(0) for g in groups]))
        centre_mirror = _unit_rows(np.stack([hist_mirror[g].sum(0) for g in groups]))
        sim, _ = _similarity(centre_plain, centre_plain, centre_mirror)
        np.fill_diagonal(sim, -np.inf)
        for a in range(len(groups)):
            for b in np.argsort(-sim[a], kind="stable")[:_GROUP_CANDIDATES]:
                ga, gb = groups[a], groups[int(b)]
                if find(ga[0]) == find(gb[0]):
                    continue
                pair_sim, pair_flip = _similarity(hist_plain[ga], hist_plain[gb], hist_mirror[gb])
                best = np.argsort(-pair_sim, axis=None, kind="stable")[:_GROUP_TRIES]
                for flat in best:
                    r, c = divmod(int(flat), len(gb))
                    if check(ga[r], gb[c], bool(pair_flip[r, c])):
                        stats["group_links"] += 1
                        break
    components = [[paths[i] for i in g] for g in _components(find, n)]
    ordered = sorted(components, key=lambda c: (-len(c), c[0]))
    stats["inliers_histogram"] = inliers_hist.tolist()  # verifications by inlier count (100: 100+)
    return ordered, stats


def _components(find: Callable[[int], int], n: int) -> list[list[int]]:
    """Union-find roots -> member index lists, in order of first member."""
    out: dict[int, list[int]] = {}
    for i in range(n):
        out.setdefault(find(i), []).append(i)
    return list(out.values())


def _verify(matcher: Any, a: _Features, b: _Features, *, flip: bool) -> int:
    """Inliers of the best rotation + shift + scale taking ``a``'s keypoints to ``b``'s (or to
    ``b``'s mirror image's); 0 when the fit is implausible."""
    import cv2

    da, db = a.descriptors[0], b.descriptors[int(flip)]
    if len(da) < _MIN_INLIERS or len(db) < _MIN_INLIERS:
        return 0
    matches = matcher.match(da, db)
    if len(matches) < _MIN_INLIERS:
        return 0
    src = a.points[0][[m.queryIdx for m in matches]]
    dst = b.points[int(flip)][[m.trainIdx for m in matches]]
    fit, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                               ransacReprojThreshold=_RANSAC_PX, maxIters=500)
    if fit is None:
        return 0
    scale = float(np.hypot(fit[0, 0], fit[1, 0]))
    if not _SCALE_RANGE[0] <= scale <= _SCALE_RANGE[1]:
        return 0
    return int(inliers.sum())


def _bag_of_words(feats: list[_Features]) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length tf-idf word histograms (n, V) of each image and of its mirror image."""
    plain = [f.descriptors[0] for f in feats]
    mirror = [f.descriptors[1] for f in feats]
    all_desc = np.concatenate(plain)
    if len(all_desc) == 0:
        return np.zeros((len(feats), 1), np.float32), np.zeros((len(feats), 1), np.float32)
    words = _vocabulary(all_desc)
    hist_plain = _histograms(plain, words)
    hist_mirror = _histograms(mirror, words)
    df = (hist_plain > 0).sum(0)
    idf = np.log((len(feats) + 1) / (df + 1)).astype(np.float32)
    return _unit_rows(hist_plain * idf), _unit_rows(hist_mirror * idf)


def _similarity(a: np.ndarray, b_plain: np.ndarray, b_mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine similarity of rows ``a`` to ``b`` in its better orientation, and whether that is
    the mirror image; rounded, so that last-bit differences between BLAS builds cannot reorder."""
    same = np.round(a @ b_plain.T, 5)
    mirrored = np.round(a @ b_mirror.T, 5)
    return np.maximum(same, mirrored), mirrored > same


def _candidates(hist_plain: np.ndarray, hist_mirror: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per image, the indices of its most similar other images (best first) by bag-of-words
    cosine, and whether each is more similar as a mirror image."""
    n = len(hist_plain)
    k = min(_CANDIDATES, n - 1)
    cand = np.zeros((n, max(k, 0)), np.int64)
    flip = np.zeros((n, max(k, 0)), bool)
    if k <= 0:
        return cand, flip
    for start in range(0, n, 1024):  # 1024 x n floats at a time
        rows = slice(start, min(n, start + 1024))
        best, mirrored = _similarity(hist_plain[rows], hist_plain, hist_mirror)
        best[np.arange(best.shape[0]), np.arange(rows.start, rows.stop)] = -np.inf
        order = np.argsort(-best, axis=1, kind="stable")[:, :k]  # stable: ties keep index order
        cand[rows] = order
        flip[rows] = np.take_along_axis(mirrored, order, axis=1)
    return cand, flip


def _bits(descriptors: np.ndarray) -> np.ndarray:
    return np.unpackbits(descriptors, axis=1).astype(np.float32)


def _vocabulary(descriptors: np.ndarray, *, sample: int = 40_000, iterations: int = 8) -> np.ndarray:
    """k-majority centres (V, 256) of descriptor bits (k-means for bit strings); fixed seed."""
    rng = np.random.default_rng(0)
    n_words = max(1, min(_VOCABULARY, len(descriptors) // 20))
    take = rng.choice(len(descriptors), min(sample, len(descriptors)), replace=False)
    points = _bits(descriptors[np.sort(take)])
    centres = points[rng.choice(len(points), n_words, replace=False)].copy()
    for _ in range(iterations):
        nearest = _nearest(points, centres)
        counts = np.bincount(nearest, minlength=n_words).astype(np.float32)
        sums = np.zeros_like(centres)
        np.add.at(sums, nearest, points)
        filled = counts > 0
        # k-majority: centres stay 0/1, so every distance is an exact small integer in float32
        # whatever the BLAS blocking or thread count (ties go to the lowest word): deterministic
        centres[filled] = (sums[filled] * 2 > counts[filled, None]).astype(np.float32)
    return centres


def _nearest(points: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Index of the nearest centre of each row; uint8 rows are packed descriptors (unpacked a
    chunk at a time: 1.2M unpacked descriptors would take 1.2 GB)."""
    norms = (centres ** 2).sum(1)
    out = np.empty(len(points), np.int64)
    for start in range(0, len(points), 32_768):
        chunk = points[start:start + 32_768]
        if chunk.dtype == np.uint8:
            chunk = _bits(chunk)
        out[start:start + len(chunk)] = (norms[None, :] - 2 * chunk @ centres.T).argmin(1)
    return out


def _histograms(per_image: list[np.ndarray], centres: np.ndarray) -> np.ndarray:
    counts = np.array([len(d) for d in per_image])
    owner = np.repeat(np.arange(len(per_image)), counts)
    words = _nearest(np.concatenate(per_image), centres) if counts.sum() else np.zeros(0, np.int64)
    v = len(centres)
    flat = np.bincount(owner * v + words, minlength=len(per_image) * v)
    return flat.reshape(len(per_image), v).astype(np.float32)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-9)


# --------------------------------------------------------------------------- contact sheet


def contact_sheet(
    groups: SourceGroups,
    out: Path,
    *,
    n_groups: int = 12,
    per_group: int = 6,
    seed: int = 0,
    thumb: tuple[int, int] = (160, 120),
) -> Path:
    """A PNG with one row per randomly chosen group (groups of two or more images first), up to
    ``per_group`` of its images each, labelled with the group id, its size and its splits."""
    from PIL import Image, ImageDraw

    members = groups.members()
    rng = random.Random(seed)
    shared = [g for g, paths in members.items() if len(paths) > 1]
    single = [g for g, paths in members.items() if len(paths) == 1]
    chosen = rng.sample(shared, min(n_groups, len(shared)))
    chosen += rng.sample(single, min(n_groups - len(chosen), len(single)))
    label_w, (tw, th) = 150, thumb
    sheet = Image.new("RGB", (label_w + per_group * tw, max(1, len(chosen)) * (th + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for row, gid in enumerate(sorted(chosen)):
        paths = members[gid]
        shown = sorted(rng.sample(paths, min(per_group, len(paths))))
        n_train = sum(groups.split[p] == "TRAIN" for p in paths)
        y = row * (th + 4)
        draw.text((4, y + 4), f"{gid}\n{len(paths)} images\n{n_train} TRAIN\n{len(paths) - n_train} other",
                  fill="black")
        for col, path in enumerate(shown):
            try:
                with Image.open(io.BytesIO(read_image_bytes(path))) as img:
                    tile = img.convert("RGB").resize(thumb)
            except OSError:
                tile = Image.new("RGB", thumb, "grey")
            sheet.paste(tile, (label_w + col * tw, y))
            draw.text((label_w + col * tw + 3, y + 2), groups.split[path], fill="yellow")
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.quantize(256).save(out, optimize=True)  # 256 colours: a third of the size, same to the eye
    return out


# --------------------------------------------------------------------------- helpers


def _stamp(path: str) -> list:
    try:
        st = os.stat(path)
        return [st.st_size, st.st_mtime_ns]
    except OSError:
        return [None, None]


def _digests(paths: list[str], *, workers: int | None) -> dict[str, str]:
    def one(path: str) -> str:
        try:
            return hashlib.blake2b(read_image_bytes(path), digest_size=16).hexdigest()
        except OSError:
            return ""

    digests = map_threads(one, paths, workers=workers or _default_workers())
    return {p: d for p, d in zip(paths, digests) if d}


def _groups_dir() -> Path:
    return cache.cache_dir() / "groups"


def _default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _write_groups(path: Path, data: bytes, *, echo: Callable[[str], None] | None) -> None:
    """Atomic (cache.write_atomic), and never fatal: a cache that cannot take it is said once."""
    if cache.writable_cache_dir("groups", echo=echo) is None:
        return
    try:
        cache.write_atomic(path, data)
    except OSError as exc:
        cache.write_failed(exc, echo=echo)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass
