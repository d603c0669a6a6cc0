import argparse
import datetime as dt

import pytest

from core.cli import iso_date, job_parser


def test_a_date_is_read_from_yyyy_mm_dd():
    assert iso_date("2026-11-12") == dt.date(2026, 11, 12)


@pytest.mark.parametrize("value", [
    "20261112", "2026W464", "2026-W46-4", "2026-11-12T00:00", "2026-11-1", "26-11-12", " 2026-11-12",
    "2026-11-12\n", "２０２６-１１-１２", "2026-02-30", "",
])
def test_other_date_spellings_are_refused(value):
    with pytest.raises(argparse.ArgumentTypeError, match=r"not a date YYYY-MM-DD"):
        iso_date(value)


def test_a_job_refuses_a_compact_date_with_a_usage_error(capsys):
    parser = job_parser("a job")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--date", "20261112"])
    assert exit_info.value.code == 2
    assert "not a date YYYY-MM-DD: '20261112'" in capsys.readouterr().err


@pytest.mark.parametrize(("conf_text", "overrides", "message"), [
    (None, [], "config file not found: {conf}"),
    ("paths: [unclosed\n", [], "{conf} is not valid YAML: while parsing a flow sequence"),
    ("paths: {raw: r, warehouse: w, models: m}\n", ["features.window_days=0"],
     "features.window_days must be in 1..3650, got 0"),
    ("paths: {raw: r, warehouse: w, models: m}\n", ["features.no_such_key=1"], "features.no_such_key"),
], ids=["missing_file", "bad_yaml", "bad_value", "unknown_key"])
def test_a_config_that_cannot_be_used_is_a_one_line_usage_error(tmp_path, capsys, conf_text, overrides, message):
    """Every job reads its config through parse_job_args: a bad one stops it like a bad argument
    (exit 2, the problem on the last line), not with a traceback."""
    from core.cli import parse_job_args

    conf = tmp_path / "c.yaml"
    if conf_text is not None:
        conf.write_text(conf_text)
    argv = ["--conf", str(conf), "--date", "2026-11-12", *[a for o in overrides for a in ("--set", o)]]
    with pytest.raises(SystemExit) as exit_info:
        parse_job_args(job_parser("a job"), argv)
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"{job_parser('a job').prog}: error: ")
    assert message.format(conf=conf) in last


def test_the_features_job_stops_on_a_bad_setting_before_spark_starts(tmp_path, capsys):
    from jobs.features import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--date", "2026-11-12", "--set", "features.window_days=0", "--set", f"paths.warehouse={tmp_path}/wh"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1].endswith("error: features.window_days must be in 1..3650, got 0")
    assert not (tmp_path / "wh").exists()
