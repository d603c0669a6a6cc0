"""Names and locations of every table the project reads or writes."""
from __future__ import annotations

from enum import Enum

from core.config import Paths


class Raw(str, Enum):
    EVENTS = "events"
    ITEMS = "items"
    TAGS = "tags"
    USERS = "users"
    GROUND_TRUTH = "ground_truth"


class Warehouse(str, Enum):
    VOCABULARY = "vocabulary"
    FIELDS = "fields"
    USER_FEATURES = "user_features"
    TAGS = "tags"
    SAMPLES = "samples"
    QUARANTINE = "quarantine"
    TRAIN_METRICS = "train_metrics"
    MODELS = "models"
    TAG_INDEX = "tag_index"
    USER_VECTORS = "user_vectors"
    USER_TAG_PROFILES = "user_tag_profiles"
    PROFILES_LATEST = "profiles_latest"
    RUNS = "runs"


def raw_uri(paths: Paths, table: Raw) -> str:
    return f"{paths.raw.rstrip('/')}/{table.value}"


def warehouse_uri(paths: Paths, table: Warehouse) -> str:
    return f"{paths.warehouse.rstrip('/')}/{table.value}"


def staging_uri(paths: Paths, table: Warehouse) -> str:
    return f"{paths.staging_root.rstrip('/')}/{table.value}"
