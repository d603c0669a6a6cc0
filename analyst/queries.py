"""Named queries: `conf/queries/<name>.sql`, with typed `:param` placeholders declared in the header.

A query file starts with comment lines: a description, then one line per parameter,

    -- :tag        tag                   a tag id known on the query's dates, e.g. t12
    -- :objective  objective = ctr       one of ctr, cvr, ctr_x_cvr (or its default, e.g. all)
    -- :date       published_date = latest
    -- :previous_date published_date = previous   the published date before :date
    -- :max_rank   int = 5               counts a user when rank <= max_rank
    -- :min_score  float = null          optional; null leaves the condition out

Types: string; objective (ctr, cvr, ctr_x_cvr, or the parameter's own default such as all);
tag (a tag id, which `analyst.query.prepare` refuses unless the profiles or the tags table of
one of the query's published dates hold it); int; positive_int (>= 1: a rank, a count, a limit);
float; date; published_date (one of the
dates of user_tag_profiles). A parameter without `= default` is required. Every placeholder of the SQL must be declared
and every declared parameter used. The SQL is written in the common subset of Spark SQL
and DuckDB SQL, so one file runs on both engines.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from analyst.catalog import resolve_published_date
from analyst.params import LATEST, PARAM_TYPES, PREVIOUS, ParamError, ParamSpec, Value, parse_value, render_literal
from analyst.sqltext import Dialect, placeholders, substitute

QUERIES_DIR = Path(__file__).resolve().parent.parent / "conf" / "queries"
_PARAM_LINE = re.compile(r"^--\s*:([A-Za-z_]\w*)\s+(\w+)(?:\s*=\s*(\S+))?\s*(.*)$")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# The one parameter an ad-hoc --query may use: the --date of the command line.
DATE_PARAM = ParamSpec("date", "published_date", LATEST, "a published date (default: the latest)")


@dataclass(frozen=True)
class NamedQuery:
    name: str
    description: str
    params: tuple[ParamSpec, ...]
    sql: str

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)


def list_queries(folder: Path = QUERIES_DIR) -> list[str]:
    return sorted(p.stem for p in Path(folder).glob("*.sql"))


def load_query(name: str, folder: Path = QUERIES_DIR) -> NamedQuery:
    if not _NAME.match(name):
        raise ParamError(f"query names are lower-case words, got {name!r}")
    path = Path(folder) / f"{name}.sql"
    if not path.is_file():
        raise ParamError(f"no named query {name!r}; available: {', '.join(list_queries(folder)) or 'none'}")
    return parse_query(name, path.read_text())


def parse_query(name: str, text: str) -> NamedQuery:
    """Read the header of a query file and check it against the placeholders of its SQL."""
    description: list[str] = []
    params: list[ParamSpec] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped.startswith("--"):
            break
        match = _PARAM_LINE.match(stripped)
        if match:
            pname, ptype, default, help_text = match.groups()
            if ptype not in PARAM_TYPES:
                raise ParamError(f"query {name}: parameter {pname} has type {ptype!r}; valid: {', '.join(PARAM_TYPES)}")
            if any(p.name == pname for p in params):
                raise ParamError(f"query {name}: parameter {pname} is declared twice")
            spec = ParamSpec(pname, ptype, default, help_text.strip())
            if default in (LATEST, PREVIOUS) and ptype != "published_date":
                raise ParamError(f"query {name}: default {default!r} of {pname} needs type published_date")
            if default == PREVIOUS and not any(p.name == "date" and p.type == "published_date" for p in params):
                raise ParamError(f"query {name}: {pname} = previous needs a published_date :date declared before it")
            if default not in (None, "null", LATEST, PREVIOUS):
                parse_value(spec, default)
            params.append(spec)
        elif not params:
            description.append(stripped.lstrip("-").strip())
    tags = [p.name for p in params if p.type == "tag"]
    if tags and not any(p.name == "date" and p.type == "published_date" for p in params):
        raise ParamError(f"query {name}: tag parameter(s) {', '.join(tags)} need a published_date :date "
                         "(a tag is checked against the tags of the query's dates)")
    declared = [p.name for p in params]
    used = placeholders(text, "duckdb")
    if sorted(used) != sorted(declared):
        raise ParamError(f"query {name}: placeholders {sorted(used)} do not match the declared parameters "
                         f"{sorted(declared)}")
    return NamedQuery(name, " ".join(d for d in description if d), tuple(params), text)


def parse_assignments(items: Sequence[str]) -> dict[str, str]:
    """`["tag=t12", "max_rank=5"]` -> `{"tag": "t12", "max_rank": "5"}`; a name given twice is an error."""
    values: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParamError(f"--param needs NAME=VALUE, got {item!r}")
        if name in values:
            raise ParamError(f"parameter {name} is given twice")
        values[name] = value
    return values


def bind(query_name: str, specs: Sequence[ParamSpec], given: Mapping[str, str],
         published: Sequence[dt.date]) -> dict[str, Value]:
    """Typed values for every parameter: the given text, else the default.

    Unknown and missing parameters are errors that list the valid ones. A published_date
    must be one of `published` (the dates of user_tag_profiles); `latest` is the last one,
    `previous` the one before the `date` parameter (NULL if there is none). A parameter whose
    default is `previous` must be before `date` when given.
    """
    names = [s.name for s in specs]
    unknown = sorted(set(given) - set(names))
    if unknown:
        raise ParamError(f"unknown parameter(s) {', '.join(unknown)} for {query_name}; "
                         f"its parameters: {describe_params(specs)}")
    missing = [s for s in specs if s.required and s.name not in given]
    if missing:
        raise ParamError(f"missing parameter(s) {', '.join(s.name for s in missing)} for {query_name} "
                         f"(pass --param NAME=VALUE); its parameters: {describe_params(specs)}")
    values: dict[str, Value] = {}
    for spec in specs:
        text = given.get(spec.name, spec.default)
        if spec.type == "published_date" and text == PREVIOUS:
            if "date" not in values:  # `date` itself, or a date before it is bound
                raise ParamError(f"{spec.name}={PREVIOUS} means the date before the date parameter, which "
                                 f"{spec.name} cannot be; give a published date or {LATEST}")
            earlier = [d for d in published if d < values["date"]]
            values[spec.name] = max(earlier) if earlier else None
        elif spec.type == "published_date":
            date = None if text == LATEST else parse_value(spec, text)
            values[spec.name] = resolve_published_date(date, published)
            if spec.default == PREVIOUS:
                _check_before_date(spec.name, values[spec.name], values["date"])
        else:
            values[spec.name] = parse_value(spec, text)
    return values


def _check_before_date(name: str, earlier: dt.date, date: dt.date) -> None:
    """A date to compare `date` with (default `previous`) must come before it: on or after it, a
    change query would compare a day with itself or run backwards, and print that as a result."""
    if earlier >= date:
        raise ParamError(f"parameter {name}={earlier.isoformat()} must be before date={date.isoformat()}")


def render(sql: str, specs: Sequence[ParamSpec], values: Mapping[str, Value], dialect: Dialect) -> str:
    """`sql` with each placeholder replaced by the literal of its typed value."""
    literals = {s.name: render_literal(values[s.name], s.type, dialect) for s in specs}
    try:
        return substitute(sql, literals, dialect)
    except KeyError as exc:
        raise ParamError(f"the query uses :{exc.args[0]}, which is not a parameter; "
                         f"valid: {', '.join(literals) or 'none'} (a colon right before a name is a parameter: "
                         f"write a slice or a struct with a space after the colon, x[1: n], {{'k': n}})") from None


def describe_params(specs: Sequence[ParamSpec]) -> str:
    if not specs:
        return "none"
    return ", ".join(f"{s.name} ({s.type}{'' if s.required else ', default ' + s.default})" for s in specs)
