import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from core.config import Config, ConfigError, load_config

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
MINIMAL = "paths:\n  raw: /r\n  warehouse: /w\n  models: /m\n"


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(CONF_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_validates(path):
    config = load_config(path)
    assert isinstance(config, Config)
    assert config.paths.raw and config.paths.warehouse and config.paths.models


def test_defaults_fill_unset_sections(tmp_path):
    config = load_config(_write(tmp_path, MINIMAL))
    assert config.features.window_days == 30
    assert config.model.expert_sets == {"ctr": (0, 1, 2), "cvr": (1, 2, 3, 4)}
    assert config.paths.staging_root == "/w/_staging"


def test_overrides_convert_types(tmp_path):
    config = load_config(_write(tmp_path, MINIMAL), [
        "train.num_proc=3", "model.name=mind", "score.exclude_tags=[t1, t2]", "generate.start_date=2026-01-05",
        "features.max_bad_fraction=0.5", "score.combined=false", "model.expert_sets={ctr: [0], cvr: [1]}",
        "paths.raw=/elsewhere",
    ])
    assert config.train.num_proc == 3
    assert config.model.name == "mind"
    assert config.score.exclude_tags == ("t1", "t2")
    assert config.generate.start_date == dt.date(2026, 1, 5)
    assert config.features.max_bad_fraction == 0.5
    assert config.score.combined is False
    assert config.model.expert_sets == {"ctr": (0,), "cvr": (1,)}
    assert config.paths.raw == "/elsewhere"


def test_config_is_frozen(tmp_path):
    config = load_config(_write(tmp_path, MINIMAL))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.train.num_proc = 9


@pytest.mark.parametrize("overrides, message", [
    (["train.num_procs=2"], r"unknown key train.num_procs in train; valid keys: .*num_proc"),
    (["trian.num_proc=2"], r"unknown key trian in the top level; valid keys: features, generate, model"),
    (["model.name=bert"], r"model.name='bert' is not valid; valid values: mvke, two_tower, hard_sharing, mmoe, mind"),
    (["train.num_proc=two"], r"train.num_proc='two' must be an integer"),
    (["train.num_proc=0"], r"train.num_proc, train.epochs and train.batch_size must be >= 1"),
    (["model.expert_sets={ctr: [0, 7], cvr: [1]}"], r"model.expert_sets.ctr = \[0, 7\]"),
    (["generate.start_date=yesterday"], r"generate.start_date='yesterday' must be a date"),
    (["features.max_bad_fraction=2"], r"features.max_bad_fraction must be in \[0, 1\]"),
    (["score.combined=maybe"], r"score.combined='maybe' must be true or false"),
    (["paths.raw="], r"paths.raw is required"),
    (["trainnum_proc"], r"--set expects key=value"),
])
def test_bad_keys_and_values_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, MINIMAL), overrides)


def test_required_paths(tmp_path):
    with pytest.raises(ConfigError, match="paths is required"):
        load_config(_write(tmp_path, "train:\n  epochs: 1\n"))
    with pytest.raises(ConfigError, match="missing required key.*paths.models"):
        load_config(_write(tmp_path, "paths:\n  raw: /r\n  warehouse: /w\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("override, message", [
    ("paths.raw=ftp://host/raw", r"unsupported scheme 'ftp'"),
    ("paths.models=/w/models", r"paths.warehouse \(/w/\) and paths.models \(/w/models/\) must not contain each other"),
    ("paths.raw=/data/../etc", r"must not contain '..'"),
    ("paths.warehouse=/r", r"paths.raw \(/r/\) and paths.warehouse \(/r/\)"),
])
def test_paths_are_validated(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, MINIMAL), [override])
