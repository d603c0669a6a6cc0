"""What a training run reads: the fields table at the version recorded for the run."""
import pyarrow as pa

from core import delta
from features.schema import FIELDS_SCHEMA, read_field_definitions, read_fields
from mvke.fields import FieldSpec


def _fields(city_vocab_size: int, city: str = "vocabulary city") -> pa.Table:
    return pa.table({"name": ["clicked_tags", "city"], "kind": ["multi", "single"], "encoding": ["vocab", "vocab"],
                     "source": ["events.click.tag", "users.city"],
                     "vocab_size": pa.array([6, city_vocab_size], pa.int32()),
                     "definition": ["vocabulary tag", city]}, schema=FIELDS_SCHEMA)


def test_fields_are_read_at_the_recorded_version_not_the_latest(tmp_path):
    """A feature job may rewrite `fields` after training recorded its version: the model must be built
    from the recorded one, like every other input table."""
    uri = str(tmp_path / "fields")
    delta.write_arrow(_fields(6), uri, mode="overwrite")
    recorded = delta.table_version(uri)
    delta.write_arrow(_fields(9, "bucket edges [1.0]"), uri, mode="overwrite")  # a later night's
    assert read_fields(uri, recorded) == [FieldSpec("city", "single", 6), FieldSpec("clicked_tags", "multi", 6)]
    assert read_fields(uri) == [FieldSpec("city", "single", 9), FieldSpec("clicked_tags", "multi", 6)]
    assert read_field_definitions(uri, recorded) == {"clicked_tags": "vocabulary tag", "city": "vocabulary city"}
    assert read_field_definitions(uri) == {"clicked_tags": "vocabulary tag", "city": "bucket edges [1.0]"}


def test_a_fields_table_written_before_definitions_has_none(tmp_path):
    uri = str(tmp_path / "fields")
    delta.write_arrow(_fields(6).drop(["definition"]), uri, mode="overwrite")
    assert read_field_definitions(uri) == {}
    assert read_fields(uri) == [FieldSpec("city", "single", 6), FieldSpec("clicked_tags", "multi", 6)]
