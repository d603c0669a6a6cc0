"""The generate job end to end through spark-submit.sh."""
import subprocess
from pathlib import Path

import pytest
from pyspark.testing import assertDataFrameEqual

from core import delta
from core.config import Paths, load_config
from core.contract import SCHEMAS, read_raw
from core.tables import Raw, raw_uri
from synthetic import build_world, raw_frames

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_spark_submit_generate_writes_contract_tables(spark, tmp_path):
    raw = tmp_path / "raw"
    settings = [f"paths.raw={raw}", "generate.users=300", "generate.items=80", "generate.tags=20",
                "generate.days=3", "generate.block_users=100", "generate.partitions=2"]
    command = [str(ROOT / "spark-submit.sh"), "generate", *(a for s in settings for a in ("--set", s)),
               "--master", "local[2]"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "ground_truth" in done.stdout and "6,000 rows" in done.stdout, done.stdout
    paths = Paths(raw=str(raw), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))
    # the settings reached the job: its tables are the world of the same conf, drawn in this process
    # (the in-process generator is checked against its rules in test_synthetic_tables.py)
    expected = raw_frames(spark, build_world(load_config(ROOT / "conf" / "local.yaml", settings).generate))
    for table in SCHEMAS:
        assertDataFrameEqual(read_raw(spark, paths, table), expected[table])
    assertDataFrameEqual(delta.read_table(spark, raw_uri(paths, Raw.GROUND_TRUTH)), expected[Raw.GROUND_TRUTH])
    assert expected[Raw.USERS].count() == 300 and expected[Raw.GROUND_TRUTH].count() == 300 * 20
