"""The argument shape every job shares: --conf, --date, --set key=value."""
from __future__ import annotations

import argparse
import datetime as dt
import re
from pathlib import Path

import yaml

from core.config import Config, ConfigError, load_config

DEFAULT_CONF = Path(__file__).resolve().parent.parent / "conf" / "local.yaml"
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def iso_date(value: str) -> dt.date:
    """A calendar date written exactly YYYY-MM-DD (not 20261112, 2026-W46-4 or other ISO forms)."""
    try:
        if not _ISO_DAY.fullmatch(value):
            raise ValueError(value)
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {value!r}") from None


def job_parser(description: str, *, needs_date: bool = True) -> argparse.ArgumentParser:
    # no abbreviations: spark-submit.sh reads --conf and --set by their full names too (core/submit.py)
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    parser.add_argument("--conf", default=str(DEFAULT_CONF), help="YAML config (default conf/local.yaml)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set train.num_proc=2 (repeatable)")
    if needs_date:
        parser.add_argument("--date", type=iso_date, required=True, help="the run date YYYY-MM-DD")
    return parser


def parse_job_args(parser: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, Config]:
    """The job's arguments and its validated config. A config that cannot be used (file missing,
    YAML that does not parse, an unknown key, a bad value) is a usage error like a bad argument:
    one line naming the problem, exit status 2, before any Spark or data is touched."""
    args = parser.parse_args(argv)
    try:
        return args, load_config(args.conf, args.overrides)
    except ConfigError as exc:
        parser.error(str(exc))
    except yaml.YAMLError as exc:
        parser.error(f"{args.conf} is not valid YAML: {' '.join(str(exc).split())}")
