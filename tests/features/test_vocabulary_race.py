"""Two jobs appending to the vocabulary at once must never give two values one id."""
from __future__ import annotations

import datetime as dt
import os

import pyarrow as pa
from pyspark.sql import functions as F
from pyspark.sql import types as T

from core import delta
from features import vocabulary as vocab
from features.schema import FieldDef, read_fields
from jobs.features import update_vocabulary, write_fields

DAY = dt.date(2026, 11, 10)


def _rows(table) -> set[tuple[str, str, int]]:
    return {(r["field"], r["value"], r["id"]) for r in table}


def _while_ids_are_computed_another_job_appends_t9(values, uri: str, marker: str):
    """`values` whose evaluation (while the job computes its new ids, after it read the
    vocabulary) first lets another job's append of t9 (next id 4) land, exactly once."""
    def other_writer_appends_once(value: str) -> str:
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return value
        delta.write_arrow(pa.table({"field": ["tag"], "value": ["t9"], "id": pa.array([4], pa.int32()),
                                    "first_dt": pa.array([DAY], pa.date32())}), uri, mode="append")
        return value

    return values.withColumn("value", F.udf(other_writer_appends_once, T.StringType())("value"))


def test_an_append_that_lands_while_ids_are_computed_makes_the_job_read_again(spark, tmp_path):
    uri = str(tmp_path / "vocabulary")
    marker = str(tmp_path / "other_writer_done")
    seed = spark.createDataFrame([("tag", "t1"), ("tag", "t2")], vocab.VALUES_SCHEMA)
    update_vocabulary(spark, uri, seed, first_dt=DAY, commit_info={"job": "seed"})

    racing = _while_ids_are_computed_another_job_appends_t9(
        spark.createDataFrame([("tag", "t3"), ("tag", "t4")], vocab.VALUES_SCHEMA), uri, marker)
    vocabulary, added, version = update_vocabulary(spark, uri, racing, first_dt=DAY, commit_info={"job": "race"})

    expected = {("tag", "t1", 2), ("tag", "t2", 3), ("tag", "t9", 4), ("tag", "t3", 5), ("tag", "t4", 6)}
    assert os.path.exists(marker) and added == 2
    assert _rows(delta.read_arrow(uri).to_pylist()) == expected
    assert _rows(r.asDict() for r in vocabulary.collect()) == expected
    assert delta.table_version(uri) == version == 2  # seed, the other writer, this job: the refused commit left nothing
    vocabulary.unpersist()


def test_a_job_that_adds_nothing_reports_the_version_it_read_not_a_later_append(spark, tmp_path):
    """The job's outputs use the vocabulary it read; another job's append landing meanwhile is not
    the version they were built from."""
    uri = str(tmp_path / "vocabulary")
    marker = str(tmp_path / "other_writer_done")
    seed = spark.createDataFrame([("tag", "t1"), ("tag", "t2")], vocab.VALUES_SCHEMA)
    assert update_vocabulary(spark, uri, seed, first_dt=DAY, commit_info={"job": "seed"}).version == 0

    known = _while_ids_are_computed_another_job_appends_t9(
        spark.createDataFrame([("tag", "t2"), ("tag", "t1")], vocab.VALUES_SCHEMA), uri, marker)
    vocabulary, added, version = update_vocabulary(spark, uri, known, first_dt=DAY, commit_info={"job": "known"})

    assert os.path.exists(marker) and added == 0
    assert (version, delta.table_version(uri)) == (0, 1)
    assert _rows(r.asDict() for r in vocabulary.collect()) == {("tag", "t1", 2), ("tag", "t2", 3)}
    vocabulary.unpersist()


def test_the_job_that_writes_fields_last_keeps_the_sizes_of_every_append(spark, tmp_path):
    """Nights of two dates at once: A appends t3, B then appends t4 and writes fields; A writes
    fields last. Its sizes must still cover t4, whose id B's user_features already carry."""
    vocabulary_uri, fields_uri = str(tmp_path / "vocabulary"), str(tmp_path / "fields")
    fields = [FieldDef("clicked_tags", "multi", "vocab", "events.click.tag", vocabulary=vocab.TAG, event_type="click"),
              FieldDef("city", "single", "vocab", "users.city", vocabulary="city")]
    values = lambda *rows: spark.createDataFrame(list(rows), vocab.VALUES_SCHEMA)  # noqa: E731
    a, *_ = update_vocabulary(spark, vocabulary_uri, values(("tag", "t1"), ("tag", "t3"), ("city", "paris")),
                             first_dt=DAY, commit_info={"job": "A"})
    b, *_ = update_vocabulary(spark, vocabulary_uri, values(("tag", "t4")), first_dt=DAY, commit_info={"job": "B"})
    write_fields(spark, fields, vocabulary_uri, fields_uri, commit_info={"job": "B"})
    version = write_fields(spark, fields, vocabulary_uri, fields_uri, commit_info={"job": "A"})
    assert version == 1
    # ids 0 missing, 1 unknown; tags t1 2, t3 3, t4 4; city paris 2
    assert [(f.name, f.vocab_size) for f in read_fields(fields_uri)] == [("city", 3), ("clicked_tags", 5)]
    a.unpersist()
    b.unpersist()
