from __future__ import annotations

from pathlib import Path

import pytest

from bcpareto.config import load_config
from bcpareto.errors import ConfigError

from .conftest import ROOT


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs").glob("*.toml")))
def test_every_shipped_preset_loads(name: str) -> None:
    config = load_config(name)
    assert config.name == name and config.image_size > 0


def test_overrides_win_and_none_is_ignored() -> None:
    config = load_config("seed", epochs=1, image_size=None)
    assert config.epochs == 1 and config.image_size == 224 and config.color_mode == "grayscale"


@pytest.mark.parametrize("text,fragment", [
    ("image_size = 0", "image_size = 0: expected 8-512 px"),
    ("padding = 'full'", "expected one of same, valid"),
    ("augment = ['mixup']", "'mixup'"),
    ("colour = 'rgb'", "unknown key(s) colour"),
    ("cell_crop = 8", "cell_crop = 8: expected 0 (whole frame) or a window side"),
    ("cell_crop = 'cell'", "cell_crop = 'cell'"),
    ("image_size = ", "not valid TOML"),
])
def test_bad_preset_names_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="bad.toml") as err:
        load_config(str(path))
    assert fragment in str(err.value)


def test_unknown_preset_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="default"):
        load_config("no-such-preset")
