"""The generate job end to end through spark-submit.sh."""
import subprocess
from pathlib import Path

import pytest

from core import delta
from core.config import Paths
from core.contract import SCHEMAS, read_raw
from core.tables import Raw, raw_uri

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
    counts = {table: read_raw(spark, paths, table).count() for table in SCHEMAS}
    assert counts[Raw.USERS] == 300 and counts[Raw.ITEMS] == 80 and counts[Raw.TAGS] == 20
    assert counts[Raw.EVENTS] > 300
    assert delta.read_table(spark, raw_uri(paths, Raw.GROUND_TRUTH)).count() == 300 * 20
