"""What scoring reads on the driver: the tags of one date."""
from __future__ import annotations

import glob
import os

import pyarrow as pa
import pytest

from core.tables import Warehouse
from scoring.inputs import ScoringInputError, read_tags
from tests.scoring.warehouse import D1, D2, make_tags


def _expected(tags: list[dict]) -> pa.Table:
    rows = sorted(tags, key=lambda t: t["tag_index"])
    return pa.table({"tag_id": pa.array([t["tag_id"] for t in rows], pa.string()),
                     "tag_index": pa.array([t["tag_index"] for t in rows], pa.int32()),
                     "category_id": pa.array([t["category_id"] for t in rows], pa.int32())})


def test_read_tags_reads_the_files_of_its_date_only(world):
    # The tags table gains a partition a day: reading all of them on the driver to keep one grows
    # without bound. Tonight's tags must come from tonight's files alone.
    d1 = make_tags()[::-1]
    d2 = [{**t, "category_id": 3} for t in make_tags()[:4]]
    world.write_tags(D1, d1)
    world.write_tags(D2, d2)
    assert read_tags(world.paths, D2).equals(_expected(d2))
    other_day = glob.glob(os.path.join(world.uri(Warehouse.TAGS), f"dt={D2.isoformat()}", "*.parquet"))
    assert other_day
    for path in other_day:
        os.remove(path)
    assert read_tags(world.paths, D1).equals(_expected(d1))


def test_read_tags_names_the_date_it_has_no_tags_for(world):
    with pytest.raises(ScoringInputError, match=f"no tags for dt={D1.isoformat()}: there is no tags table at "):
        read_tags(world.paths, D1)
    world.write_tags(D1, make_tags())
    with pytest.raises(ScoringInputError, match=f"no tags for dt={D2.isoformat()} in "):
        read_tags(world.paths, D2)
