import datetime as dt

import pytest

from core import registry
from core.config import Paths
from core.registry import ModelRecord, ModelStatus
from tests.racing import at_once

T0 = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.timezone.utc)


def _record(version, status, minutes):
    return ModelRecord(version, dt.date(2026, 11, 1), status, T0 + dt.timedelta(minutes=minutes),
                       {"auc": {"ctr": 0.7}}, f"/m/{version}")


def test_latest_published_and_status_changes(tmp_path):
    paths = Paths(raw=str(tmp_path / "r"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))
    assert registry.list_models(paths) == []
    with pytest.raises(registry.UnknownModelError, match="available: none"):
        registry.resolve(paths)
    registry.register(paths, _record("v1", ModelStatus.PUBLISHED, 0))
    registry.register(paths, _record("v2", ModelStatus.CANDIDATE, 1))
    assert registry.resolve(paths).model_version == "v1"
    registry.set_status(paths, "v2", ModelStatus.PUBLISHED)
    assert registry.resolve(paths).model_version == "v2"
    assert [(r.model_version, r.status) for r in registry.list_models(paths)] == [
        ("v1", ModelStatus.PUBLISHED), ("v2", ModelStatus.PUBLISHED)]
    assert registry.get_model(paths, "v1") == _record("v1", ModelStatus.PUBLISHED, 0)
    with pytest.raises(registry.UnknownModelError, match=r"'v9'; available: v1 \(published\), v2 \(published\)"):
        registry.resolve(paths, "v9")


def _register_many(root: str, writer: str, count: int, start) -> None:
    from core import registry as r
    from core.config import Paths as P

    paths = P(raw=f"{root}/r", warehouse=f"{root}/w", models=f"{root}/m")
    start.wait()
    for i in range(count):
        r.register(paths, _record(f"{writer}{i}", ModelStatus.CANDIDATE, i))


def test_two_processes_registering_at_once_keep_every_model(tmp_path):
    """The registry is rewritten whole: without committing on top of the version read, one
    writer's rewrite would drop the rows the other added in between."""
    at_once(_register_many, [(str(tmp_path), w, 8) for w in ("a", "b")])
    paths = Paths(raw=str(tmp_path / "r"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))
    assert sorted(registry.list_models(paths), key=lambda r: r.model_version) == [
        _record(f"{w}{i}", ModelStatus.CANDIDATE, i) for w in ("a", "b") for i in range(8)]
