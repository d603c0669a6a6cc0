import datetime as dt

import pytest

from core import registry
from core.config import Paths
from core.registry import ModelRecord, ModelStatus
from tests.racing import at_once, commits_first

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


def test_a_rerun_for_an_earlier_day_does_not_become_the_latest_published(tmp_path):
    """Retraining the model of Nov 1 after Nov 3's was published must not switch scoring back to it;
    among models of the same day the one registered last is the latest."""
    paths = Paths(raw=str(tmp_path / "r"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))
    day = dt.timedelta(days=1)

    def record(version, trained_for, minutes):
        return ModelRecord(version, trained_for, ModelStatus.PUBLISHED, T0 + dt.timedelta(minutes=minutes),
                           {}, f"/m/{version}")

    nov1, nov3 = dt.date(2026, 11, 1), dt.date(2026, 11, 3)
    registry.register(paths, record("a-nov1", nov1, 0))
    registry.register(paths, record("b-nov3", nov3, 10))
    registry.register(paths, record("c-nov1-rerun", nov1, 20))
    assert registry.resolve(paths).model_version == "b-nov3"
    registry.register(paths, record("d-nov3-rerun", nov3, 30))
    assert [r.model_version for r in registry.list_models(paths)] == ["a-nov1", "c-nov1-rerun", "b-nov3", "d-nov3-rerun"]
    assert registry.resolve(paths).model_version == "d-nov3-rerun"
    registry.register(paths, record("e-nov2", nov3 - day, 40))
    assert registry.resolve(paths).model_version == "d-nov3-rerun"
    # as of a day: the latest model trained for that day or earlier (what a rerun of that day scores with)
    assert [registry.resolve(paths, as_of=d).model_version for d in (nov1, nov1 + day, nov3, nov3 + day)] == [
        "c-nov1-rerun", "e-nov2", "d-nov3-rerun", "d-nov3-rerun"]
    assert registry.latest_published(paths, as_of=nov1 - day) is None
    with pytest.raises(registry.UnknownModelError, match=r"^no published model trained for 2026-10-31 or earlier"):
        registry.resolve(paths, as_of=nov1 - day)
    assert registry.resolve(paths, "b-nov3", as_of=nov1).model_version == "b-nov3"  # a pinned version is as given


def test_with_no_model_left_the_message_says_what_a_rerun_of_the_night_gets(tmp_path):
    """The only model trained for the night failed its gates: a rerun of that night gets the same
    (withdrawn) version back, so "its next run trains one" would be wrong there."""
    paths = Paths(raw=str(tmp_path / "r"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))
    nov1 = dt.date(2026, 11, 1)
    registry.register(paths, _record("v1", ModelStatus.PUBLISHED, 0))
    assert registry.current_for(paths, nov1) == f"the latest published model for {nov1} is v1"
    registry.set_status(paths, "v1", ModelStatus.GATE_FAILED)
    assert registry.current_for(paths, nov1) == (
        f"no published model for {nov1} is left, and a rerun of {nov1} with the same inputs and settings gets v1 "
        f"back, which stays withdrawn: change a model or train setting to train a new version, or pin "
        f"score.model_version=v1 to score with it anyway")
    # The night before has no model of its own: its run trains one.
    assert registry.current_for(paths, nov1 - dt.timedelta(days=1)) == (
        f"no published model for {nov1 - dt.timedelta(days=1)} is left: its next run trains one")


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


def test_a_status_change_is_decided_on_the_registry_version_it_lands_on(tmp_path, monkeypatch):
    """The nightly's gates withdraw v1 (published -> gate_failed) while a rollback of the same night
    marks it rolled_back first: the gates' change finds v1 no longer published and leaves it."""
    paths = Paths(raw=str(tmp_path / "r"), warehouse=str(tmp_path / "w"), models=str(tmp_path / "m"))
    registry.register(paths, _record("v1", ModelStatus.PUBLISHED, 0))
    registry.register(paths, _record("v2", ModelStatus.PUBLISHED, 1))
    commits_first(monkeypatch, lambda: registry.set_status(paths, "v1", ModelStatus.ROLLED_BACK))
    night = dt.date(2026, 11, 1)
    assert not registry.change_status(paths, "v1", night, ModelStatus.PUBLISHED, ModelStatus.GATE_FAILED)
    assert [(r.model_version, r.status) for r in registry.list_models(paths)] == [
        ("v1", ModelStatus.ROLLED_BACK), ("v2", ModelStatus.PUBLISHED)]
    assert registry.change_status(paths, "v2", night, ModelStatus.PUBLISHED, ModelStatus.GATE_FAILED)
    assert not registry.change_status(paths, "v2", night, ModelStatus.PUBLISHED, ModelStatus.GATE_FAILED)
    assert registry.get_model(paths, "v2").status is ModelStatus.GATE_FAILED
    with pytest.raises(registry.UnknownModelError, match=r"'v9'; available: v1 \(rolled_back\), v2 \(gate_failed\)"):
        registry.set_status(paths, "v9", ModelStatus.PUBLISHED)
