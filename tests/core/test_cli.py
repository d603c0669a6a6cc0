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
