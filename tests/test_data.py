"""Loading: any image mode becomes RGB, bad files are skipped, the split protocol is honest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bcpareto.data import crop_cell, decode_image, load_data, locate_cell
from bcpareto.dataset import cross_split_duplicates, find_split

from .conftest import copy_subset, needs_data


@pytest.mark.parametrize("mode,suffix", [("CMYK", ".jpeg"), ("L", ".jpeg"), ("RGBA", ".png"), ("P", ".png")])
def test_any_image_mode_decodes_to_rgb_at_the_requested_size(tmp_path: Path, mode: str, suffix: str) -> None:
    path = tmp_path / f"cell{suffix}"
    Image.new("RGB", (320, 240), (200, 40, 90)).convert(mode).save(path)
    image = decode_image(path, image_size=24, color_mode="rgb")
    assert image.shape == (24, 24, 3) and image.dtype == np.uint8
    gray = decode_image(path, image_size=24, color_mode="grayscale")
    assert gray.shape == (24, 24, 1)


def _smear(cell_at: tuple[int, int] | None, *, platelets: int = 6, seed: int = 0) -> np.ndarray:
    """A synthetic 240x320 smear: pale background, pink red cells, purple platelet dots and,
    if ``cell_at`` is given, one purple white-cell nucleus (radius 28) there."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:240, :320]
    frame = np.empty((240, 320, 3), np.uint8)
    frame[:] = (235, 228, 222)
    for _ in range(25):
        y, x = rng.integers(0, 240), rng.integers(0, 320)
        frame[(rows - y) ** 2 + (cols - x) ** 2 < 22**2] = (215, 160, 170)
    for _ in range(platelets):
        y, x = rng.integers(0, 240), rng.integers(0, 320)
        frame[(rows - y) ** 2 + (cols - x) ** 2 < 4**2] = (120, 70, 190)
    if cell_at is not None:
        frame[(rows - cell_at[0]) ** 2 + (cols - cell_at[1]) ** 2 < 28**2] = (110, 60, 200)
    return frame


@pytest.mark.parametrize("cell_at", [(120, 160), (40, 270), (200, 40), (30, 30)])
def test_locate_cell_finds_the_nucleus_not_the_platelets(cell_at: tuple[int, int]) -> None:
    y, x = locate_cell(_smear(cell_at, platelets=8, seed=cell_at[1]))
    assert abs(y - cell_at[0]) <= 8 and abs(x - cell_at[1]) <= 8


def test_crop_cell_stays_inside_the_frame_and_falls_back_to_the_centre() -> None:
    frame = _smear((230, 310))
    window = crop_cell(frame, 144)
    assert window.shape == (144, 144, 3)
    assert np.array_equal(window, frame[240 - 144 :, 320 - 144 :])  # shifted in, not padded
    assert locate_cell(_smear(None, platelets=0)) == (120, 160)  # no stain: the centre
    assert crop_cell(frame[:100, :90], 144).shape == (90, 90, 3)  # frame smaller than the window


def test_decode_with_cell_crop_magnifies_the_cell(tmp_path: Path) -> None:
    path = tmp_path / "smear.png"
    Image.fromarray(_smear((60, 240), platelets=0)).save(path)
    whole = decode_image(path, image_size=32, color_mode="rgb")
    cropped = decode_image(path, image_size=32, color_mode="rgb", cell_crop=96)
    assert whole.shape == cropped.shape == (32, 32, 3)

    def purple_share(image: np.ndarray) -> float:
        pixels = image.astype(int)
        return float(np.mean(pixels[..., 2] - pixels[..., 0] > 50))

    # nucleus area pi*28^2 is 3% of the frame and 27% of a 96x96 window
    assert purple_share(whole) < 0.06 and purple_share(cropped) > 0.2
    assert decode_image(path, image_size=32, color_mode="grayscale", cell_crop=96).shape == (32, 32, 1)


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


def _batch_of(images: np.ndarray, augment: tuple[str, ...]) -> np.ndarray:
    from bcpareto.data import Split, training_dataset

    split = Split("TRAIN", images, np.zeros(len(images), np.int32), tuple(map(str, range(len(images)))))
    ds = training_dataset(split, batch_size=len(images), augment=augment, seed=0)
    return ds[0][0]


def test_stain_augmentation_changes_colour_balance_per_image_and_keeps_the_range() -> None:
    images = np.tile(np.array([180, 120, 200], np.uint8), (16, 8, 8, 1))  # one purple, 16 times
    plain = _batch_of(images, ())
    stained = _batch_of(images, ("stain",))
    assert np.array_equal(plain, images.astype(np.float32))
    assert stained.shape == plain.shape and stained.min() >= 0 and stained.max() <= 255
    ratios = stained[:, 0, 0, 0] / stained[:, 0, 0, 2]  # red/blue differs from image to image
    assert ratios.std() > 0.01 and not np.allclose(stained, plain)
    assert np.allclose(stained, stained[:, :1, :1, :])  # a colour change, not a spatial one


def test_zoom_augmentation_magnifies_by_up_to_a_quarter() -> None:
    images = np.zeros((32, 40, 40, 3), np.uint8)
    images[:, 10:30, 10:30] = 255  # a 20x20 square, 25% of the area
    zoomed = _batch_of(images, ("zoom",))
    share = (zoomed[..., 0] > 127).mean(axis=(1, 2))
    assert zoomed.shape == images.shape
    # an 80-100% window of the side shows the square at 1-1.56x its area (minus cut-off parts)
    assert share.max() > 0.27 and share.min() > 0.1 and share.max() <= 0.25 / 0.8**2 + 0.03
