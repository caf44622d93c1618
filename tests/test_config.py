from __future__ import annotations

from pathlib import Path

import pytest

from bcpareto.config import DEFAULT_GRID, load_config, resolve_grid, shipped_configs
from bcpareto.errors import ConfigError

from .conftest import ROOT


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs").glob("*.toml")))
def test_every_shipped_preset_loads(name: str) -> None:
    config = load_config(name)
    assert config.name == name and config.image_size > 0


def test_new_settings_at_their_defaults_keep_the_earlier_study_names() -> None:
    """A run of the edge preset made before strip_tflite_names existed still resumes."""
    from dataclasses import replace

    from bcpareto.gridspec import read_grid
    from bcpareto.study import default_study_name

    edge = load_config("edge")
    name = default_study_name("edge_grid.xlsx", read_grid(resolve_grid(edge)), edge)
    assert name == "edge_grid-edge-09a3d56d"  # the study of the edge run in docs/results/validation.md
    assert replace(edge, strip_tflite_names=True).fingerprint() != edge.fingerprint()
    assert load_config("blocks").strip_tflite_names


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


def test_shipped_presets_are_the_repository_configs_folder() -> None:
    assert shipped_configs().resolve() == (ROOT / "configs").resolve()


def test_a_users_configs_folder_comes_first_and_still_finds_the_shipped_grid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "configs").mkdir()
    shipped = (shipped_configs() / "quick.toml").read_text()
    (tmp_path / "configs" / "quick.toml").write_text(shipped.replace("epochs = 2", "epochs = 7"))
    monkeypatch.chdir(tmp_path)
    config = load_config("quick")
    assert config.epochs == 7  # the user's copy, not the shipped one
    assert resolve_grid(config) == (shipped_configs() / "edge_grid.xlsx").resolve()


def test_a_grid_sheet_beside_the_users_preset_wins(tmp_path: Path) -> None:
    (tmp_path / "edge_grid.xlsx").write_bytes(b"mine")
    (tmp_path / "mine.toml").write_text('grid = "edge_grid.xlsx"\n')
    assert resolve_grid(load_config(str(tmp_path / "mine.toml"))) == tmp_path / "edge_grid.xlsx"


def test_a_missing_grid_sheet_is_named_beside_the_preset(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('grid = "nowhere.xlsx"\n')
    assert resolve_grid(load_config(str(tmp_path / "mine.toml"))) == tmp_path / "nowhere.xlsx"


def test_a_preset_without_a_grid_uses_the_default_sheet() -> None:
    assert resolve_grid(load_config("default")) == Path(DEFAULT_GRID)


def test_the_dataclass_defaults_are_the_default_preset() -> None:
    """One truth: TrainConfig() trains exactly as configs/default.toml does."""
    from bcpareto.config import TrainConfig

    assert TrainConfig() == load_config("default")
    assert TrainConfig().fingerprint() == load_config("default").fingerprint()


def test_per_tensor_int8_is_a_preset_key_that_names_a_new_study_only_when_on() -> None:
    base = load_config("edge")
    assert not base.int8_per_tensor
    on = load_config("edge", int8_per_tensor=True)
    assert on.int8_per_tensor and on.fingerprint() != base.fingerprint()
    assert load_config("edge", int8_per_tensor=False).fingerprint() == base.fingerprint()


def test_a_preset_states_only_what_differs_and_a_key_left_out_is_the_default(tmp_path: Path) -> None:
    from dataclasses import fields

    from bcpareto.config import TrainConfig

    preset = tmp_path / "mine.toml"
    preset.write_text("epochs = 3\n")
    config = load_config(str(preset))
    assert config.epochs == 3
    assert config.augment == TrainConfig().augment != ()  # left out: augmented as the default
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    import tomllib

    for path in sorted(shipped_configs().glob("*.toml")):  # the shipped presets restate nothing
        if path.stem == "default":
            continue
        raw = tomllib.loads(path.read_text())
        same = [k for k, v in raw.items() if k in defaults and (tuple(v) if isinstance(v, list) else v) == defaults[k]]
        assert not same, f"{path.name} restates the default of {same}"
