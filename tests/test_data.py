"""Loading: any image mode becomes RGB, bad files are skipped, the split protocol is honest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bcpareto.audit import cross_split_duplicates, find_split
from bcpareto.data import decode_image, load_data

from .conftest import BLOOD_CELLS, copy_subset, needs_data


@pytest.mark.parametrize("mode,suffix", [("CMYK", ".jpeg"), ("L", ".jpeg"), ("RGBA", ".png"), ("P", ".png")])
def test_any_image_mode_decodes_to_rgb_at_the_requested_size(tmp_path: Path, mode: str, suffix: str) -> None:
    path = tmp_path / f"cell{suffix}"
    Image.new("RGB", (320, 240), (200, 40, 90)).convert(mode).save(path)
    image = decode_image(path, image_size=24, color_mode="rgb")
    assert image.shape == (24, 24, 3) and image.dtype == np.uint8
    gray = decode_image(path, image_size=24, color_mode="grayscale")
    assert gray.shape == (24, 24, 1)


@needs_data
def test_validation_is_a_stratified_seeded_share_of_train_and_test_drops_train_copies(tmp_path: Path) -> None:
    data_dir = copy_subset(tmp_path / "data", per_class=20)
    real_copies = len(cross_split_duplicates(find_split(data_dir / "TRAIN"), find_split(data_dir / "TEST")))
    # plant one more TEST file that is a byte copy of a TRAIN file
    train_file = sorted((data_dir / "TRAIN" / "MONOCYTE").iterdir())[0]
    (data_dir / "TEST" / "MONOCYTE" / "copy.jpeg").write_bytes(train_file.read_bytes())

    first = load_data(data_dir, image_size=16, color_mode="rgb", val_fraction=0.25, seed=3)
    again = load_data(data_dir, image_size=16, color_mode="rgb", val_fraction=0.25, seed=3)
    other = load_data(data_dir, image_size=16, color_mode="rgb", val_fraction=0.25, seed=4)

    assert np.bincount(first.val.labels).tolist() == [5, 5, 5, 5]  # 25% of 20 per class
    assert np.bincount(first.train.labels).tolist() == [15, 15, 15, 15]
    assert not set(first.val.paths) & set(first.train.paths)
    assert first.val.paths == again.val.paths and first.val.paths != other.val.paths
    assert first.test_duplicates_removed == real_copies + 1 and len(first.test) == 80 - real_copies
    assert not any(p.endswith("copy.jpeg") for p in first.test.paths)
    assert first.test_source == f"TEST minus {real_copies + 1} TRAIN duplicates"

    kept = load_data(data_dir, image_size=16, color_mode="rgb", validation="test", drop_test_duplicates=False)
    assert kept.val is kept.test and len(kept.test) == 81 and kept.val_source == "TEST"
