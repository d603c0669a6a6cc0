"""Run a read-only SQL query over the warehouse tables, on DuckDB (no Spark) or on Spark.

    python -m analyst.query [--conf F] [--set k=v ...] [--date D]
        (--query "SELECT ..." | --name NAME [--param NAME=VALUE ...] | --list)
        [--engine duckdb|spark] [--output out.csv|out.parquet] [--max-rows N] [--show-sql]

`spark-submit.sh sql` takes the same arguments (its default engine is spark). The result
is printed as a table, or written to CSV/Parquet. See docs/analyst.md.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from typing import Sequence

from analyst.catalog import (TableInfo, check_known_tags, check_scored_objectives, published_dates,
                             warehouse_tables)
from analyst.engine import ENGINES, EngineName, engine_error_status, open_engine
from analyst.output import check_outside_pipeline, format_table, output_format, write_atomically
from analyst.params import OBJECTIVES, ParamError, ParamSpec, Value
from analyst.queries import DATE_PARAM, bind, describe_params, list_queries, load_query, parse_assignments, render
from analyst.sqltext import Dialect, ReadOnlyError, check_read_only, placeholders, words
from core.cli import iso_date, job_parser, parse_job_args
from core.config import Config, Paths
from core.tables import Warehouse


@dataclass(frozen=True)
class PreparedQuery:
    """SQL ready for one engine: parameters bound and rendered, read-only checked.

    `tables` are the table versions the parameters were bound against (the published dates);
    run the SQL on an engine over those same versions (`open_engine(..., prepared.tables)`).
    """

    label: str
    sql: str
    values: dict[str, Value]
    tables: tuple[TableInfo, ...]


def build_parser(prog: str, default_engine: EngineName) -> argparse.ArgumentParser:
    parser = job_parser("Run one read-only SQL query over the warehouse tables and print or save the result.",
                        needs_date=False)
    parser.prog = prog
    parser.add_argument("--date", type=iso_date, default=None,
                        help="the :date of the query: a published date (default: the latest)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--query", help='the SQL: one SELECT or WITH query; may use :date')
    what.add_argument("--name", help="a named query of conf/queries (see --list)")
    what.add_argument("--list", action="store_true", help="list the named queries and their parameters")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="a parameter of the named query (repeatable)")
    parser.add_argument("--engine", choices=ENGINES, default=default_engine,
                        help=f"duckdb: no Spark at all; spark: a Spark session (default {default_engine})")
    parser.add_argument("--output", help="write the result to this .csv or .parquet file instead of printing it")
    parser.add_argument("--max-rows", type=_row_count, default=100, help="rows to print (default 100)")
    parser.add_argument("--show-sql", action="store_true", help="print the SQL that runs (to stderr)")
    return parser


def _row_count(value: str) -> int:
    """--max-rows: a whole number >= 0 (0 prints the row count alone)."""
    try:
        rows = int(value)
    except ValueError:
        rows = -1
    if rows < 0:
        raise argparse.ArgumentTypeError(f"not a row count (a whole number >= 0): {value!r}")
    return rows


def prepare(paths: Paths, dialect: Dialect, *, query: str | None = None, name: str | None = None,
            params: Sequence[str] = (), date: str | None = None,
            tables: Sequence[TableInfo] | None = None) -> PreparedQuery:
    """Bind and render an ad-hoc `query` or the named query `name`; refuse anything but one SELECT/WITH.

    `tables` (default: `warehouse_tables(paths)`, read once) pins the versions the published
    dates come from; pass the engine's `tables` to bind against what the engine reads.
    """
    tables = tuple(warehouse_tables(paths) if tables is None else tables)
    given = parse_assignments(params)
    if name is not None:
        named = load_query(name)
        specs: Sequence[ParamSpec] = named.params
        template, label = named.sql, name
        if date is not None:
            if named.param("date") is None:
                raise ParamError(f"{name} has no date parameter; its parameters: {describe_params(specs)}")
            if "date" in given:
                raise ParamError("give the date once: --date or --param date=..., not both")
            given["date"] = date
        _check_tables_exist(paths, name, template, tables)
    else:
        if query is None:
            raise ParamError("give --query or --name")
        if given:
            raise ParamError("--param goes with --name; write the values into --query (only :date is filled in)")
        template, label = query, "query"
        specs = [DATE_PARAM] if "date" in placeholders(query, dialect) else []
        if date is not None:
            if not specs:
                raise ParamError("--date needs a :date placeholder in --query, e.g. WHERE dt = :date")
            given["date"] = date
    needs_dates = any(s.type == "published_date" for s in specs)
    values = bind(label, specs, given, published_dates(tables) if needs_dates else [])
    _check_tags_known(specs, values, tables)
    _check_objectives_scored(specs, values, tables)
    sql = render(template, specs, values, dialect)
    check_read_only(sql, dialect)
    return PreparedQuery(label, sql, values, tables)


def main(argv: list[str] | None = None, *, default_engine: EngineName = "duckdb",
         prog: str = "python -m analyst.query") -> int:
    args, config = parse_job_args(build_parser(prog, default_engine), argv)
    if args.list:
        print(describe_queries())
        return 0
    try:
        if args.output:
            output_format(args.output)
            check_outside_pipeline(args.output, config.paths)
        prepared = prepare(config.paths, args.engine, query=args.query, name=args.name, params=args.param,
                           date=args.date.isoformat() if args.date else None)
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the engine's own message: a data file of a table gone
        return engine_error_status(exc, prog)
    settings = ", ".join(f"{k}={'NULL' if v is None else v}" for k, v in prepared.values.items())
    print(f"-- {prepared.label} on {args.engine}" + (f": {settings}" if settings else ""), file=sys.stderr)
    if args.show_sql:
        print(prepared.sql, file=sys.stderr)
    return _run(config, args.engine, prepared, args.output, args.max_rows, prog)


def describe_queries() -> str:
    lines = []
    for name in list_queries():
        query = load_query(name)
        lines.append(f"{name}: {query.description}")
        for spec in query.params:
            default = "required" if spec.required else f"default {spec.default}"
            lines.append(f"    --param {spec.name}=...  {spec.type}, {default}. {spec.help}".rstrip())
    return "\n".join(lines)


def _run(config: Config, engine_name: EngineName, prepared: PreparedQuery, output: str | None,
         max_rows: int, prog: str) -> int:
    try:
        with open_engine(engine_name, config, prepared.tables) as engine:
            result = engine.run(prepared.sql)
    except ReadOnlyError as exc:  # Spark's own parser refused what the text check let through
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the engine's own message: a SQL error, a missing table or column
        return engine_error_status(exc, prog)
    if output:
        try:
            path = write_atomically(result, output)
        except ValueError as exc:  # a result the format cannot hold
            print(f"{prog}: error: {exc}", file=sys.stderr)
            return 2
        print(f"wrote {result.num_rows} rows to {path}")
    else:
        print(format_table(result, max_rows))
    return 0


def _check_tags_known(specs: Sequence[ParamSpec], values: dict[str, Value], tables: Sequence[TableInfo]) -> None:
    """Each tag parameter given must be known on one of the query's published dates (its profiles or tags rows):
    an unknown tag is an error naming it, not an audience of 0."""
    tags = [values[s.name] for s in specs if s.type == "tag" and values[s.name] is not None]
    dates = [values[s.name] for s in specs if s.type == "published_date" and values[s.name] is not None]
    if tags:
        check_known_tags(tables, tags, dates)


def _check_objectives_scored(specs: Sequence[ParamSpec], values: dict[str, Value],
                             tables: Sequence[TableInfo]) -> None:
    """Each objective parameter given (not a default such as `all`) must have profiles on every
    published date of the query: ctr_x_cvr of a date scored without it is an error, not an
    audience of 0."""
    objectives = [values[s.name] for s in specs if s.type == "objective" and values[s.name] in OBJECTIVES]
    dates = [values[s.name] for s in specs if s.type == "published_date" and values[s.name] is not None]
    if objectives and dates:
        check_scored_objectives(tables, objectives, dates)


def _check_tables_exist(paths: Paths, name: str, sql: str, tables: Sequence[TableInfo]) -> None:
    needed = sorted(words(sql, "duckdb") & {t.value for t in Warehouse})
    present = {t.name for t in tables}
    missing = [t for t in needed if t not in present]
    if missing:
        raise ParamError(f"{name} reads {', '.join(missing)}, which the warehouse {paths.warehouse} does not "
                         f"have yet (present: {', '.join(sorted(present)) or 'none'})")


if __name__ == "__main__":
    raise SystemExit(main())
