"""What a night must build: which feature dates are missing, and whether to train."""
from __future__ import annotations

import datetime as dt

from core import delta, registry
from core.config import Config
from core.tables import Warehouse, warehouse_uri


def feature_dates(config: Config, date: dt.date, *, training: bool) -> list[dt.date]:
    """Feature runs needed for `date`: always `date` itself; with training, the missing history.

    The feature run for X writes the `user_features` snapshot of X and the `samples` of X-1;
    training on the window [date - w, date - 1] needs both for every day of it.
    """
    needed = {date}
    if training:
        window = config.train.window_days
        have_features = set(delta.partition_values(warehouse_uri(config.paths, Warehouse.USER_FEATURES)))
        have_samples = set(delta.partition_values(warehouse_uri(config.paths, Warehouse.SAMPLES)))
        for offset in range(window, 0, -1):
            day = date - dt.timedelta(days=offset)
            previous = day - dt.timedelta(days=1)
            if day.isoformat() not in have_features or \
                    (offset < window and previous.isoformat() not in have_samples):
                needed.add(day)
    return sorted(needed)


def training_due(config: Config, date: dt.date) -> bool:
    """Train when no model trained for `date` or earlier is published, or the latest one is
    `train_every` days old (a rerun of an old date looks at the models of its time)."""
    latest = registry.latest_published(config.paths, as_of=date)
    if latest is None:
        return True
    return (date - latest.trained_for).days >= config.nightly.train_every
