"""Typed query parameters: parse the command line's text, render safe SQL literals per dialect.

A value never reaches SQL as raw text: dates, integers and floats are parsed and printed
back by Python, and strings become quoted literals escaped for the target dialect
(Spark SQL reads backslash escapes inside quotes, DuckDB doubles the quote).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal, Union

from analyst.sqltext import Dialect

ParamType = Literal["string", "objective", "tag", "int", "positive_int", "float", "date", "published_date"]
PARAM_TYPES: tuple[ParamType, ...] = ("string", "objective", "tag", "int", "positive_int", "float", "date",
                                      "published_date")
Value = Union[str, int, float, dt.date, None]

LATEST = "latest"  # a published_date default: the latest published date
PREVIOUS = "previous"  # a published_date default: the published date just before the `date` parameter
# The objectives the scoring job writes into user_tag_profiles, spelled as there (lower case).
OBJECTIVES = ("ctr", "cvr", "ctr_x_cvr")
_INT_RANGE = (-(2**63), 2**63 - 1)
# Counts, ranks and LIMITs: Spark requires an INT for LIMIT, so every engine takes at most 2**31 - 1.
_POSITIVE_INT_RANGE = (1, 2**31 - 1)
_NULL_TYPES = {
    "spark": {"string": "STRING", "objective": "STRING", "tag": "STRING", "int": "BIGINT", "positive_int": "BIGINT", "float": "DOUBLE",
              "date": "DATE", "published_date": "DATE"},
    "duckdb": {"string": "VARCHAR", "objective": "VARCHAR", "tag": "VARCHAR", "int": "BIGINT", "positive_int": "BIGINT", "float": "DOUBLE",
               "date": "DATE", "published_date": "DATE"},
}


class ParamError(ValueError):
    """A parameter is unknown, missing or has a value of the wrong type; the message names it."""


@dataclass(frozen=True)
class ParamSpec:
    """One `:name` of a named query. `default` is text as written in the query file, or None if required."""

    name: str
    type: ParamType
    default: str | None = None
    help: str = ""

    @property
    def required(self) -> bool:
        return self.default is None


def parse_value(spec: ParamSpec, text: str) -> Value:
    """The typed value of `text` for `spec` ('null' stands for SQL NULL where the default is null)."""
    if text == "null" and spec.default == "null":
        return None
    if spec.type in ("string", "tag"):  # a tag must also be known on the query's dates (query.prepare)
        return check_string(spec.name, text)
    if spec.type == "objective":
        return check_objective(spec, text)
    try:
        if spec.type in ("int", "positive_int"):
            value = int(text.strip())
            low, high = _POSITIVE_INT_RANGE if spec.type == "positive_int" else _INT_RANGE
            if not low <= value <= high:
                raise ValueError
            return value
        if spec.type == "float":
            value = float(text.strip())
            if not math.isfinite(value):
                raise ValueError
            return value
        return dt.date.fromisoformat(text.strip())
    except ValueError:
        wanted = {"int": "an integer", "positive_int": f"an integer from 1 to {_POSITIVE_INT_RANGE[1]}",
                  "float": "a finite number"}.get(spec.type, "a date YYYY-MM-DD")
        raise ParamError(f"parameter {spec.name}={text!r} must be {wanted}") from None


def check_string(name: str, text: str) -> str:
    bad = sorted({f"U+{ord(c):04X}" for c in text if ord(c) < 0x20 or ord(c) == 0x7F})
    if bad:
        raise ParamError(f"parameter {name} contains control characters ({', '.join(bad)})")
    return text


def check_objective(spec: ParamSpec, text: str) -> str:
    """`text` if it is one of `OBJECTIVES` or the parameter's own default (e.g. `all`), as written.

    No case folding: the profiles hold `ctr`, so `CTR` would match no row and count 0 users.
    """
    valid = [*OBJECTIVES, *([spec.default] if spec.default not in (None, "null", *OBJECTIVES) else [])]
    if text not in valid:
        raise ParamError(f"parameter {spec.name}={text!r} must be one of {', '.join(valid)}")
    return text


def render_literal(value: Value, type_: ParamType, dialect: Dialect) -> str:
    """`value` as a SQL literal of the dialect."""
    if value is None:
        return f"CAST(NULL AS {_NULL_TYPES[dialect][type_]})"
    if type_ in ("string", "objective", "tag"):
        if not isinstance(value, str):
            raise TypeError(f"a {type_} parameter needs a str, got {value!r}")
        return quote_string(value, dialect)
    if type_ in ("int", "positive_int"):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"an int parameter needs an int, got {value!r}")
        return str(value)
    if type_ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TypeError(f"a float parameter needs a finite number, got {value!r}")
        return f"CAST({float(value)!r} AS DOUBLE)"
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise TypeError(f"a date parameter needs a datetime.date, got {value!r}")
    return f"DATE '{value.isoformat()}'"


def quote_string(text: str, dialect: Dialect) -> str:
    """A single-quoted SQL string literal that reads back as exactly `text`."""
    check_string("string", text)
    if dialect == "spark":
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if dialect == "duckdb":
        return "'" + text.replace("'", "''") + "'"
    raise ValueError(f"dialect must be 'spark' or 'duckdb', got {dialect!r}")
