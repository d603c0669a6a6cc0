import dataclasses
import datetime as dt
import json
import os
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake.transaction import AddAction

from core import delta
from core.config import config_from_dict
from core.tables import Warehouse, warehouse_uri
from jobs import vacuum
from nightly.lock import RunInProgressError, date_lock, exclusive, held_locks

NIGHT = dt.date(2026, 11, 5)
SCHEMA = pa.schema([("dt", pa.date32()), ("user_id", pa.string()), ("score", pa.float64())])


@pytest.fixture
def world(tmp_path):
    """A published profiles table, and a scoring write in flight: its file written 2 hours ago, not committed."""
    config = config_from_dict({"paths": {"raw": f"{tmp_path}/raw", "warehouse": f"{tmp_path}/wh",
                                         "models": f"{tmp_path}/models"}})
    uri = warehouse_uri(config.paths, Warehouse.USER_TAG_PROFILES)
    delta.write_arrow(pa.table({"dt": [dt.date(2026, 11, 4)], "user_id": ["u0"], "score": [0.1]}, schema=SCHEMA),
                      uri, mode="overwrite", partition_by=["dt"])
    in_flight = f"dt={NIGHT.isoformat()}/part-in-flight.parquet"
    os.makedirs(f"{uri}/dt={NIGHT.isoformat()}")
    pq.write_table(pa.table({"user_id": ["u1"], "score": [0.5]}), f"{uri}/{in_flight}")
    two_hours_ago = time.time() - 2 * 3600
    os.utime(f"{uri}/{in_flight}", (two_hours_ago, two_hours_ago))
    conf = tmp_path / "conf.yaml"
    conf.write_text(json.dumps({"paths": dataclasses.asdict(config.paths)}))  # JSON is YAML
    return config, str(conf), uri, in_flight


def _commit(uri, path):
    add = AddAction(path=path, size=os.path.getsize(f"{uri}/{path}"), partition_values={"dt": NIGHT.isoformat()},
                    modification_time=int(time.time() * 1000), data_change=True,
                    stats=json.dumps({"numRecords": 1}))
    delta.commit(uri, [add], SCHEMA, mode="overwrite", partition_by=["dt"], replace_partitions=[NIGHT.isoformat()])


def test_the_default_vacuum_keeps_a_write_in_flight_which_then_commits_and_reads(world):
    config, conf, uri, in_flight = world
    vacuum.run(config)
    assert os.path.exists(f"{uri}/{in_flight}")
    _commit(uri, in_flight)
    assert sorted(delta.read_arrow(uri).column("user_id").to_pylist()) == ["u0", "u1"]


@pytest.mark.parametrize("hours", [0, 1, 23])
def test_a_window_below_the_floor_is_refused_without_the_override(world, hours, capsys):
    config, conf, uri, in_flight = world
    with pytest.raises(ValueError, match=rf"retention of {hours} h is below the 24 h floor.*--force-retention"):
        vacuum.run(config, retention_hours=hours)
    with pytest.raises(SystemExit) as exit_info:
        vacuum.main(["--conf", conf, "--retention-hours", str(hours)])
    assert exit_info.value.code == 2 and "below the 24 h floor" in capsys.readouterr().err
    assert os.path.exists(f"{uri}/{in_flight}")


def test_the_override_goes_below_the_floor(world):
    config, conf, uri, in_flight = world
    assert vacuum.run(config, retention_hours=1, dry_run=True) == {uri: 1}  # a dry run deletes nothing
    assert os.path.exists(f"{uri}/{in_flight}")
    assert vacuum.run(config, retention_hours=1, force_retention=True) == {uri: 1}
    assert not os.path.exists(f"{uri}/{in_flight}")


def test_vacuum_refuses_while_a_nightly_lock_is_held(world, capsys):
    config, conf, uri, in_flight = world
    with exclusive(config.paths, date_lock(NIGHT), "run-scoring"):
        lock_file = f"{config.paths.locks_root}/nightly-{NIGHT.isoformat()}.lock"
        assert list(held_locks(config.paths)) == [lock_file]
        with pytest.raises(RunInProgressError, match=rf"nothing vacuumed: .*{lock_file} is held by run run-scoring"):
            vacuum.run(config, retention_hours=1, force_retention=True)
        assert vacuum.main(["--conf", conf, "--retention-hours", "1", "--force-retention"]) == 3
        assert "[vacuum] nothing vacuumed" in capsys.readouterr().err
        assert os.path.exists(f"{uri}/{in_flight}")
    assert held_locks(config.paths) == {}  # released; the lock file itself stays
    assert os.path.exists(lock_file)
    assert vacuum.run(config) == {uri: 0}

