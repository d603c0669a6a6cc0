"""What scoring reads, checked against the model before anything is written.

- `fields` (the feature job's field list): every field the model was trained on must be there,
  with the same kind; a vocabulary may only have grown (new ids map to 1, unknown); a bucketized
  field must have exactly the model's buckets.
- `user_features` for dt = D: it must exist, hold rows, and carry each model field with the
  column types of docs/tables.md.
- `tags` for dt = D: unique tag ids and tag indexes >= 2. Tags whose index is beyond the model's
  tag vocabulary (created after training) are left out of the scan and counted: the model has no
  embedding for them, and the shared "unknown" embedding would give all of them the same score.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core import delta
from core.config import Paths
from core.tables import Warehouse, warehouse_uri
from mvke.fields import FIRST_REAL_ID, FieldSpec, weights_key

INTEGER_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType)
FLOAT_TYPES = (T.FloatType, T.DoubleType)


class ScoringInputError(ValueError):
    """Inputs that do not fit the model or are missing; raised before anything is written."""


@dataclass(frozen=True)
class TagSet:
    """Tonight's tags split by whether the model knows them; `seen` ordered by tag_index."""

    seen: pa.Table  # tag_id string, tag_index int32, category_id int32
    unseen: pa.Table


def read_fields(paths: Paths) -> tuple[list[FieldSpec], dict[str, str], dict[str, str]]:
    """The feature job's fields (`features.schema.read_fields`), each one's encoding (vocab, bucket)
    and definition (`features.schema.FieldDef.definition`; none in a table written before them)."""
    from features.schema import read_field_definitions
    from features.schema import read_fields as read_field_specs

    uri = warehouse_uri(paths, Warehouse.FIELDS)
    if not delta.table_exists(uri):
        raise ScoringInputError(f"no fields table at {uri}: run the features job first")
    version = delta.table_version(uri)  # one version for all three: a feature job may commit meanwhile
    encodings = {r["name"]: r["encoding"]
                 for r in delta.read_arrow(uri, version, columns=["name", "encoding"]).to_pylist()}
    return read_field_specs(uri, version), encodings, read_field_definitions(uri, version)


def check_fields(model_fields: Sequence[FieldSpec], table_fields: Sequence[FieldSpec],
                 encodings: Mapping[str, str], definitions: Mapping[str, str] | None = None,
                 trained_definitions: Mapping[str, str] | None = None) -> None:
    """The feature job's fields can feed the model; raises ScoringInputError naming every mismatch.

    `definitions` (the fields table's) and `trained_definitions` (the model's training.json) say
    what each field's ids mean; a field known to both must mean the same: bucket edges changed to
    as many others, or an attribute now numbered by a vocabulary, keep the sizes and change the meaning."""
    by_name = {f.name: f for f in table_fields}
    problems = []
    for spec in model_fields:
        found = by_name.get(spec.name)
        if found is None:
            problems.append(f"field {spec.name} ({spec.kind}) is missing from the fields table")
            continue
        if found.kind != spec.kind:
            problems.append(f"field {spec.name} is {found.kind} in the fields table, {spec.kind} in the model")
        now, then = (definitions or {}).get(spec.name), (trained_definitions or {}).get(spec.name)
        if now is not None and then is not None and now != then:
            problems.append(f"field {spec.name}: its ids are {now} now, {then} when the model was trained")
        elif encodings.get(spec.name) == "bucket" and found.vocab_size != spec.vocab_size:
            problems.append(f"field {spec.name}: bucketized into {found.vocab_size} ids now, {spec.vocab_size} when "
                            f"the model was trained (the bucket edges changed)")
        elif found.vocab_size < spec.vocab_size:
            problems.append(f"field {spec.name}: vocabulary of {found.vocab_size} ids is smaller than the model's "
                            f"{spec.vocab_size} (vocabularies only grow: this is not the one the model saw)")
    if problems:
        available = ", ".join(sorted(by_name)) or "none"
        raise ScoringInputError("the feature encodings do not match the model: " + "; ".join(problems)
                                + f" (fields table holds: {available})")


def read_user_features(spark: SparkSession, paths: Paths, date: dt.date) -> DataFrame:
    """user_features rows of dt = `date`; ScoringInputError if that partition does not exist."""
    uri = warehouse_uri(paths, Warehouse.USER_FEATURES)
    dates = delta.partition_values(uri)
    if date.isoformat() not in dates:
        latest = ", ".join(dates[-3:]) or "none"
        raise ScoringInputError(f"no user_features for dt={date.isoformat()} in {uri} (latest dates: {latest})")
    return delta.read_table(spark, uri).where(F.col("dt") == F.lit(date))


def check_feature_columns(schema: T.StructType, model_fields: Sequence[FieldSpec]) -> None:
    """user_features has user_id and, per model field, the column types docs/tables.md gives."""
    types = {f.name: f.dataType for f in schema.fields}
    problems = [] if isinstance(types.get("user_id"), T.StringType) else ["user_id string is missing"]
    for spec in model_fields:
        found = types.get(spec.name)
        if spec.kind == "single" and not isinstance(found, INTEGER_TYPES):
            problems.append(f"{spec.name} must be an int column (single field), found {_type_name(found)}")
        if spec.kind == "multi":
            weights = types.get(weights_key(spec.name))
            if not (isinstance(found, T.ArrayType) and isinstance(found.elementType, INTEGER_TYPES)):
                problems.append(f"{spec.name} must be array<int> (multi field), found {_type_name(found)}")
            if not (isinstance(weights, T.ArrayType) and isinstance(weights.elementType, FLOAT_TYPES)):
                problems.append(f"{weights_key(spec.name)} must be array<float>, found {_type_name(weights)}")
    if problems:
        raise ScoringInputError("user_features does not match the model's fields: " + "; ".join(problems))


def cut_lists(features: DataFrame, model_fields: Sequence[FieldSpec], max_len: int) -> DataFrame:
    """`features` with each multi field and its weights cut to their first `max_len` values, the ones
    the model is given (nulls stay null): the counts and checks below then judge what is scored."""
    cut = {}
    for spec in model_fields:
        if spec.kind == "multi":
            for name in (spec.name, weights_key(spec.name)):
                cut[name] = F.slice(F.col(name), 1, max_len)
    return features.withColumns(cut)


def missing_any(model_fields: Sequence[FieldSpec]) -> Column:
    """True for a user with at least one field missing (id 0 or null; a multi field with no value)."""
    checks = []
    for spec in model_fields:
        ids = F.col(spec.name)
        if spec.kind == "single":
            checks.append(F.coalesce(ids == 0, F.lit(True)))
        else:
            present = F.zip_with(ids, F.col(weights_key(spec.name)), lambda i, w: (i > 0) & (w > 0))
            checks.append(~F.coalesce(F.exists(present, lambda p: p), F.lit(False)))
    return _any(checks)


def unknown_any(model_fields: Sequence[FieldSpec]) -> Column:
    """True for a user with an id the model has not seen (>= its vocab_size): scored as 1, unknown.

    A multi field's id counts only with a weight > 0: at weight 0 it does not reach the score.
    """
    checks = []
    for spec in model_fields:
        ids = F.col(spec.name)
        if spec.kind == "single":
            checks.append(F.coalesce(ids >= spec.vocab_size, F.lit(False)))
        else:
            unknown = F.zip_with(ids, F.col(weights_key(spec.name)), lambda i, w: (i >= spec.vocab_size) & (w > 0))
            checks.append(F.coalesce(F.exists(unknown, lambda u: u), F.lit(False)))
    return _any(checks)


def invalid_any(model_fields: Sequence[FieldSpec]) -> Column:
    """True for a row that cannot be scored: no user_id (null or blank), or a negative id in a model
    field (ids are 0 missing, 1 unknown, 2 and up). A multi field's negative id is refused whatever
    its weight: the embedding looks every position up, and would fail on the executor."""
    checks = [F.coalesce(F.trim(F.col("user_id")) == "", F.lit(True))]
    for spec in model_fields:
        ids = F.col(spec.name)
        if spec.kind == "single":
            checks.append(F.coalesce(ids < 0, F.lit(False)))
        else:
            checks.append(F.coalesce(F.exists(ids, lambda i: i < 0), F.lit(False)))
    return _any(checks)


def read_tags(paths: Paths, date: dt.date) -> pa.Table:
    """tag_id, tag_index, category_id of the tags table for dt = `date`, checked, by tag_index.

    One day of tags is small (one row per tag): it is read on the driver with pyarrow, from the
    files of that date only (the table gains a partition a day).
    """
    uri = warehouse_uri(paths, Warehouse.TAGS)
    if not delta.table_exists(uri):
        raise ScoringInputError(f"no tags for dt={date.isoformat()}: there is no tags table at {uri}")
    tags = delta.read_arrow(uri, columns=["tag_id", "tag_index", "category_id"], partition={"dt": date})
    tags = tags.cast(pa.schema([("tag_id", pa.string()), ("tag_index", pa.int32()), ("category_id", pa.int32())]))
    if tags.num_rows == 0:
        raise ScoringInputError(f"no tags for dt={date.isoformat()} in {uri}")
    for column in ("tag_id", "tag_index"):
        if tags[column].null_count or pc.count_distinct(tags[column]).as_py() != tags.num_rows:
            raise ScoringInputError(f"tags for dt={date.isoformat()}: {column} must be unique and not null")
    if pc.min(tags["tag_index"]).as_py() < FIRST_REAL_ID:
        raise ScoringInputError(f"tags for dt={date.isoformat()}: tag_index must be >= {FIRST_REAL_ID} "
                                f"(0 is missing, 1 unknown)")
    negative = tags.filter(pc.less(tags["category_id"], 0))
    if negative.num_rows:
        raise ScoringInputError(f"tags for dt={date.isoformat()}: category_id must be >= 0 (0 is missing), found "
                                f"{negative.num_rows} negative, e.g. tag {negative['tag_id'][0].as_py()!r}")
    return tags.sort_by("tag_index")


def split_tags(tags: pa.Table, num_tags: int) -> TagSet:
    """Tags the model was trained with (tag_index < num_tags) and those created after it."""
    seen = pc.less(tags["tag_index"], num_tags)
    return TagSet(seen=tags.filter(seen), unseen=tags.filter(pc.invert(seen)))


def _any(checks: list[Column]) -> Column:
    result = F.lit(False)
    for check in checks:
        result = result | check
    return result


def _type_name(data_type: T.DataType | None) -> str:
    return "nothing" if data_type is None else data_type.simpleString()


def drop_excluded(tags: pa.Table, excluded: Sequence[str]) -> pa.Table:
    """Tags minus those of `score.exclude_tags` (ids not in the table are ignored)."""
    if not excluded:
        return tags
    return tags.filter(pc.invert(pc.is_in(tags["tag_id"], pa.array(list(excluded), pa.string()))))
