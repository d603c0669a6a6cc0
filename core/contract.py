"""The raw-data contract: what the behaviour logs must look like, checked before any work.

Each raw table lives at `paths.raw/<table>` as a Delta table (detected by its
`_delta_log` folder) or a folder of Parquet files. A missing table or column, or a
column of the wrong type, raises `ContractError` naming the table, the column, and
the expected and found types, before anything is written. Extra columns are ignored
(for `users` they are attributes, by definition).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq
from pyspark.errors import AnalysisException, PySparkException
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T
from pyspark.sql.pandas.types import from_arrow_type

from core import delta
from core.config import Paths
from core.tables import Raw, raw_uri


class ContractError(ValueError):
    """Raw input that breaks the contract; the message names table, column and types."""


EVENT_TYPES = ("impression", "click", "conversion")

SCHEMAS: dict[Raw, T.StructType] = {
    Raw.EVENTS: T.StructType([
        T.StructField("user_id", T.StringType()),
        T.StructField("item_id", T.StringType()),
        T.StructField("event_type", T.StringType()),
        T.StructField("event_time", T.TimestampType()),
    ]),
    Raw.ITEMS: T.StructType([
        T.StructField("item_id", T.StringType()),
        T.StructField("tag_ids", T.ArrayType(T.StringType())),
    ]),
    Raw.TAGS: T.StructType([
        T.StructField("tag_id", T.StringType()),
        T.StructField("tag_name", T.StringType()),
        T.StructField("category", T.StringType()),
    ]),
    Raw.USERS: T.StructType([
        T.StructField("user_id", T.StringType()),
    ]),
}

ATTRIBUTE_NAME = re.compile(r"[a-z][a-z0-9_]*")

NUMERIC_TYPES = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.FloatType, T.DoubleType, T.DecimalType)


@dataclass(frozen=True)
class UserAttributes:
    """The users table's attribute columns, by kind (declared in the conf or discovered)."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]


def read_raw(spark: SparkSession, paths: Paths, table: Raw) -> DataFrame:
    """The raw table, checked against the contract, with the contract's columns first."""
    uri = raw_uri(paths, table)
    df = _load(spark, uri, table)
    check_schema(df.schema, table)
    expected = SCHEMAS[table].fieldNames()
    extra = [c for c in df.columns if c not in expected] if table is Raw.USERS else []
    return df.select(*[column(name) for name in (*expected, *extra)])


def column(name: str) -> Column:
    """The column called `name`, taken literally (a dot or a backtick in it is part of the name)."""
    return F.col("`" + name.replace("`", "``") + "`")


def check_schema(found: T.StructType, table: Raw, *, file: str | None = None) -> None:
    """ContractError unless `found` has every contract column of `table` with its type.

    `file`: the Parquet file `found` was read from, named in the message.
    """
    where = f" in file {file}" if file else ""
    by_name = {f.name: f.dataType for f in found.fields}
    for field in SCHEMAS[table].fields:
        if field.name not in by_name:
            raise ContractError(
                f"raw table {table.value}: column {field.name} is missing "
                f"(expected {field.dataType.simpleString()}; found columns: {', '.join(found.fieldNames())}){where}"
            )
        actual = by_name[field.name]
        if not _same_type(field.dataType, actual):
            raise ContractError(
                f"raw table {table.value}: column {field.name} has type {actual.simpleString()}, "
                f"expected {field.dataType.simpleString()}{where}"
            )


def drop_ignored(users: DataFrame, ignored: tuple[str, ...]) -> DataFrame:
    """The users table without the columns `features.ignore_attributes` lists. A listed name the
    table does not have is a ContractError: a misspelt name would otherwise leave the column it
    meant to keep out (a PII column, say) in as a discovered attribute, silently."""
    present = {c.lower() for c in users.columns}  # Spark resolves column names case-insensitively
    for name in ignored:
        if name.lower() not in present:
            raise ContractError(f"raw table users: features.ignore_attributes lists {name}, which the table does "
                                f"not have (found columns: {', '.join(users.columns)}); correct the name or remove it")
    return users.drop(*ignored)


def user_attributes(users: DataFrame, categorical: tuple[str, ...] = (), numeric: tuple[str, ...] = ()) -> UserAttributes:
    """Attribute columns of the users table: those the conf declares, plus discovered ones.

    Discovered string (or boolean) columns are categorical, numeric columns are numeric;
    other types are a ContractError naming the column, and so is a name that is not a
    lowercase identifier (ATTRIBUTE_NAME). The rule keeps attributes apart from the job's
    working columns (which start with _), from Spark's case-insensitive name matching (a
    mixed-case name could meet a reserved or behaviour field name) and from its reading of
    dots as struct fields.
    """
    types = {f.name: f.dataType for f in users.schema.fields if f.name != "user_id"}
    for name in types:
        if not ATTRIBUTE_NAME.fullmatch(name):
            raise ContractError(f"raw table users: attribute column {name!r} is not a valid attribute name: "
                                f"attribute names are lowercase identifiers ([a-z][a-z0-9_]*: a letter first, then "
                                f"letters, digits or _), as field and vocabulary names; rename the column or list "
                                f"it in features.ignore_attributes")
    for name in (*categorical, *numeric):
        if name not in types:
            raise ContractError(f"raw table users: declared attribute {name} is missing "
                                f"(found columns: {', '.join(users.columns)})")
    for name in numeric:
        if not isinstance(types[name], NUMERIC_TYPES):
            raise ContractError(f"raw table users: numeric attribute {name} has type "
                                f"{types[name].simpleString()}, expected a number")
    for name in categorical:  # a code may be numeric; binary (no UTF-8 check), arrays, maps, structs are not values
        if not isinstance(types[name], (T.StringType, T.BooleanType, *NUMERIC_TYPES)):
            raise ContractError(f"raw table users: categorical attribute {name} has type "
                                f"{types[name].simpleString()}, expected a string, boolean or number")
    found_cat, found_num = list(categorical), list(numeric)
    for name, dtype in types.items():
        if name in categorical or name in numeric:
            continue
        if isinstance(dtype, (T.StringType, T.BooleanType)):
            found_cat.append(name)
        elif isinstance(dtype, NUMERIC_TYPES):
            found_num.append(name)
        else:
            raise ContractError(f"raw table users: attribute {name} has type {dtype.simpleString()}; "
                                f"attributes must be strings, booleans or numbers")
    return UserAttributes(categorical=tuple(found_cat), numeric=tuple(found_num))


def _load(spark: SparkSession, uri: str, table: Raw) -> DataFrame:
    if delta.table_exists(uri):
        opened = delta.open_table(uri)
        _check_features(opened, table, uri)
        _check_parquet_footers(opened, table)
        return delta.read_table(spark, uri)
    _check_parquet_folder(uri, table)
    try:  # the union of the files' columns: a column some files lack reads null in their rows
        return spark.read.option("mergeSchema", "true").parquet(uri)
    except AnalysisException as exc:
        raise ContractError(f"raw table {table.value} at {uri} cannot be read as Parquet: {exc}") from exc


def _check_parquet_folder(uri: str, table: Raw) -> None:
    """A raw Parquet folder, local or on a store pyarrow knows (`s3://`, `gs://`, `hdfs://`), exists
    and holds Parquet files whose footers keep the contract."""
    from pyarrow import fs as pafs

    filesystem, root, _ = delta.arrow_filesystem(uri)
    if filesystem.get_file_info(root).type != pafs.FileType.Directory:
        raise ContractError(f"raw table {table.value} not found at {uri} (expected a Delta table or a Parquet folder)")
    files = _data_files(filesystem, root)
    if not files:
        raise ContractError(f"raw table {table.value} at {uri} holds no Parquet files")
    _check_parquet_schemas(filesystem, files, table)


def _data_files(filesystem, root: str) -> list[str]:
    """The files under `root` that Spark reads as data, in path order: Spark's rule, applied to every
    name below `root`, skips `.…` (hidden), `…._COPYING_` (a copy still being written) and `_…`
    (metadata such as `_SUCCESS`, `_temporary/`) unless it holds `=` (a partition folder `_src=crm`)."""
    from pyarrow import fs as pafs

    def skipped(name: str) -> bool:
        return name.startswith(".") or name.endswith("._COPYING_") or (name.startswith("_") and "=" not in name)

    listed = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
    return sorted(info.path for info in listed if info.type == pafs.FileType.File and not any(
        skipped(part) for part in info.path[len(root):].split("/") if part))


def _check_parquet_schemas(filesystem, files: list[str], table: Raw) -> None:
    """Read every file's schema (its footer only): a corrupted file, or one whose columns break
    the contract or disagree with another file's, is named up front. Spark takes a folder's
    schema from one file, so a disagreeing file would otherwise fail (or be misread) mid-job.
    A column only some files have is no disagreement: the folder is read with the union of the
    files' columns (an attribute added to the newer files of users, say)."""
    seen: dict[str, tuple[str, T.DataType]] = {}  # column -> (first file holding it, its type)
    for path in files:
        try:
            parquet = pq.read_metadata(path, filesystem=filesystem).schema
        except (OSError, pa.ArrowException) as exc:
            raise ContractError(f"raw table {table.value}: file {path} cannot be read as Parquet ({exc})") from exc
        # INT96 (Spark's default timestamp encoding) carries no time zone flag: pyarrow reads it as
        # naive, Spark as timestamp, which is what it is
        int96 = {parquet.column(i).path for i in range(len(parquet)) if parquet.column(i).physical_type == "INT96"}
        found = T.StructType([T.StructField(f.name, T.TimestampType() if f.name in int96 else _spark_type(f.type))
                              for f in parquet.to_arrow_schema()])
        check_schema(found, table, file=path)
        for field in found.fields:
            first, dtype = seen.setdefault(field.name, (path, field.dataType))
            if dtype != field.dataType:
                raise ContractError(
                    f"raw table {table.value}: column {field.name} has type {field.dataType.simpleString()} in "
                    f"file {path} but {dtype.simpleString()} in file {first}; every file must agree"
                )


def _spark_type(arrow_type: pa.DataType) -> T.DataType:
    """The Spark type of a Parquet column of `arrow_type`; an ArrowOnlyType where pyspark maps none
    (unsigned integers, for one, which Spark reads but pyspark cannot name)."""
    if pa.types.is_timestamp(arrow_type) and arrow_type.tz is None:
        return T.TimestampNTZType()  # pyspark names it TimestampType too; Spark cannot merge the two
    try:
        return from_arrow_type(arrow_type)
    except (TypeError, ValueError, NotImplementedError, PySparkException):
        return ArrowOnlyType(str(arrow_type))


class ArrowOnlyType(T.DataType):
    """A column type known by its Arrow name only: equal to the same name, never to a contract type."""

    def __init__(self, name: str):
        self.name = name

    def simpleString(self) -> str:
        return self.name


def _check_features(delta_table, table: Raw, uri: str) -> None:
    """Refuse a raw Delta table whose live files do not hold its rows as they are: the job reads
    those files with Spark, so rows deleted by a deletion vector would come back, and columns
    stored under mapped names would be missing (tables written by Spark on Databricks, say)."""
    problems = delta.unreadable_features(delta_table)
    if problems:
        raise ContractError(f"raw table {table.value} at {uri} uses {' and '.join(problems)}, which this job's "
                            f"reader does not apply; publish it without them (a Parquet folder, or a Delta table "
                            f"written without those table features)")


def _check_parquet_footers(delta_table, table: Raw) -> None:
    """Read every live file's footer (cheap: metadata only) so a corrupted file is named up front.
    Paths come decoded from the Delta log (a folder name with a space is `%20` there)."""
    relative = delta_table.get_add_actions(flatten=True).column("path").to_pylist()
    filesystem, _, files = delta.arrow_filesystem(delta_table.table_uri, relative)
    for path in files:
        try:
            pq.read_metadata(path, filesystem=filesystem)
        except (OSError, pa.ArrowException) as exc:
            raise ContractError(f"raw table {table.value}: file {path} cannot be read as Parquet ({exc})") from exc


def _same_type(expected: T.DataType, actual: T.DataType) -> bool:
    if isinstance(expected, T.TimestampType):
        return isinstance(actual, (T.TimestampType, T.TimestampNTZType))
    if isinstance(expected, T.ArrayType):
        return isinstance(actual, T.ArrayType) and _same_type(expected.elementType, actual.elementType)
    return type(expected) is type(actual)
