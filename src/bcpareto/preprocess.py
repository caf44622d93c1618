"""How a camera frame becomes a model's input: find the stained white cell, cut a window, resize.

numpy and Pillow only, and no import from bcpareto: `bcpareto export` copies this very file
beside the exported model, so a device implementer can run (or port) exactly what training did:

    python preprocess.py frame.jpeg [more.jpeg ...]   # reads model_card.json beside this file

prints each frame's input array shape and, with ai-edge-litert installed, the predicted class.
bcpareto's own decoding (data.py) calls these same functions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

# Bump when locate_cell changes: cached crops made by another version are then decoded again.
LOCATOR_VERSION = 1


def locate_cell(rgb: np.ndarray) -> tuple[int, int]:
    """(row, column) of the stained white cell in an RGB uint8 frame (H, W, 3).

    Wright/Giemsa stain leaves the white cell's nucleus purple (blue well above red), red cells
    pink and the background pale. On a 4x-reduced frame, pixels with blue - red > 25 and
    green < 170 are counted as stain, and the centre of the 64x64-source-pixel box holding the
    most stain wins: a box, not a centroid, so that stray platelets (small purple dots) cannot
    pull it off the cell. Without any stain the frame's centre is returned. Only numpy passes over
    a 60x80 array, so an edge device can run it in front of the model.
    """
    height, width = rgb.shape[:2]
    step = 4
    small = rgb[: height - height % step or height, : width - width % step or width].astype(np.int16)
    if small.shape[0] >= step and small.shape[1] >= step:
        h, w = small.shape[0] // step, small.shape[1] // step
        small = small.reshape(h, step, w, step, 3).mean(axis=(1, 3))
    else:
        step = 1
    red, green, blue = small[..., 0], small[..., 1], small[..., 2]
    stain = ((blue - red > 25) & (green < 170)).astype(np.int32)
    if not stain.any():
        return height // 2, width // 2
    half = max(1, 32 // step)
    rows, cols = stain.shape
    summed = np.pad(stain, ((1, 0), (1, 0))).cumsum(0).cumsum(1)  # integral image
    y0 = np.clip(np.arange(rows) - half, 0, rows)[:, None]
    y1 = np.clip(np.arange(rows) + half, 0, rows)[:, None]
    x0 = np.clip(np.arange(cols) - half, 0, cols)[None, :]
    x1 = np.clip(np.arange(cols) + half, 0, cols)[None, :]
    boxes = summed[y1, x1] - summed[y0, x1] - summed[y1, x0] + summed[y0, x0]
    y, x = np.unravel_index(int(np.argmax(boxes)), boxes.shape)
    return int(y * step + step // 2), int(x * step + step // 2)


def crop_cell(rgb: np.ndarray, size: int) -> np.ndarray:
    """A size x size window of ``rgb`` centred on ``locate_cell``, shifted to stay inside the frame
    (smaller frames give a window of their shorter side)."""
    height, width = rgb.shape[:2]
    size = min(size, height, width)
    y, x = locate_cell(rgb)
    top = min(max(y - size // 2, 0), height - size)
    left = min(max(x - size // 2, 0), width - size)
    return rgb[top : top + size, left : left + size]


def decode_image(path: "str | Path", *, image_size: int, color_mode: str, cell_crop: int = 0) -> np.ndarray:
    """One file -> uint8 (S, S, C). Any mode (CMYK, palette, grayscale, RGBA) is converted.

    ``cell_crop``: cut a window of that many source pixels around the stained cell first (the
    stain is found in colour, also for grayscale output)."""
    from PIL import Image

    with Image.open(path) as img:
        if cell_crop:
            rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
            img = Image.fromarray(np.ascontiguousarray(crop_cell(rgb, cell_crop)))
        else:
            img.draft("RGB" if color_mode == "rgb" else "L", (image_size, image_size))  # DCT scaling
        img = img.convert("RGB" if color_mode == "rgb" else "L")
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR, reducing_gap=2.0)
        array = np.asarray(img, dtype=np.uint8)
    return array[..., None] if array.ndim == 2 else array


def input_settings(card_path: "str | Path") -> dict:
    """image_size, color_mode and cell_crop from an exported model_card.json."""
    config = json.loads(Path(card_path).read_text())["training_config"]
    return {"image_size": int(config["image_size"]), "color_mode": config["color_mode"],
            "cell_crop": int(config.get("cell_crop") or 0)}


def _main(paths: list[str]) -> None:
    here = Path(__file__).resolve().parent
    settings = input_settings(here / "model_card.json")
    card = json.loads((here / "model_card.json").read_text())
    interpreter = None
    try:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(here / card["file"]))
        interpreter.allocate_tensors()
    except (ImportError, ValueError):  # no LiteRT, or a .keras export: print the inputs only
        pass
    for path in paths:
        pixels = decode_image(path, **settings)
        line = f"{path}: input {pixels.shape} {pixels.dtype}"
        if interpreter is not None:
            inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
            interpreter.set_tensor(inp["index"], pixels[None].astype(inp["dtype"]))
            interpreter.invoke()
            line += f" -> {card['class_names'][int(np.argmax(interpreter.get_tensor(out['index'])[0]))]}"
        print(line)


if __name__ == "__main__":
    _main(sys.argv[1:])
