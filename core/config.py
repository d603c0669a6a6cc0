"""Typed, frozen configuration: YAML in, validated dataclasses out, once, at the edge.

`load_config(path, overrides=["train.num_proc=2", ...])` is the only entry point.
Unknown keys and bad values raise `ConfigError` naming the key and the valid choices.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import posixpath
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml


class ConfigError(ValueError):
    """A configuration key or value is wrong; the message names it."""


GLOB_CHARACTERS = "*?[]{}\\"
STORAGE_SCHEMES = ("file", "s3", "s3a", "gs", "abfs", "abfss", "hdfs")


@dataclass(frozen=True)
class Paths:
    raw: str
    warehouse: str
    models: str
    staging: str = ""
    petastorm_cache: str = ""
    reports: str = ""
    locks: str = ""

    def validate(self) -> None:
        for name in ("raw", "warehouse", "models", "staging", "petastorm_cache", "reports", "locks"):
            value = getattr(self, name)
            if name in ("raw", "warehouse", "models") and not value.strip():
                raise ConfigError(f"paths.{name} is required and must not be empty")
            if any(ord(c) < 32 for c in value):
                raise ConfigError(f"paths.{name} contains a control character: {value!r}")
            scheme = value.split("://", 1)[0] if "://" in value else "file"
            if scheme not in STORAGE_SCHEMES:
                raise ConfigError(f"paths.{name}={value!r}: unsupported scheme {scheme!r}; "
                                  f"valid: {', '.join(STORAGE_SCHEMES)}")
            if ".." in value.replace("\\", "/").split("/"):
                raise ConfigError(f"paths.{name}={value!r} must not contain '..'")
            resolved = normalise_path(value) if value else value  # a relative path: the folder it runs in too
            if globbed := sorted(set(resolved) & set(GLOB_CHARACTERS)):
                raise ConfigError(f"paths.{name}={value!r} ({resolved}) must not contain {' '.join(globbed)}: Spark "
                                  f"reads file paths as glob patterns, so such a folder's files would not be found")
        for name in ("models", "petastorm_cache"):
            value = getattr(self, name)
            if "://" in value and not value.startswith("file://"):
                raise ConfigError(f"paths.{name}={value!r} must be a filesystem path (a local folder, or a mount "
                                  f"that the driver and every executor see at that path): training writes its "
                                  f"checkpoints, model folders and Petastorm copies as files, and scoring loads "
                                  f"models from there")
        self._check_overlaps()

    def resolved(self) -> "Paths":
        """The same roots with every local path absolute and `file://` dropped (`normalise_path`):
        relative paths mean the directory the command was run from, also in the executors, whose
        working directory is another one. Store URIs stay as they are."""
        return dataclasses.replace(self, **{
            f.name: normalise_path(value) for f in dataclasses.fields(self)
            if (value := getattr(self, f.name)) and ("://" not in value or value.startswith("file://"))})

    def _check_overlaps(self) -> None:
        """Refuse roots that share files: jobs overwrite, replace and vacuum what they own.

        raw, warehouse, models and staging must not contain one another, except staging in a folder
        whose name starts with `_` directly under warehouse (the default `warehouse/_staging`): no
        table lives there. reports and locks must not contain any of them nor sit inside one, except
        in such a `_` folder of warehouse, staging or models (the defaults `warehouse/_reports`,
        `warehouse/_locks`). petastorm_cache must not sit inside raw (a Parquet-folder table would
        read the copies as rows), nor inside warehouse or staging except in such a `_` folder; it
        may contain anything, or sit in models: vacuum sweeps only the folders Petastorm names.
        Paths are compared normalised (`normalise_path`).
        """
        data = {"raw": self.raw, "warehouse": self.warehouse, "models": self.models,
                "staging": self.staging_root}
        side = {"reports": self.reports_root, "locks": self.locks_root}
        roots = {name: normalise_path(value) for name, value in {**data, **side}.items()}
        pairs = [(a, b) for i, a in enumerate(data) for b in list(data)[i + 1:]]
        pairs += [(a, b) for a in data for b in side]
        allowed = {("staging", "warehouse")} | {(s, d) for s in side for d in ("warehouse", "staging", "models")}
        for a, b in pairs:
            for inner, outer in ((a, b), (b, a)):
                if not _inside(roots[inner], roots[outer]):
                    continue
                if (inner, outer) in allowed and _under_underscore(roots[inner], roots[outer]):
                    continue
                raise ConfigError(f"paths.{a} ({roots[a]}) and paths.{b} ({roots[b]}) must not contain each "
                                  f"other: jobs overwrite and vacuum what they own")
        cache = normalise_path(self.petastorm_root)
        for name in ("raw", "warehouse", "staging"):
            if _inside(cache, roots[name]) and not (name != "raw" and _under_underscore(cache, roots[name])):
                raise ConfigError(f"paths.petastorm_cache ({cache}) must not lie in paths.{name} ({roots[name]}): "
                                  f"Petastorm's copies would sit among its data (a folder whose name starts with _ "
                                  f"directly under warehouse or staging is fine)")

    @property
    def staging_root(self) -> str:
        return self.staging or f"{self.warehouse.rstrip('/')}/_staging"

    @property
    def reports_root(self) -> str:
        return self.reports or f"{self.warehouse.rstrip('/')}/_reports"

    @property
    def locks_root(self) -> str:
        return self.locks or f"{self.warehouse.rstrip('/')}/_locks"

    @property
    def petastorm_root(self) -> str:
        return self.petastorm_cache or f"{self.models.rstrip('/')}/_petastorm_cache"


def normalise_path(value: str) -> str:
    """One spelling per location: `file://` dropped, local paths absolute, `.`, `//` and trailing `/` removed.

    Remote URIs keep their scheme (`s3a` written as `s3`, `abfss` as `abfs`: the same stores) and
    host, with the path part normalised the same way.
    """
    scheme, sep, rest = value.partition("://")
    if not sep or scheme == "file":
        return _clean(os.path.abspath(rest if sep else value))
    host, _, path = rest.partition("/")
    scheme = {"s3a": "s3", "abfss": "abfs"}.get(scheme, scheme)
    return f"{scheme}://{host}{_clean('/' + path).rstrip('/')}"


def _clean(path: str) -> str:
    return posixpath.normpath(re.sub(r"/+", "/", path))


def _inside(path: str, root: str) -> bool:
    """Whether `path` is `root` or below it (both normalised)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _under_underscore(path: str, root: str) -> bool:
    """Whether `path` lies under a folder directly inside `root` whose name starts with `_`."""
    return path != root and path[len(root.rstrip("/")) + 1:].startswith("_")


_MEMORY = re.compile(r"^[0-9]+[kmgt]?$", re.IGNORECASE)  # the driver's is passed to the JVM as -Xmx<size>


@dataclass(frozen=True)
class SparkConf:
    master: str = "local[*]"
    app_name: str = "mvke-profiles"
    shuffle_partitions: int = 4
    # "" leaves them to Spark: its site configuration (spark-defaults.conf), else its defaults
    driver_memory: str = ""
    executor_memory: str = ""
    arrow_batch_size: int = 8192
    extra: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """What Spark itself would refuse only once the session starts, with a JVM traceback."""
        if not self.master.strip():
            raise ConfigError("spark.master must not be empty (e.g. local[*], yarn, spark://host:7077)")
        if self.shuffle_partitions < 1:
            raise ConfigError(f"spark.shuffle_partitions must be >= 1, got {self.shuffle_partitions}")
        if self.arrow_batch_size < 1:
            raise ConfigError(f"spark.arrow_batch_size must be >= 1, got {self.arrow_batch_size}")
        for name in ("driver_memory", "executor_memory"):
            value = getattr(self, name)
            if value and not _MEMORY.match(value):
                raise ConfigError(f"spark.{name}={value!r} must be a JVM memory size such as 4g or 512m "
                                  f"(empty leaves it to Spark)")


MAX_WINDOW_DAYS = 3650  # ten years: a longer window is a typo, and one of 900,000 days leaves the calendar

# The last day a generated day may be: the bad rows' future timestamps (3,650 days on) must stay
# inside Spark's range, which ends with year 9999.
LAST_GENERATED_DAY = dt.date(9989, 12, 31)


@dataclass(frozen=True)
class GenerateConf:
    """Sizes and knobs of the synthetic behaviour logs (see docs/synthetic.md)."""

    seed: int = 7
    users: int = 2000
    items: int = 300
    tags: int = 60
    categories: int = 8
    facets: int = 6
    days: int = 10
    start_date: dt.date = dt.date(2026, 11, 1)
    impressions_per_user_day: float = 3.0
    active_share: float = 0.6
    zipf_exponent: float = 1.1
    interest_sharpness: float = 4.0
    noise: float = 0.05
    partitions: int = 4
    interest_concentration: float = 0.3
    targeting_share: float = 0.5
    base_ctr: float = 0.02
    base_cvr: float = 0.06
    bad_row_share: float = 0.0
    block_users: int = 1000

    def validate(self) -> None:
        if self.seed < 0:  # numpy's SeedSequence takes non-negative integers only
            raise ConfigError(f"generate.seed must be >= 0, got {self.seed}")
        for name in ("users", "items", "tags", "categories", "facets", "days", "partitions", "block_users"):
            if getattr(self, name) < 1:
                raise ConfigError(f"generate.{name} must be >= 1, got {getattr(self, name)}")
        if self.tags < self.facets:
            raise ConfigError(f"generate.tags ({self.tags}) must be >= generate.facets ({self.facets})")
        if self.items < self.tags:
            raise ConfigError(f"generate.items ({self.items}) must be >= generate.tags ({self.tags})")
        if not 0 < self.active_share <= 1:
            raise ConfigError(f"generate.active_share must be in (0, 1], got {self.active_share}")
        if not 0 <= self.noise < 1:
            raise ConfigError(f"generate.noise must be in [0, 1), got {self.noise}")
        for name in ("impressions_per_user_day", "interest_concentration"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"generate.{name} must be > 0, got {getattr(self, name)}")
        for name in ("zipf_exponent", "interest_sharpness"):
            if getattr(self, name) < 0:
                raise ConfigError(f"generate.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("base_ctr", "base_cvr"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"generate.{name} must be in (0, 1), got {getattr(self, name)}")
        if not 0 <= self.targeting_share <= 1:
            raise ConfigError(f"generate.targeting_share must be in [0, 1], got {self.targeting_share}")
        if not 0 <= self.bad_row_share < 1:
            raise ConfigError(f"generate.bad_row_share must be in [0, 1), got {self.bad_row_share}")
        if type(self.start_date) is not dt.date:
            raise ConfigError(f"generate.start_date must be a date, got {self.start_date!r}")
        span = dt.timedelta(days=self.days - 1)  # from the first generated day to the last
        if span > LAST_GENERATED_DAY - dt.date.min or self.start_date > LAST_GENERATED_DAY - span:
            raise ConfigError(f"the generated days must end by {LAST_GENERATED_DAY}, got generate.start_date="
                              f"{self.start_date} and generate.days={self.days} (bad rows are dated up to 10 "
                              f"years later, and Spark's dates end with year 9999)")

    @property
    def end_date(self) -> dt.date:
        """The first day after the generated range [start_date, end_date)."""
        return self.start_date + dt.timedelta(days=self.days)


NegativeSampling = Literal["none", "uniform", "log_uniform"]
BehaviourField = Literal[
    "clicked_tags", "converted_tags", "clicked_categories",
    "impressions", "clicks", "conversions", "active_days", "click_rate",
]
BEHAVIOUR_FIELDS: tuple[BehaviourField, ...] = typing.get_args(BehaviourField)


@dataclass(frozen=True)
class FeaturesConf:
    """The feature job (docs/features.md): window, encodings, field list, bad-row gate, sampling.

    Attributes of the users table not named in categorical_attributes / numeric_attributes
    are discovered (strings and booleans categorical, numbers numeric) unless listed in
    ignore_attributes. Numeric attributes use numeric_buckets unless attribute_buckets
    gives their own edges. behaviour_fields picks the event-derived fields, in any order.
    """

    window_days: int = 30
    decay_half_life_days: float = 7.0
    max_multi_len: int = 16
    activity_buckets: tuple[float, ...] = (1, 2, 4, 8, 16, 32, 64, 128, 256)
    rate_buckets: tuple[float, ...] = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
    numeric_buckets: tuple[float, ...] = (0, 1, 2, 5, 10, 20, 50, 100, 1000)
    attribute_buckets: dict[str, tuple[float, ...]] = field(default_factory=dict)
    categorical_attributes: tuple[str, ...] = ()
    numeric_attributes: tuple[str, ...] = ()
    ignore_attributes: tuple[str, ...] = ()
    behaviour_fields: tuple[BehaviourField, ...] = BEHAVIOUR_FIELDS
    max_bad_fraction: float = 0.05
    max_id_length: int = 256
    negatives: NegativeSampling = "none"
    negatives_per_user_day: int = 0
    seed: int = 11

    def validate(self) -> None:
        if not 1 <= self.window_days <= MAX_WINDOW_DAYS:
            raise ConfigError(f"features.window_days must be in 1..{MAX_WINDOW_DAYS}, got {self.window_days}")
        if self.decay_half_life_days <= 0:
            raise ConfigError(f"features.decay_half_life_days must be > 0, got {self.decay_half_life_days}")
        if self.max_multi_len < 1:
            raise ConfigError(f"features.max_multi_len must be >= 1, got {self.max_multi_len}")
        if not 0 <= self.max_bad_fraction <= 1:
            raise ConfigError(f"features.max_bad_fraction must be in [0, 1], got {self.max_bad_fraction}")
        if self.max_id_length < 1:
            raise ConfigError(f"features.max_id_length must be >= 1, got {self.max_id_length}")
        edge_lists = {name: getattr(self, name) for name in ("activity_buckets", "rate_buckets", "numeric_buckets")}
        edge_lists.update({f"attribute_buckets.{k}": v for k, v in self.attribute_buckets.items()})
        for name, edges in edge_lists.items():
            if not edges or list(edges) != sorted(set(edges)):
                raise ConfigError(f"features.{name} must be non-empty and strictly increasing, got {list(edges)}")
        named = {"categorical_attributes": self.categorical_attributes,
                 "numeric_attributes": self.numeric_attributes, "ignore_attributes": self.ignore_attributes}
        seen: dict[str, str] = {}
        for key, names in named.items():
            for name in names:
                if name.lower() == "user_id":
                    raise ConfigError(f"features.{key} lists {name}: the users table's key is no attribute, and "
                                      f"the job cannot drop it")
                if name in seen:
                    raise ConfigError(f"features: attribute {name!r} is in both {seen[name]} and {key}")
                seen[name] = key
        stray = sorted(set(self.attribute_buckets) & (set(self.categorical_attributes) | set(self.ignore_attributes)))
        if stray:
            raise ConfigError(f"features.attribute_buckets names non-numeric attributes {stray}")
        if len(set(self.behaviour_fields)) != len(self.behaviour_fields):
            raise ConfigError(f"features.behaviour_fields has duplicates: {list(self.behaviour_fields)}")
        if self.negatives_per_user_day < 0:
            raise ConfigError(f"features.negatives_per_user_day must be >= 0, got {self.negatives_per_user_day}")
        if self.negatives != "none" and self.negatives_per_user_day < 1:
            raise ConfigError("features.negatives_per_user_day must be >= 1 when features.negatives is set")


ModelName = Literal["mvke", "two_tower", "hard_sharing", "mmoe", "mind"]
OutputKind = Literal["dot", "cosine"]
CvrMode = Literal["clicked", "esmm"]


@dataclass(frozen=True)
class ModelConf:
    name: ModelName = "mvke"
    embedding_dim: int = 16
    hidden_dim: int = 32
    num_experts: int = 5
    objectives: tuple[str, ...] = ("ctr", "cvr")
    expert_sets: dict[str, tuple[int, ...]] = field(
        default_factory=lambda: {"ctr": (0, 1, 2), "cvr": (1, 2, 3, 4)}
    )
    output: OutputKind = "dot"
    temperature: float = 0.1
    projected_gate: bool = False
    hard_gate: bool = False
    cvr_mode: CvrMode = "clicked"
    loss_weights: dict[str, float] = field(default_factory=lambda: {"ctr": 1.0, "cvr": 1.0})
    diversity_weight: float = 0.0
    two_tower_objective: str = "ctr"
    mind_interests: int = 4
    mind_routing_iters: int = 3
    mind_power: float = 1.0
    sequence_field: str = "clicked_tags"
    tag_fields: tuple[str, ...] = ()  # user fields of tag ids embedded with the tag tower's id table
    kernel_history: bool = False  # mvke: each kernel pools sequence_field's values by attention
    seed: int = 0

    def validate(self) -> None:
        if self.embedding_dim < 1 or self.hidden_dim < 1 or self.num_experts < 1:
            raise ConfigError("model.embedding_dim, model.hidden_dim and model.num_experts must be >= 1")
        if set(self.expert_sets) != set(self.objectives):
            raise ConfigError(
                f"model.expert_sets keys {sorted(self.expert_sets)} must equal model.objectives {list(self.objectives)}"
            )
        if len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(f"model.objectives must not repeat an objective, got {list(self.objectives)}")
        for objective, experts in self.expert_sets.items():
            bad = [k for k in experts if not 0 <= k < self.num_experts]
            if bad or not experts or len(set(experts)) != len(experts):  # a repeat would count twice in the gate
                raise ConfigError(
                    f"model.expert_sets.{objective} = {list(experts)}: experts must be a non-empty subset of "
                    f"0..{self.num_experts - 1}, each expert once"
                )
        if set(self.loss_weights) - set(self.objectives):
            raise ConfigError(f"model.loss_weights keys must be among {list(self.objectives)}")
        if self.two_tower_objective not in self.objectives:
            raise ConfigError(
                f"model.two_tower_objective={self.two_tower_objective!r}; valid: {list(self.objectives)}"
            )
        if self.temperature <= 0:
            raise ConfigError(f"model.temperature must be > 0, got {self.temperature}")
        if self.mind_interests < 1 or self.mind_routing_iters < 1:
            raise ConfigError("model.mind_interests and model.mind_routing_iters must be >= 1")
        if self.mind_power < 0:
            raise ConfigError(f"model.mind_power must be >= 0, got {self.mind_power}")
        if self.diversity_weight < 0:
            raise ConfigError(f"model.diversity_weight must be >= 0, got {self.diversity_weight}")
        negative = {k: w for k, w in self.loss_weights.items() if w < 0}
        if negative:
            raise ConfigError(f"model.loss_weights must be >= 0, got {negative}")
        if not self.sequence_field.strip():
            raise ConfigError("model.sequence_field must name a multi-valued feature field")
        if len(set(self.tag_fields)) != len(self.tag_fields):
            raise ConfigError(f"model.tag_fields has duplicates: {list(self.tag_fields)}")


ValidationSplit = Literal["last_day", "user_split"]
GaucWeighting = Literal["impressions", "uniform"]


@dataclass(frozen=True)
class PublishRules:
    """When a trained candidate becomes `published` (else `rejected`), judged on validation AUC.

    Every objective needs AUC >= its floor (`min_auc_by_objective[o]`, else `min_auc`) and
    AUC >= (its AUC in the last published model trained for the same day or earlier) - `max_auc_drop`.
    """

    min_auc: float = 0.55
    min_auc_by_objective: dict[str, float] = field(default_factory=dict)
    max_auc_drop: float = 0.02

    def floor(self, objective: str) -> float:
        return self.min_auc_by_objective.get(objective, self.min_auc)

    def validate(self) -> None:
        floors = {"train.publish_if.min_auc": self.min_auc,
                  **{f"train.publish_if.min_auc_by_objective.{o}": v for o, v in self.min_auc_by_objective.items()}}
        for key, value in floors.items():
            if not 0 <= value <= 1:
                raise ConfigError(f"{key} must be in [0, 1], got {value}")
        if not 0 <= self.max_auc_drop <= 1:
            raise ConfigError(f"train.publish_if.max_auc_drop must be in [0, 1], got {self.max_auc_drop}")


@dataclass(frozen=True)
class TrainConf:
    num_proc: int = 2
    window_days: int = 7
    epochs: int = 3
    batch_size: int = 512
    learning_rate: float = 0.01
    validation: ValidationSplit = "last_day"
    validation_user_share: float = 0.1
    build_missing: bool = True
    publish_if: PublishRules = field(default_factory=PublishRules)
    gauc_weighting: GaucWeighting = "impressions"
    shuffle_buffer: int = 0
    reader_workers: int = 1
    log_every: int = 20
    resume: bool = True
    seed: int = 0
    nics: tuple[str, ...] = ()
    torch_threads: int = 0

    def validate(self) -> None:
        if self.num_proc < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("train.num_proc, train.epochs and train.batch_size must be >= 1")
        if not 1 <= self.window_days <= MAX_WINDOW_DAYS:
            raise ConfigError(f"train.window_days must be in 1..{MAX_WINDOW_DAYS}, got {self.window_days}")
        if self.window_days < 2 and self.validation == "last_day":
            raise ConfigError("train.window_days must be >= 2 with train.validation=last_day")
        if not self.learning_rate > 0:
            raise ConfigError(f"train.learning_rate must be > 0, got {self.learning_rate}")
        if not 0 < self.validation_user_share < 1:
            raise ConfigError(f"train.validation_user_share must be in (0, 1), got {self.validation_user_share}")
        if self.shuffle_buffer < 0:
            raise ConfigError(f"train.shuffle_buffer must be >= 0, got {self.shuffle_buffer}")
        if self.reader_workers < 1 or self.log_every < 1:
            raise ConfigError("train.reader_workers and train.log_every must be >= 1")
        if self.torch_threads < 0:
            raise ConfigError(f"train.torch_threads must be >= 0 (0: the host's cores / its ranks), "
                              f"got {self.torch_threads}")
        if any(not n.strip() for n in self.nics):
            raise ConfigError(f"train.nics must name network interfaces, got {list(self.nics)}")
        self.publish_if.validate()


@dataclass(frozen=True)
class ScoreConf:
    """The scoring job (docs/scoring.md): top-N tags per user and objective from one exact scan.

    top_n / top_n_per_objective: tags kept per user and objective (the combined objective
    `ctr_x_cvr` included); min_score: a probability, lower scores are dropped; exclude_tags:
    tag ids that never appear; combined: also rank by p_ctr * p_cvr when the model has both;
    block_size: users per block taken from the Arrow batches on the executors (docs/scoring.md).
    """

    top_n: int = 10
    top_n_per_objective: dict[str, int] = field(default_factory=dict)
    model_version: str = "latest"
    min_score: float = 0.0
    exclude_tags: tuple[str, ...] = ()
    combined: bool = True
    write_user_vectors: bool = False
    block_size: int = 4096

    def validate(self) -> None:
        if self.top_n < 1 or any(n < 1 for n in self.top_n_per_objective.values()):
            raise ConfigError("score.top_n and score.top_n_per_objective values must be >= 1")
        if any(not name.strip() for name in self.top_n_per_objective):
            raise ConfigError("score.top_n_per_objective keys must name objectives, got an empty key")
        if self.block_size < 1:
            raise ConfigError(f"score.block_size must be >= 1, got {self.block_size}")
        if not 0 <= self.min_score <= 1:
            raise ConfigError(f"score.min_score is a probability and must be in [0, 1], got {self.min_score}")
        if not self.model_version.strip():
            raise ConfigError("score.model_version must be 'latest' or a registered version, got an empty string")
        if any(not tag.strip() for tag in self.exclude_tags):
            raise ConfigError("score.exclude_tags must hold tag ids, got an empty one")


@dataclass(frozen=True)
class Gates:
    min_profile_share: float = 0.95
    min_tag_coverage: float = 0.3
    max_score_shift: float = 0.2
    min_stability: float = 0.3
    min_auc: float = 0.55

    def validate(self) -> None:
        # each measure is a share, a Jaccard mean, an AUC or a move of a probability: a bound outside
        # [0, 1] fails (or passes) every night whatever the profiles; 0 (max_score_shift: 1) turns a gate off
        for name in ("min_profile_share", "min_tag_coverage", "min_stability", "min_auc", "max_score_shift"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ConfigError(f"nightly.gates.{name} must be in [0, 1], got {value}")


@dataclass(frozen=True)
class NightlyConf:
    train_every: int = 1
    gates: Gates = field(default_factory=Gates)

    def validate(self) -> None:
        if self.train_every < 0:
            raise ConfigError(f"nightly.train_every must be >= 0 days (1: every night; 0: a rerun of a night "
                              f"trains again too), got {self.train_every}")
        self.gates.validate()


@dataclass(frozen=True)
class Config:
    paths: Paths
    spark: SparkConf = field(default_factory=SparkConf)
    generate: GenerateConf = field(default_factory=GenerateConf)
    features: FeaturesConf = field(default_factory=FeaturesConf)
    model: ModelConf = field(default_factory=ModelConf)
    train: TrainConf = field(default_factory=TrainConf)
    score: ScoreConf = field(default_factory=ScoreConf)
    nightly: NightlyConf = field(default_factory=NightlyConf)

    def validate(self) -> None:
        for section in dataclasses.fields(self):
            check = getattr(getattr(self, section.name), "validate", None)
            if check is not None:
                check()

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML file, apply `key.sub=value` overrides, and return a validated Config."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader) or {}
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping, got {type(raw).__name__}")
    for item in overrides:
        _apply_override(raw, item)
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> Config:
    if "paths" not in raw:
        raise ConfigError("paths is required (with paths.raw, paths.warehouse, paths.models)")
    config = _build(Config, raw, "")
    config.validate()
    return dataclasses.replace(config, paths=config.paths.resolved())


def replace(config: Config, **sections: Any) -> Config:
    """A copy of `config` with whole sections or `section__key` values replaced, re-validated."""
    raw = config.to_dict()
    for key, value in sections.items():
        section, _, name = key.partition("__")
        if name:
            raw[section][name] = value
        else:
            raw[section] = value
    return config_from_dict(raw)


def _apply_override(raw: dict[str, Any], item: str) -> None:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    node = raw
    parts = _override_path(key.split("."))
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
    try:
        node[parts[-1]] = yaml.load(value, Loader=_TextKeepingLoader) if value != "" else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: {value!r} is not a YAML value: {' '.join(str(exc).split())}") from None


@dataclass(frozen=True)
class _Typed:
    """An unquoted YAML scalar that YAML read as a number, boolean, null or date, with the text it
    was written as: a string setting gets that text ("007", "1:30", "no"), not str() of the value."""

    text: str
    value: Any


class _TextKeepingLoader(yaml.SafeLoader):
    """yaml.SafeLoader whose typed plain scalars come back as `_Typed`."""


def _keeping_text(construct: Callable[[yaml.SafeLoader, yaml.Node], Any]) -> Callable[..., _Typed]:
    def typed(loader: yaml.SafeLoader, node: yaml.Node) -> _Typed:
        try:
            return _Typed(node.value, construct(loader, node))
        except ValueError:  # looks like a date but is none (2026-02-30): the setting's own check names it
            return _Typed(node.value, node.value)
    return typed


class _UniqueKeyLoader(_TextKeepingLoader):
    """A config file's loader: a key written twice in one mapping is an error, not the last one winning
    (a second `train:` section would silently drop every setting of the first). Checked as each
    mapping is read, before merge keys (`<<: *anchor`) copy keys in, which may then be overridden."""

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: set[str] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            if key_node.value in seen:
                raise ConfigError(f"key {key_node.value!r} is given twice in one mapping "
                                  f"(line {key_node.start_mark.line + 1}); write it once")
            seen.add(key_node.value)
        return node


for _tag, _construct in (("int", yaml.SafeLoader.construct_yaml_int), ("float", yaml.SafeLoader.construct_yaml_float),
                         ("bool", yaml.SafeLoader.construct_yaml_bool), ("null", yaml.SafeLoader.construct_yaml_null),
                         ("timestamp", yaml.SafeLoader.construct_yaml_timestamp)):
    _TextKeepingLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _keeping_text(_construct))


_DECIMAL = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")


def _value(raw: Any) -> Any:
    return raw.value if isinstance(raw, _Typed) else raw


def _text(raw: Any) -> str:
    return raw.text if isinstance(raw, _Typed) else str(raw)


def _override_path(parts: list[str]) -> list[str]:
    """The sections and key a --set names: below a mapping setting (`spark.extra`) the rest of the
    key is one entry, dots included (`spark.extra.spark.sql.shuffle.partitions`)."""
    cls: Any = Config
    for i, part in enumerate(parts[:-1]):
        hint = typing.get_type_hints(cls).get(part) if dataclasses.is_dataclass(cls) else None
        if typing.get_origin(hint) is dict:
            return parts[:i + 1] + [".".join(parts[i + 1:])]
        cls = hint
    return parts


def _build(cls: type, raw: Any, prefix: str) -> Any:
    raw = _value(raw)
    if isinstance(raw, dict):
        raw = {_text(k): v for k, v in raw.items()}
    if not isinstance(raw, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(
            f"unknown key {prefix}{unknown[0]} in {where}; valid keys: {', '.join(sorted(known))}"
        )
    values = {}
    for name, value in raw.items():
        values[name] = _convert(hints[name], value, f"{prefix}{name}")
    try:
        return cls(**values)
    except TypeError as exc:
        missing = [n for n, f in known.items() if n not in raw and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING]
        raise ConfigError(f"missing required key(s): {', '.join(prefix + m for m in missing)}") from exc


def _convert(hint: Any, raw: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    value = _value(raw)
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}={value!r} must be a string")
        return "" if value is None else _text(raw)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key + ".")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}={value!r} is not valid; valid values: {', '.join(map(str, args))}")
        return value
    if origin in (types.UnionType, typing.Union):
        raise ConfigError(f"{key}: union types are not supported in config")
    if origin is tuple:
        if value is None or value == "":  # `key:` left empty in YAML, or `--set key=`: no items
            return ()
        items = value if isinstance(value, (list, tuple)) else [raw]
        return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(items))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key} must be a mapping, got {value!r}")
        return {_text(k): _convert(args[1], v, f"{key}.{_text(k)}") for k, v in value.items()}
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}={value!r} must be true or false")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}={value!r} must be an integer")
        if isinstance(raw, _Typed) and not _DECIMAL.match(raw.text):  # YAML 1.1 reads 010 as octal 8
            raise ConfigError(f"{key}={raw.text} must be a decimal integer without leading zeros, 0x, 0o or _ "
                              f"(YAML reads it as {value})")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}={value!r} must be a number")
        if isinstance(value, int) and isinstance(raw, _Typed) and not _DECIMAL.match(raw.text):
            raise ConfigError(f"{key}={raw.text} must be a decimal number without leading zeros, 0x, 0o or _ "
                              f"(YAML reads it as {value})")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):  # NaN passes every range check, and inf every one-sided one
            raise ConfigError(f"{key}={_text(raw)} must be a finite number")
        return number
    if hint is dt.date:
        if isinstance(value, dt.datetime):  # a datetime is a date to isinstance
            raise ConfigError(f"{key}={_text(raw)!r} must be a date YYYY-MM-DD, not a date and time")
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value))
        except ValueError:
            raise ConfigError(f"{key}={value!r} must be a date YYYY-MM-DD") from None
    raise ConfigError(f"{key}: unsupported config type {hint!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    return value
