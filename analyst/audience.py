"""Export an audience for ad targeting: the users whose published profile holds any of some tags.

    python -m analyst.audience [--conf F] [--set k=v ...] [--date D] --tags t1,t2 [--objective ctr]
        [--max-rank N] [--min-score S] --output audience.csv|audience.parquet [--engine duckdb|spark]

`spark-submit.sh audience` takes the same arguments (its default engine is spark).

One row per distinct user: the qualifying tag with the best rank (then the higher score,
then the smaller tag id; a missing rank or score counts as the worst), its rank and score,
and how many of the requested tags qualified the user. A tag qualifies a user on date D when the profile of D for the objective holds it
at rank <= max_rank and with score >= min_score (each condition only when given). The file
is written to a temporary name and renamed, so a reader never sees a partial audience.
"""
from __future__ import annotations

import argparse
import datetime as dt
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from analyst.catalog import (UnknownTagError, published_dates, resolve_published_date, unknown_tags_message,
                             warehouse_tables)
from analyst.engine import ENGINES, Engine, EngineName, engine_error_status, open_engine
from analyst.output import check_outside_pipeline, output_format, write_atomically
from analyst.params import check_string, quote_string, render_literal
from analyst.sqltext import Dialect
from core.cli import iso_date, job_parser, parse_job_args

EXPORT_COLUMNS = ("user_id", "tag_id", "rank", "score", "matched_tags")


@dataclass(frozen=True)
class AudienceSpec:
    tags: tuple[str, ...]
    objective: str = "ctr"
    date: dt.date | None = None
    max_rank: int | None = None
    min_score: float | None = None

    def validate(self) -> None:
        if not self.tags:
            raise ValueError("give at least one tag (--tags t1,t2)")
        if any(not t.strip() for t in self.tags):
            raise ValueError(f"tag ids must not be empty: {list(self.tags)}")
        duplicates = sorted({t for t in self.tags if self.tags.count(t) > 1})
        if duplicates:
            raise ValueError(f"tags given twice: {', '.join(duplicates)}")
        for tag in self.tags:
            check_string("tags", tag)
        check_string("objective", self.objective)
        if self.max_rank is not None and self.max_rank < 1:
            raise ValueError(f"max_rank must be >= 1, got {self.max_rank}")
        if self.min_score is not None and not math.isfinite(self.min_score):
            raise ValueError(f"min_score must be a finite number, got {self.min_score}")

    def describe(self, date: dt.date) -> str:
        rules = [f"objective {self.objective}"]
        if self.max_rank is not None:
            rules.append(f"rank <= {self.max_rank}")
        if self.min_score is not None:
            rules.append(f"score >= {self.min_score!r}")  # as given: :g would round it
        return f"audience of {date.isoformat()} ({', '.join(rules)})"


@dataclass(frozen=True)
class AudienceSummary:
    date: dt.date
    users: int
    per_tag: dict[str, int]
    output: Path


def export_audience(engine: Engine, spec: AudienceSpec, output: str | Path,
                    published: Sequence[dt.date] | None = None) -> AudienceSummary:
    """Write the audience of `spec` to `output` (CSV or Parquet by extension) atomically; return the counts.

    `published` (default: the published dates of the versions the engine reads) are the dates
    `spec.date` must be one of. An `output` inside the engine's warehouse, staging, raw or models
    folder is refused (`check_outside_pipeline`): it could replace a table's live data file.
    """
    spec.validate()
    output_format(output)
    check_outside_pipeline(output, engine.paths)
    date = resolve_published_date(spec.date, published_dates(engine.tables) if published is None else published)
    check_tags(engine, spec, date)
    dialect = engine.dialect
    counts = engine.run(tag_counts_sql(spec, date, dialect)).to_pylist()
    per_tag = {tag: 0 for tag in spec.tags}
    per_tag.update({row["tag_id"]: row["users"] for row in counts})
    audience = engine.run(audience_sql(spec, date, dialect))
    path = write_atomically(audience, output)
    return AudienceSummary(date, audience.num_rows, per_tag, path)


def check_tags(engine: Engine, spec: AudienceSpec, date: dt.date) -> None:
    """The objective must have profiles on `date`; every tag must be known on `date` (its profiles or its tags).

    A tag only the tags table of another date knows (a retired or not yet created tag) is unknown:
    the profiles of `date` cannot hold it, so its audience would be empty without a word.
    """
    day = render_literal(date, "date", engine.dialect)
    rows = engine.run(f"SELECT DISTINCT objective, tag_id FROM user_tag_profiles WHERE dt = {day}").to_pylist()
    objectives = sorted({r["objective"] for r in rows})
    if spec.objective not in objectives:
        raise ValueError(f"objective {spec.objective!r} has no profiles on {date.isoformat()}; "
                         f"objectives: {', '.join(objectives) or 'none'}")
    known = {r["tag_id"] for r in rows}
    if any(t.name == "tags" for t in engine.tables):
        known |= {r["tag_id"] for r in engine.run(f"SELECT DISTINCT tag_id FROM tags WHERE dt = {day}").to_pylist()}
    unknown = [t for t in spec.tags if t not in known]
    if unknown:
        raise UnknownTagError(unknown_tags_message(unknown, known, [date]))


def _qualified_sql(spec: AudienceSpec, date: dt.date, dialect: Dialect) -> str:
    tags = ", ".join(quote_string(t, dialect) for t in spec.tags)
    conditions = [f"dt = {render_literal(date, 'date', dialect)}",
                  f"objective = {quote_string(spec.objective, dialect)}",
                  f"tag_id IN ({tags})"]
    if spec.max_rank is not None:
        conditions.append(f"rank <= {render_literal(spec.max_rank, 'int', dialect)}")
    if spec.min_score is not None:
        conditions.append(f"score >= {render_literal(spec.min_score, 'float', dialect)}")
    return "SELECT user_id, tag_id, rank, score FROM user_tag_profiles WHERE " + " AND ".join(conditions)


def tag_counts_sql(spec: AudienceSpec, date: dt.date, dialect: Dialect) -> str:
    """Distinct qualifying users per requested tag."""
    return (f"WITH qualified AS ({_qualified_sql(spec, date, dialect)}) "
            "SELECT tag_id, COUNT(DISTINCT user_id) AS users FROM qualified GROUP BY tag_id")


def audience_sql(spec: AudienceSpec, date: dt.date, dialect: Dialect) -> str:
    """One row per qualifying user: the best qualifying tag, its rank and score, and the number of tags matched.

    matched_tags counts distinct tags, so a (user, objective, tag) row written twice for a date
    counts once. Spark has no COUNT(DISTINCT ...) OVER, hence the GROUP BY joined back. NULLs sort
    last, said outright: by default Spark puts an ascending NULL first and DuckDB last, so a
    tag without a rank would be one engine's best tag and the other's worst.
    """
    return (
        f"WITH qualified AS ({_qualified_sql(spec, date, dialect)}), "
        "ranked AS (SELECT user_id, tag_id, rank, score, "
        "ROW_NUMBER() OVER (PARTITION BY user_id ORDER BY rank NULLS LAST, score DESC NULLS LAST, tag_id) AS pick "
        "FROM qualified), "
        "matched AS (SELECT user_id, COUNT(DISTINCT tag_id) AS matched_tags FROM qualified GROUP BY user_id), "
        "best AS (SELECT user_id, tag_id, rank, score FROM ranked WHERE pick = 1) "
        f"SELECT {', '.join(EXPORT_COLUMNS)} FROM best JOIN matched USING (user_id) ORDER BY user_id NULLS LAST"
    )


def build_parser(prog: str, default_engine: EngineName) -> argparse.ArgumentParser:
    parser = job_parser("Export the user ids of an audience (users whose profile holds any of the tags).",
                        needs_date=False)
    parser.prog = prog
    parser.add_argument("--date", type=iso_date, default=None, help="a published date (default: the latest)")
    parser.add_argument("--tags", required=True, help="comma-separated tag ids, e.g. t1,t2")
    parser.add_argument("--objective", default="ctr", help="ctr, cvr or ctr_x_cvr (default ctr)")
    parser.add_argument("--max-rank", type=int, default=None, help="qualify when the tag's rank <= N")
    parser.add_argument("--min-score", type=float, default=None, help="qualify when the tag's score >= S")
    parser.add_argument("--output", required=True, help="the .csv or .parquet file to write")
    parser.add_argument("--engine", choices=ENGINES, default=default_engine,
                        help=f"duckdb: no Spark at all; spark: a Spark session (default {default_engine})")
    return parser


def main(argv: list[str] | None = None, *, default_engine: EngineName = "duckdb",
         prog: str = "python -m analyst.audience") -> int:
    args, config = parse_job_args(build_parser(prog, default_engine), argv)
    spec = AudienceSpec(tags=tuple(t.strip() for t in args.tags.split(",") if t.strip()),
                        objective=args.objective, date=args.date, max_rank=args.max_rank,
                        min_score=args.min_score)
    try:
        spec.validate()
        output_format(args.output)
        check_outside_pipeline(args.output, config.paths)  # before Spark starts; export_audience checks it too
        tables = warehouse_tables(config.paths)  # one snapshot for the dates and the rows
        resolve_published_date(spec.date, published_dates(tables))  # before Spark starts
        with open_engine(args.engine, config, tables) as engine:
            summary = export_audience(engine, spec, args.output)
    except ValueError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # the engine's own message: a data file of a table gone
        return engine_error_status(exc, prog)
    print(f"{spec.describe(summary.date)}: {summary.users} users -> {summary.output}")
    width = max(len("tag"), *(len(t) for t in summary.per_tag))
    print(f"  {'tag'.ljust(width)}  users")
    for tag, users in summary.per_tag.items():
        print(f"  {tag.ljust(width)}  {users:>5}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
