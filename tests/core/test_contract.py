import datetime as dt
import os
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from pyspark.sql import functions as F
from pyspark.testing import assertDataFrameEqual

from core import delta
from core.config import Paths
from core.contract import ContractError, UserAttributes, drop_ignored, read_raw, user_attributes
from core.tables import Raw

TS = dt.datetime(2026, 11, 1, 10, 0)
EVENTS = "user_id string, item_id string, event_type string, event_time timestamp"


@pytest.fixture
def paths(tmp_path):
    return Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))


def test_reads_a_parquet_folder_and_a_delta_table_alike(spark, paths):
    events = spark.createDataFrame([("u1", "i1", "click", TS)], EVENTS)
    events.write.parquet(f"{paths.raw}/events")
    assertDataFrameEqual(read_raw(spark, paths, Raw.EVENTS), events)
    items = spark.createDataFrame([("i1", ["t1", "t2"])], "item_id string, tag_ids array<string>")
    delta.write_table(items, f"{paths.raw}/items", mode="overwrite")
    assertDataFrameEqual(read_raw(spark, paths, Raw.ITEMS), items)


def test_extra_columns_are_dropped_and_contract_columns_come_first(spark, paths):
    spark.createDataFrame([("x", "u1", "i1", "click", TS)], f"source string, {EVENTS}") \
        .write.parquet(f"{paths.raw}/events")
    assert read_raw(spark, paths, Raw.EVENTS).columns == ["user_id", "item_id", "event_type", "event_time"]


def test_missing_table(spark, paths):
    with pytest.raises(ContractError, match=r"raw table tags not found at .*/raw/tags"):
        read_raw(spark, paths, Raw.TAGS)


def test_missing_column_names_table_column_and_type(spark, paths):
    spark.createDataFrame([("u1", "i1", TS)], "user_id string, item_id string, event_time timestamp") \
        .write.parquet(f"{paths.raw}/events")
    with pytest.raises(ContractError, match=r"raw table events: column event_type is missing \(expected string"):
        read_raw(spark, paths, Raw.EVENTS)


def test_wrong_type_names_expected_and_found(spark, paths):
    spark.createDataFrame([("u1", "i1", "click", "2026-11-01")], "user_id string, item_id string, "
                          "event_type string, event_time string").write.parquet(f"{paths.raw}/events")
    with pytest.raises(ContractError, match=r"raw table events: column event_time has type string, expected timestamp"):
        read_raw(spark, paths, Raw.EVENTS)
    spark.createDataFrame([("i1", [1])], "item_id string, tag_ids array<int>").write.parquet(f"{paths.raw}/items")
    with pytest.raises(ContractError, match=r"column tag_ids has type array<int>, expected array<string>"):
        read_raw(spark, paths, Raw.ITEMS)


def test_corrupted_parquet_file_is_named(spark, paths, tmp_path):
    folder = tmp_path / "raw" / "tags"
    folder.mkdir(parents=True)
    (folder / "part-0.parquet").write_bytes(b"not a parquet file at all")
    with pytest.raises(ContractError, match=r"raw table tags: file .*tags/part-0.parquet cannot be read as Parquet"):
        read_raw(spark, paths, Raw.TAGS)


def test_user_attributes_are_declared_or_discovered(spark):
    users = spark.createDataFrame([("u1", "paris", 3.5, 4, True)],
                                  "user_id string, city string, income double, tenure int, premium boolean")
    assert user_attributes(users) == user_attributes(users, ("city",), ("income",))
    found = user_attributes(users)
    assert found.categorical == ("city", "premium") and found.numeric == ("income", "tenure")
    with pytest.raises(ContractError, match="declared attribute age is missing"):
        user_attributes(users, categorical=("age",))
    with pytest.raises(ContractError, match="numeric attribute city has type string"):
        user_attributes(users, numeric=("city",))
    odd = spark.createDataFrame([("u1", [1])], "user_id string, codes array<int>")
    with pytest.raises(ContractError, match="attribute codes has type array<int>"):
        user_attributes(odd)
    # declared categorical: a numeric code is a value; binary (its bytes unchecked) and arrays are not
    assert user_attributes(users, categorical=("tenure",)) == UserAttributes(("tenure", "city", "premium"),
                                                                              ("income",))
    raw = spark.createDataFrame([("u1", bytearray(b"\xff"), [1])], "user_id string, region binary, codes array<int>")
    for name, kind in (("region", "binary"), ("codes", "array<int>")):
        with pytest.raises(ContractError, match=rf"^raw table users: categorical attribute {name} has type "
                                                rf"{re.escape(kind)}, expected a string, boolean or number$"):
            user_attributes(raw.select("user_id", name), categorical=(name,))


def test_ignored_attributes_are_dropped_and_a_name_the_table_lacks_is_refused(spark):
    users = spark.createDataFrame([("u1", "paris", "h1", 4)], "user_id string, city string, phone_hash string, tenure int")
    assert user_attributes(drop_ignored(users, ("phone_hash",))) == UserAttributes(("city",), ("tenure",))
    with pytest.raises(ContractError, match=r"features.ignore_attributes lists phone_hsh, which the table does not "
                                            r"have \(found columns: user_id, city, phone_hash, tenure\)"):
        drop_ignored(users, ("phone_hsh",))
    mixed = spark.createDataFrame([("u1", "paris", "h1")], "user_id string, city string, Phone_Hash string")
    assert drop_ignored(mixed, ("phone_hash",)).columns == ["user_id", "city"]  # as Spark resolves names


def test_every_file_of_a_parquet_folder_is_checked(spark, paths):
    """Spark takes a folder's schema from one file: a file that disagrees is named up front."""
    folder = f"{paths.raw}/events"
    os.makedirs(folder)
    at = pa.array([dt.datetime(2026, 11, 1, 10, tzinfo=dt.timezone.utc)], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"user_id": ["u1"], "item_id": ["i1"], "event_type": ["click"], "event_time": at}),
                   f"{folder}/part-0.parquet")
    pq.write_table(pa.table({"user_id": ["u2"], "item_id": ["i1"], "event_type": ["click"],
                             "event_time": ["2026-11-01 11:00:00"]}), f"{folder}/part-1.parquet")
    with pytest.raises(ContractError, match=r"raw table events: column event_time has type string, "
                                            r"expected timestamp in file .*/events/part-1\.parquet$"):
        read_raw(spark, paths, Raw.EVENTS)
    pq.write_table(pa.table({"user_id": ["u2"], "item_id": ["i1"], "event_time": at}), f"{folder}/part-1.parquet")
    with pytest.raises(ContractError, match=r"raw table events: column event_type is missing \(expected string; "
                                            r"found columns: user_id, item_id, event_time\) in file .*/part-1"):
        read_raw(spark, paths, Raw.EVENTS)


def test_files_mixing_utc_and_naive_timestamps_are_named(spark, paths):
    """Spark cannot merge timestamp and timestamp_ntz; either alone is accepted (naive as UTC)."""
    folder = f"{paths.raw}/events"
    os.makedirs(folder)
    row = {"user_id": ["u1"], "item_id": ["i1"], "event_type": ["click"]}
    naive = pa.array([dt.datetime(2026, 11, 1, 10)], pa.timestamp("us"))
    pq.write_table(pa.table({**row, "event_time": naive}), f"{folder}/part-0.parquet")
    pq.write_table(pa.table({**row, "event_time": naive}), f"{folder}/part-1.parquet")
    assert [r.event_time for r in read_raw(spark, paths, Raw.EVENTS).collect()] == [dt.datetime(2026, 11, 1, 10)] * 2
    utc = pa.array([dt.datetime(2026, 11, 1, 10, tzinfo=dt.timezone.utc)], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({**row, "event_time": utc}), f"{folder}/part-1.parquet")
    with pytest.raises(ContractError, match=r"raw table events: column event_time has type timestamp in file "
                                            r".*/part-1\.parquet but timestamp_ntz in file .*/part-0\.parquet; "
                                            r"every file must agree"):
        read_raw(spark, paths, Raw.EVENTS)


def test_spark_written_int96_times_are_utc_timestamps_next_to_pyarrow_ones(spark, paths):
    # Spark writes INT96 by default, which pyarrow reads back without a time zone
    folder = f"{paths.raw}/events"
    spark.createDataFrame([("u1", "i1", "click", TS)], EVENTS).coalesce(1).write.parquet(folder)
    [written] = [f for f in os.listdir(folder) if f.endswith(".parquet")]
    assert pq.read_metadata(f"{folder}/{written}").schema.column(3).physical_type == "INT96"
    utc = pa.array([dt.datetime(2026, 11, 1, 11, tzinfo=dt.timezone.utc)], pa.timestamp("us", tz="UTC"))
    pq.write_table(pa.table({"user_id": ["u2"], "item_id": ["i1"], "event_type": ["click"], "event_time": utc}),
                   f"{folder}/zz-part.parquet")
    read = read_raw(spark, paths, Raw.EVENTS).select("user_id", F.unix_micros("event_time").alias("micros"))
    hours = {"u1": 10, "u2": 11}  # both 2026-11-01 in UTC: Spark's 10:00 in the UTC session, pyarrow's 11:00 UTC
    assert sorted(tuple(r) for r in read.collect()) == [
        (user, int(dt.datetime(2026, 11, 1, hour, tzinfo=dt.timezone.utc).timestamp()) * 1_000_000)
        for user, hour in sorted(hours.items())]


def test_a_delta_table_in_a_folder_with_a_space_is_read(spark, tmp_path):
    # the Delta log holds the file paths URL-encoded (%20): the footer check must decode them
    paths = Paths(raw=str(tmp_path / "raw data"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))
    tags = spark.createDataFrame([("t1", "food-t1", "food"), ("t2", "misc-t2", "a b")],
                                 "tag_id string, tag_name string, category string")
    delta.write_table(tags, f"{paths.raw}/tags", mode="overwrite", partition_by=["category"])
    assertDataFrameEqual(read_raw(spark, paths, Raw.TAGS), tags)


@pytest.mark.parametrize("configuration, named", [
    ({"delta.enableDeletionVectors": "true"}, r"deletion vectors \(rows they delete would be read back\)"),
    ({"delta.columnMapping.mode": "name"}, r"column mapping mode 'name' \(columns are stored under other names\)"),
], ids=["deletion vectors", "column mapping"])
def test_raw_delta_features_the_reader_cannot_apply_are_refused(spark, paths, configuration, named):
    from deltalake import write_deltalake

    write_deltalake(f"{paths.raw}/tags", pa.table({"tag_id": ["t1"], "tag_name": ["food-t1"], "category": ["food"]}),
                    configuration=configuration)
    with pytest.raises(ContractError, match=rf"^raw table tags at .*/raw/tags uses {named}, which this job's reader "
                                            rf"does not apply; publish it without them"):
        read_raw(spark, paths, Raw.TAGS)


def test_a_raw_delta_table_with_files_outside_partition_folders_is_refused(spark, paths):
    """Randomized file prefixes (no category=... folders): Spark takes partition values from the folder
    names, so every tag would have read a null category."""
    import json

    from deltalake.transaction import AddAction

    uri = f"{paths.raw}/tags"
    rows = pa.table({"tag_id": ["t1"], "tag_name": ["food-t1"], "category": ["food"]})
    delta.write_arrow(rows, uri, mode="overwrite", partition_by=["category"])
    os.makedirs(f"{uri}/Xy7q")
    pq.write_table(pa.table({"tag_id": ["t2"], "tag_name": ["auto-t2"]}), f"{uri}/Xy7q/part-0.parquet")
    delta.commit(uri, [AddAction(path="Xy7q/part-0.parquet", size=os.path.getsize(f"{uri}/Xy7q/part-0.parquet"),
                                 partition_values={"category": "auto"}, modification_time=0, data_change=True,
                                 stats=json.dumps({"numRecords": 1}))],
                 rows.schema, mode="append", partition_by=["category"])
    with pytest.raises(ContractError, match=r"^raw table tags at .*/raw/tags uses data files outside <column>=<value> "
                                            r"folders, e.g. Xy7q/part-0.parquet \(randomized file prefixes: Spark "
                                            r"takes partition values from folder names, so category would read null\)"):
        read_raw(spark, paths, Raw.TAGS)


def test_other_columns_must_agree_across_files(spark, paths):
    folder = f"{paths.raw}/users"
    os.makedirs(folder)
    pq.write_table(pa.table({"user_id": ["u1"], "age": pa.array([30], pa.int64())}), f"{folder}/part-0.parquet")
    pq.write_table(pa.table({"user_id": ["u2"], "age": ["31"]}), f"{folder}/part-1.parquet")
    with pytest.raises(ContractError, match=r"raw table users: column age has type string in file .*/part-1\.parquet "
                                            r"but bigint in file .*/part-0\.parquet; every file must agree"):
        read_raw(spark, paths, Raw.USERS)
    pq.write_table(pa.table({"user_id": ["u2"], "age": pa.array([31], pa.int64())}), f"{folder}/part-1.parquet")
    assertDataFrameEqual(read_raw(spark, paths, Raw.USERS),
                         spark.createDataFrame([("u1", 30), ("u2", 31)], "user_id string, age bigint"))


@pytest.mark.parametrize("older", ["part-0", "part-2"])  # the file without age listed first, then last
def test_a_column_only_some_files_have_is_read_from_every_file(spark, paths, older):
    """An attribute added to the newer files is read whichever file Spark lists first; the older
    files' rows read null (Spark alone takes the columns of one file and would drop age or not
    depending on the file names)."""
    folder = f"{paths.raw}/users"
    os.makedirs(folder)
    pq.write_table(pa.table({"user_id": ["u1"], "city": ["paris"]}), f"{folder}/{older}.parquet")
    pq.write_table(pa.table({"user_id": ["u2"], "city": ["lyon"], "age": pa.array([31], pa.int64())}),
                   f"{folder}/part-1.parquet")
    users = read_raw(spark, paths, Raw.USERS)
    assert users.columns == ["user_id", "city", "age"] or users.columns == ["user_id", "age", "city"]
    assertDataFrameEqual(users.select("user_id", "city", "age"),
                         spark.createDataFrame([("u1", "paris", None), ("u2", "lyon", 31)],
                                               "user_id string, city string, age bigint"))
    assert user_attributes(users) == UserAttributes(categorical=("city",), numeric=("age",))


@pytest.mark.parametrize("name", ["_rank", "_id", "_value", "geo.country", "Reason", "DT",
                                  "Gender", "1st", "city name", "a-b", "ville_é"])
def test_attribute_names_must_be_lowercase_identifiers(spark, paths, name):
    """Dotted, mixed-case or _-prefixed names would resolve to other columns inside the job."""
    folder = f"{paths.raw}/users"
    os.makedirs(folder)
    pq.write_table(pa.table({"user_id": ["u1"], name: ["x"]}), f"{folder}/part-0.parquet")
    users = read_raw(spark, paths, Raw.USERS)
    assert users.columns == ["user_id", name] and users.first()[name] == "x"
    with pytest.raises(ContractError, match=rf"raw table users: attribute column {re.escape(repr(name))} is not a "
                                            r"valid attribute name: attribute names are lowercase identifiers"):
        user_attributes(users)
    assert user_attributes(users.drop(name)) == UserAttributes((), ())


def test_the_files_checked_are_the_files_spark_reads(spark, paths):
    folder = Path(paths.raw) / "events"
    at = pa.array([dt.datetime(2026, 11, 1, 10, tzinfo=dt.timezone.utc)], pa.timestamp("us", tz="UTC"))
    good = pa.table({"user_id": ["u1"], "item_id": ["i1"], "event_type": ["click"], "event_time": at})
    data = ("_src=crm/part-0.parquet", "day=1/part-0.parquet", "part-0.parquet", "part_1.parquet")
    skipped = (".part-0.parquet.crc", "_SUCCESS", "_temporary/0/part-5.parquet", "part-7.parquet._COPYING_",
               "day=1/.hidden/part-0.parquet", "day=1/_logs/part-0.parquet")
    for name in (*data, *skipped):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(good, folder / name)
    from pyarrow import fs

    from core import contract

    listed = contract._data_files(fs.LocalFileSystem(), str(folder))
    # (recursive lookup: these folders are not one partitioning; Spark lists files by the same rule)
    read_by_spark = spark.read.option("recursiveFileLookup", "true").parquet(str(folder)).inputFiles()
    assert sorted(Path(f).relative_to(folder).as_posix() for f in listed) == sorted(data)
    assert sorted(Path(f.removeprefix("file:")).relative_to(folder).as_posix() for f in read_by_spark) == sorted(data)
    # A file Spark reads is checked, even in a folder named `_…=…`.
    pq.write_table(good.set_column(3, "event_time", pa.array(["2026-11-01 10:00:00"])),
                   folder / "_src=crm" / "part-0.parquet")
    with pytest.raises(ContractError, match=r"column event_time has type string, expected timestamp in file "
                                            r".*/events/_src=crm/part-0\.parquet$"):
        read_raw(spark, paths, Raw.EVENTS)


def test_a_raw_parquet_folder_on_a_store_is_found_listed_and_checked(monkeypatch):
    """s3:// or gs:// folders were looked for on the local disk and reported missing. pyarrow's
    in-memory mock:// filesystem stands in for the store (no network here)."""
    from pyarrow import fs

    from core import contract

    store = fs._MockFileSystem()
    monkeypatch.setattr(delta, "arrow_filesystem", lambda uri: (store, uri.removeprefix("mock://"), []))
    root = "bucket/raw/events"
    at = pa.array([dt.datetime(2026, 11, 1, 10, tzinfo=dt.timezone.utc)], pa.timestamp("us", tz="UTC"))
    good = pa.table({"user_id": ["u1"], "item_id": ["i1"], "event_type": ["click"], "event_time": at})
    for name in ("day=1/part-0.parquet", "day=2/part-0.parquet", "part-9.parquet"):
        store.create_dir(f"{root}/{name}".rsplit("/", 1)[0])
        pq.write_table(good, f"{root}/{name}", filesystem=store)
    store.create_dir(f"{root}/_temporary/0")
    for metadata in ("_SUCCESS", ".part-9.parquet.crc", "_temporary/0/part-5.parquet"):  # Spark's and Hadoop's
        with store.open_output_stream(f"{root}/{metadata}") as out:
            out.write(b"not data")

    assert contract._data_files(store, root) == [
        f"{root}/day=1/part-0.parquet", f"{root}/day=2/part-0.parquet", f"{root}/part-9.parquet"]
    contract._check_parquet_folder(f"mock://{root}", Raw.EVENTS)
    with store.open_output_stream(f"{root}/day=2/part-1.parquet") as out:
        out.write(b"not a parquet file at all")
    with pytest.raises(ContractError, match=rf"^raw table events: file {root}/day=2/part-1.parquet cannot be read "
                                            rf"as Parquet"):
        contract._check_parquet_folder(f"mock://{root}", Raw.EVENTS)
    with pytest.raises(ContractError, match=r"^raw table tags not found at mock://bucket/raw/tags \(expected a Delta"):
        contract._check_parquet_folder("mock://bucket/raw/tags", Raw.TAGS)
