"""spark-submit.sh run from another directory: relative paths are the caller's, as with mvke-submit."""
import datetime as dt
import subprocess
from pathlib import Path

import pyarrow as pa

from core import delta

ROOT = Path(__file__).resolve().parents[2]


def test_relative_conf_and_paths_resolve_against_the_callers_directory(tmp_path):
    caller = tmp_path / "oncall"
    table = caller / "wh" / "user_tag_profiles"
    delta.write_arrow(pa.table({"dt": [dt.date(2026, 11, 4)], "user_id": ["u0"]}), str(table), mode="overwrite")
    (table / "orphan.parquet").write_bytes(b"left by a dead writer")
    (caller / "conf.yaml").write_text("paths:\n  raw: r\n  warehouse: not-this-one\n  models: m\n")
    done = subprocess.run([str(ROOT / "spark-submit.sh"), "vacuum", "--conf", "conf.yaml",
                           "--set", "paths.warehouse=wh", "--dry-run", "--retention-hours", "0", "--master", "local[1]"],
                          cwd=caller, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"[vacuum] {table}: 1 file(s) would be removed" in done.stdout, done.stdout  # resolved where it ran
    assert (table / "orphan.parquet").exists()
    assert not (ROOT / "wh").exists() and not (ROOT / "not-this-one").exists()


def test_submits_started_together_each_ship_a_whole_code_archive(tmp_path):
    """They shared one temporary file: all but one failed to rename it, or shipped a zip two wrote into."""
    import zipfile
    from concurrent.futures import ThreadPoolExecutor

    from core.submit import PACKAGES, code_archive

    target = tmp_path / "build" / "mvke_code.zip"
    with ThreadPoolExecutor(4) as pool:
        built = list(pool.map(lambda _: code_archive(target), range(4)))
    assert built == [target] * 4
    expected = sorted(path.relative_to(ROOT).as_posix()
                      for package in PACKAGES for path in (ROOT / package).rglob("*.py"))
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None
        assert sorted(archive.namelist()) == expected
    assert [p.name for p in target.parent.iterdir()] == ["mvke_code.zip"]
