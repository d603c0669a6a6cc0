import dataclasses
import datetime as dt
from pathlib import Path

import pytest
import yaml

from core.config import Config, ConfigError, Paths, config_from_dict, load_config, normalise_path

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
MINIMAL = "paths:\n  raw: /r\n  warehouse: /w\n  models: /m\n"


def _write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("path", sorted(CONF_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_with_every_value_it_sets(path):
    """Each setting of the file, read here with plain YAML, is the loaded value: lists become
    tuples, paths are made absolute against the folder the command runs in."""
    config = load_config(path)
    assert isinstance(config, Config)

    def leaves(tree, prefix=()):
        for key, value in tree.items():
            if isinstance(value, dict) and not (prefix == ("model",) and key == "expert_sets"):
                yield from leaves(value, (*prefix, key))
            else:
                yield (*prefix, key), value

    written = list(leaves(yaml.safe_load(path.read_text())))
    assert written  # the file sets something
    for (section, *names), value in written:
        loaded = getattr(config, section)
        for name in names:
            loaded = getattr(loaded, name)
        if section == "paths":
            value = str(Path(value).resolve())
        elif isinstance(value, list):
            value = tuple(value)
        elif isinstance(value, dict):
            value = {k: tuple(v) for k, v in value.items()}
        assert loaded == value, (section, *names)


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
    (["score.top_n=010"], r"score.top_n=010 must be a decimal integer without leading zeros, 0x, 0o or _ "
                          r"\(YAML reads it as 8\)"),
    (["train.batch_size=0x200"], r"train.batch_size=0x200 must be a decimal integer .*\(YAML reads it as 512\)"),
    (["train.epochs=1_0"], r"train.epochs=1_0 must be a decimal integer .*\(YAML reads it as 10\)"),
    (["features.window_days=900000"], r"features.window_days must be in 1..3650, got 900000"),
    (["train.window_days=3651"], r"train.window_days must be in 1..3650, got 3651"),
    (["spark.shuffle_partitions=0"], r"spark.shuffle_partitions must be >= 1, got 0"),
    (["spark.arrow_batch_size=-1"], r"spark.arrow_batch_size must be >= 1, got -1"),
    (["spark.master="], r"spark.master must not be empty"),
    (["spark.driver_memory=lots"], r"spark.driver_memory='lots' must be a JVM memory size such as 4g or 512m"),
    (["spark.executor_memory=4 g"], r"spark.executor_memory='4 g' must be a JVM memory size"),
    (["spark.driver_memory=4gb"], r"spark.driver_memory='4gb' must be a JVM memory size"),  # -Xmx4gb: refused
    (["features.activity_buckets=[0, 010, 030]"],
     r"features.activity_buckets\[1\]=010 must be a decimal number without leading zeros, 0x, 0o or _ "
     r"\(YAML reads it as 8\)"),
    (["train.publish_if.max_auc_drop=0_1"], r"train.publish_if.max_auc_drop=0_1 must be a decimal number"),
    (["train.num_proc=0"], r"train.num_proc, train.epochs and train.batch_size must be >= 1"),
    (["model.expert_sets={ctr: [0, 7], cvr: [1]}"], r"model.expert_sets.ctr = \[0, 7\]"),
    (["model.expert_sets={ctr: [0, 0, 1], cvr: [1]}"], r"model.expert_sets.ctr = \[0, 0, 1\]: .*, each expert once"),
    (["model.objectives=[ctr, ctr]", "model.expert_sets={ctr: [0]}", "model.two_tower_objective=ctr"],
     r"model.objectives must not repeat an objective, got \['ctr', 'ctr'\]"),
    (["generate.start_date=yesterday"], r"generate.start_date='yesterday' must be a date"),
    (["generate.start_date=2026-02-30"], r"generate.start_date='2026-02-30' must be a date YYYY-MM-DD"),
    (["generate.start_date=2026-11-01T05:00:00"],
     r"generate.start_date='2026-11-01T05:00:00' must be a date YYYY-MM-DD, not a date and time"),
    (["generate.start_date=9989-12-31", "generate.days=2"],
     r"the generated days must end by 9989-12-31, got generate.start_date=9989-12-31 and generate.days=2"),
    (["generate.days=99999999"], r"the generated days must end by 9989-12-31, got .* generate.days=99999999"),
    (["features.max_bad_fraction=2"], r"features.max_bad_fraction must be in \[0, 1\]"),
    (["nightly.gates.min_profile_share=95"], r"nightly.gates.min_profile_share must be in \[0, 1\], got 95"),
    (["nightly.gates.max_score_shift=-0.1"], r"nightly.gates.max_score_shift must be in \[0, 1\], got -0.1"),
    (["nightly.gates.min_auc=1.5"], r"nightly.gates.min_auc must be in \[0, 1\], got 1.5"),
    (["nightly.train_every=-1"], r"nightly.train_every must be >= 0 days .*, got -1"),
    (["features.ignore_attributes=[User_Id]"], r"^features.ignore_attributes lists User_Id: the users table's key "
                                               r"is no attribute, and the job cannot drop it$"),
    (["features.categorical_attributes=[user_id]"], r"^features.categorical_attributes lists user_id"),
    (["score.combined=maybe"], r"score.combined='maybe' must be true or false"),
    (["paths.raw="], r"paths.raw is required"),
    (["trainnum_proc"], r"--set expects key=value"),
    (["model.temperature=.nan"], r"^model.temperature=.nan must be a finite number$"),
    (["features.decay_half_life_days=.NaN"], r"^features.decay_half_life_days=.NaN must be a finite number$"),
    (["features.activity_buckets=[1, .nan, 4]"], r"^features.activity_buckets\[1\]=.nan must be a finite number$"),
    (["model.loss_weights={ctr: .nan}"], r"^model.loss_weights.ctr=.nan must be a finite number$"),
    # inf passes every one-sided range check (learning_rate > 0); a huge integer is no float at all
    (["train.learning_rate=.inf"], r"^train.learning_rate=.inf must be a finite number$"),
    (["model.temperature=-.inf"], r"^model.temperature=-.inf must be a finite number$"),
    ([f"train.learning_rate={'9' * 400}"], rf"^train.learning_rate={'9' * 400} must be a finite number$"),
    (["spark.extra.foo=[unclosed"], r"^--set spark.extra.foo: '\[unclosed' is not a YAML value: while parsing a flow "
                                    r"sequence"),
])
def test_bad_keys_and_values_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, MINIMAL), overrides)


def test_an_empty_list_setting_is_no_items(tmp_path):
    """`key:` left empty in YAML, or `--set key=`, used to be one empty-string item: a tag field named ''."""
    config = load_config(_write(tmp_path, MINIMAL + "features:\n  ignore_attributes:\n"),
                         ["model.tag_fields=", "score.exclude_tags="])
    assert (config.features.ignore_attributes, config.model.tag_fields, config.score.exclude_tags) == ((), (), ())


@pytest.mark.parametrize("text, message", [
    (MINIMAL + "train:\n  epochs: 3\nmodel:\n  name: mind\ntrain:\n  num_proc: 1\n",
     r"c.yaml: key 'train' is given twice in one mapping \(line 9\); write it once$"),
    (MINIMAL + "train:\n  epochs: 3\n  epochs: 4\n", r"key 'epochs' is given twice in one mapping \(line 7\)"),
    (b"paths:\n  raw: /r\xff\n", r"c.yaml cannot be read: 'utf-8' codec can't decode byte 0xff"),
])
def test_a_config_file_that_cannot_be_read_as_written_is_refused(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_yaml_merge_keys_may_override_what_they_merge():
    """A merged-in key overridden by the mapping itself is written once: no duplicate."""
    import yaml

    from core.config import _UniqueKeyLoader

    text = "base: &b {x: 1, y: 1}\nouter: {derived: &d {<<: *b, x: 2}}\nc: {<<: *d, y: 3}\n"
    loaded = yaml.load(text, Loader=_UniqueKeyLoader)
    assert {k: {i: v.value for i, v in loaded[k].items()} for k in ("base", "c")} == {
        "base": {"x": 1, "y": 1}, "c": {"x": 2, "y": 3}}


def test_required_paths(tmp_path):
    with pytest.raises(ConfigError, match="paths is required"):
        load_config(_write(tmp_path, "train:\n  epochs: 1\n"))
    with pytest.raises(ConfigError, match="missing required key.*paths.models"):
        load_config(_write(tmp_path, "paths:\n  raw: /r\n  warehouse: /w\n"))
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("override, message", [
    ("paths.raw=ftp://host/raw", r"unsupported scheme 'ftp'"),
    ("paths.models=/w/models", r"paths.warehouse \(/w\) and paths.models \(/w/models\) must not contain each other"),
    ("paths.raw=/data/../etc", r"must not contain '..'"),
    ("paths.warehouse=/data/wh[1]", r"paths.warehouse='/data/wh\[1\]' \(/data/wh\[1\]\) must not contain \[ \]: Spark "
                                    r"reads file paths as glob patterns"),
    ("paths.raw=s3://b/raw{a,b}", r"paths.raw='s3://b/raw\{a,b\}' \(s3://b/raw\{a,b\}\) must not contain \{ \}: Spark"),
    ("paths.warehouse=/r", r"paths.raw \(/r\) and paths.warehouse \(/r\)"),
])
def test_paths_are_validated(tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, MINIMAL), [override])


def test_a_relative_path_is_refused_when_the_folder_it_runs_in_has_glob_characters(tmp_path, monkeypatch):
    (tmp_path / "job[1]").mkdir()
    monkeypatch.chdir(tmp_path / "job[1]")
    with pytest.raises(ConfigError, match=rf"paths.raw='data/raw' \({tmp_path}/job\[1\]/data/raw\) must not contain "
                                          rf"\[ \]"):
        config_from_dict({"paths": {"raw": "data/raw", "warehouse": "/w", "models": "/m"}})


def test_local_paths_are_made_absolute_where_the_command_runs_and_store_uris_are_kept(tmp_path, monkeypatch):
    """Executors run in another working directory: a relative path must reach them absolute."""
    monkeypatch.chdir(tmp_path)
    paths = config_from_dict({"paths": {"raw": "s3a://bucket/raw/", "warehouse": "data//warehouse/",
                                        "models": f"file://{tmp_path}/models/./v1", "locks": "./locks"}}).paths
    assert paths == Paths(raw="s3a://bucket/raw/", warehouse=f"{tmp_path}/data/warehouse",
                          models=f"{tmp_path}/models/v1", locks=f"{tmp_path}/locks")
    assert (paths.staging_root, paths.petastorm_root) == (f"{tmp_path}/data/warehouse/_staging",
                                                          f"{tmp_path}/models/v1/_petastorm_cache")


@pytest.mark.parametrize("key, value", [("models", "s3://bucket/models"), ("models", "hdfs://nn/models"),
                                        ("petastorm_cache", "s3a://bucket/cache")])
def test_models_and_the_petastorm_cache_must_be_filesystem_paths(key, value):
    paths = {"raw": "s3://bucket/raw", "warehouse": "s3://bucket/wh", "models": "/m", key: value}
    with pytest.raises(ConfigError, match=rf"paths.{key}='{value}' must be a filesystem path \(a local folder, or "
                                          rf"a mount that the driver and every executor see"):
        config_from_dict({"paths": paths})


@pytest.mark.parametrize("paths, first, second", [
    ({"raw": "data/raw", "warehouse": "./data/raw"}, "raw", "warehouse"),
    ({"raw": "data/raw", "warehouse": "{cwd}/data/raw"}, "raw", "warehouse"),
    ({"raw": "/d/raw", "warehouse": "file:///d/raw"}, "raw", "warehouse"),
    ({"raw": "/d/raw", "warehouse": "/d//raw"}, "raw", "warehouse"),
    ({"raw": "data/raw/", "warehouse": "data/./raw"}, "raw", "warehouse"),
    ({"raw": "/d/raw", "models": "file:///d/raw/./models"}, "raw", "models"),
    ({"raw": "s3://b/raw", "warehouse": "s3a://b//raw/"}, "raw", "warehouse"),
])
def test_one_location_in_two_spellings_is_refused(tmp_path, monkeypatch, paths, first, second):
    monkeypatch.chdir(tmp_path)
    values = {"raw": "/r", "warehouse": "/w", "models": "/m"}
    values.update({k: v.format(cwd=tmp_path) for k, v in paths.items()})
    with pytest.raises(ConfigError, match=rf"paths.{first} \(.+\) and paths.{second} \(.+\) must not contain"
                       ) as error:
        config_from_dict({"paths": values})
    named = f"paths.{first} ({normalise_path(values[first])}) and paths.{second} ({normalise_path(values[second])})"
    assert str(error.value).startswith(named)
    assert "//" not in named.split("://")[-1] and "/./" not in named and "file:" not in named


@pytest.mark.parametrize("extra, first, second", [
    ({"staging": "/w"}, "warehouse", "staging"),
    ({"staging": "file:///w/"}, "warehouse", "staging"),
    ({"staging": "/r"}, "raw", "staging"),
    ({"staging": "/r/staging"}, "raw", "staging"),
    ({"staging": "/m"}, "models", "staging"),
    ({"staging": "/"}, "raw", "staging"),
    ({"staging": "/w/user_tag_profiles"}, "warehouse", "staging"),  # inside a table
    ({"locks": "/w/user_tag_profiles/_delta_log"}, "warehouse", "locks"),
    ({"locks": "/r"}, "raw", "locks"),
    ({"reports": "/w"}, "warehouse", "reports"),
    ({"reports": "/s/profiles", "staging": "/s"}, "staging", "reports"),
])
def test_staging_reports_and_locks_must_not_overlap_what_jobs_own(extra, first, second):
    with pytest.raises(ConfigError, match=rf"paths.{first} \(.+\) and paths.{second} \(.+\) must not contain"):
        config_from_dict({"paths": {"raw": "/r", "warehouse": "/w", "models": "/m", **extra}})


@pytest.mark.parametrize("extra", [
    {},
    {"staging": "/w/_staging", "reports": "/w/_reports", "locks": "/w/_locks"},
    {"staging": "/s", "reports": "/s/_reports", "locks": "/m/_locks"},
    {"staging": "s3://b/staging", "reports": "/reports", "locks": "/locks"},
    {"reports": "/shared", "locks": "/shared"},
    {"petastorm_cache": "/m/_petastorm_cache"},
    {"petastorm_cache": "/tmp/petastorm"},
    {"petastorm_cache": "/m"},  # vacuum sweeps only the folders Petastorm names
    {"petastorm_cache": "/"},  # a shared parent of every root
    {"petastorm_cache": "/w/_petastorm"},
])
def test_separate_folders_and_underscore_folders_are_accepted(extra):
    config = config_from_dict({"paths": {"raw": "/r", "warehouse": "/w", "models": "/m", **extra}})
    assert config.paths.staging_root == extra.get("staging", "/w/_staging")


@pytest.mark.parametrize("cache, name, root", [
    ("/r/cache", "raw", "/r"),  # a Parquet-folder raw table would read the copies as rows
    ("/w", "warehouse", "/w"),
    ("/w/user_tag_profiles/cache", "warehouse", "/w"),
    ("/w/_staging/cache", "staging", "/w/_staging"),
])
def test_the_petastorm_cache_must_not_lie_among_data(cache, name, root):
    with pytest.raises(ConfigError, match=rf"^paths.petastorm_cache \({cache}\) must not lie in paths.{name} "
                                          rf"\({root}\): Petastorm's copies would sit among its data"):
        config_from_dict({"paths": {"raw": "/r", "warehouse": "/w", "models": "/m", "petastorm_cache": cache}})


def test_normalised_paths():
    assert normalise_path("file:///d//raw/./x/") == "/d/raw/x"
    assert normalise_path("s3a://bucket//a/./b/") == "s3://bucket/a/b"
    assert normalise_path("abfss://c@acct.dfs.core.windows.net/x") == "abfs://c@acct.dfs.core.windows.net/x"
    assert normalise_path("gs://bucket") == normalise_path("gs://bucket/") == "gs://bucket"
    assert normalise_path("data/raw") == str(Path.cwd() / "data" / "raw")


def test_set_reaches_a_spark_option_whose_name_has_dots():
    config = load_config(CONF_DIR / "local.yaml", ["spark.extra.spark.sql.shuffle.partitions=8",
                                        "spark.extra.spark.executor.cores=2", "spark.master=local[1]"])
    assert config.spark.extra == {**load_config(CONF_DIR / "local.yaml").spark.extra,
                                  "spark.sql.shuffle.partitions": "8", "spark.executor.cores": "2"}
    assert config.spark.master == "local[1]"
    with pytest.raises(ConfigError, match="--set spark.master.x: master is not a section"):
        load_config(CONF_DIR / "local.yaml", ["spark.master.x=1"])


def test_string_settings_keep_the_text_they_were_written_as(tmp_path):
    """YAML reads 007, 1:30, no and 1.10 as numbers or booleans; a string setting must get the text."""
    overrides = ["score.model_version=0012", "score.exclude_tags=[007, 1:30, no, 1.10, '08']",
                 "spark.extra.spark.executor.cores=02", "score.top_n=7"]
    config = load_config(CONF_DIR / "local.yaml", overrides)
    assert config.score.model_version == "0012"
    assert config.score.exclude_tags == ("007", "1:30", "no", "1.10", "08")
    assert config.spark.extra["spark.executor.cores"] == "02"
    assert config.score.top_n == 7  # typed settings still get the typed value

    text = (CONF_DIR / "local.yaml").read_text() + "\n"
    written = tmp_path / "conf.yaml"
    written.write_text(text.replace("score:\n", "score:\n  exclude_tags: [007, off]\n  model_version: 1.50\n", 1))
    from_file = load_config(written)
    assert (from_file.score.exclude_tags, from_file.score.model_version) == (("007", "off"), "1.50")
    with pytest.raises(ConfigError, match=r"score.top_n='x' must be an integer"):
        load_config(CONF_DIR / "local.yaml", ["score.top_n=x"])
