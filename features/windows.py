"""Point-in-time windows: which run dates see which days.

The snapshot for run date D uses the days D - window_days .. D - 1 (events in
[D - window_days 00:00, D 00:00), UTC). A backfill computes many dates in one job by
giving each daily row the list of dates whose window contains its day and exploding it.
"""
from __future__ import annotations

import datetime as dt
from typing import Sequence

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

DAY = dt.timedelta(days=1)


def window_start(date: dt.date, window_days: int) -> dt.date:
    """The first day inside the window of `date`."""
    return date - window_days * DAY


def dates_seeing(day: Column, *, dates: Sequence[dt.date], window_days: int) -> Column:
    """array<date> (null if none): the dates D among `dates` with D - window_days <= day <= D - 1.

    The candidates are the consecutive days from max(day + 1, first date) to
    min(day + window_days, last date); a set of dates with gaps keeps only its own.
    Sequences and intersections compile to Java, unlike lambdas over the date list.
    """
    dates = sorted(set(dates))
    first = F.greatest(F.date_add(day, 1), F.lit(dates[0]))
    last = F.least(F.date_add(day, window_days), F.lit(dates[-1]))
    seen = F.when(first <= last, F.sequence(first, last))
    if (dates[-1] - dates[0]).days + 1 == len(dates):
        return seen
    return F.array_intersect(seen, F.array(*[F.lit(d) for d in dates]))


def explode_to_dates(df: DataFrame, *, dates: Sequence[dt.date], window_days: int) -> DataFrame:
    """Each row of `df` (with a `day` column) once per run date `dt` whose window holds it."""
    return df.select(
        F.explode(dates_seeing(F.col("day"), dates=dates, window_days=window_days)).alias("dt"), *df.columns
    )


def days_before(dt_col: str, day_col: str) -> Column:
    """Whole days from the start of `day_col` to the start of `dt_col`."""
    return F.datediff(F.col(dt_col), F.col(day_col))
