"""Every refusal is a clear error raised before anything is written."""
from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from pyspark.testing import assertDataFrameEqual

from core import delta, registry
from core.config import ConfigError
from core.registry import ModelStatus, UnknownModelError
from core.tables import Warehouse
from jobs.score import run
from mvke.artifact import save_model, weights_id
from mvke.builder import build_model
from nightly.publish import PartlyPublishedError
from scoring.executor import PROFILE_SCHEMA, ModelReplacedError
from scoring.inputs import ScoringInputError, read_tags, split_tags
from scoring.tag_index import ensure_tag_index
from scoring.topn import UndefinedScoreError
from tests.scoring.warehouse import (D1, D2, NUM_TAGS, TABLE_FIELDS, expected_profiles, make_tags, make_users,
                                     reference_probabilities)

WRITTEN = (Warehouse.USER_TAG_PROFILES, Warehouse.TAG_INDEX, Warehouse.USER_VECTORS)


def _versions(world) -> dict:
    return {t: delta.table_version(world.uri(t)) for t in WRITTEN}


def _refused(spark, world, config, date, error, match) -> None:
    before = _versions(world)
    with pytest.raises(error, match=match):
        run(spark, config, date)
    assert _versions(world) == before


def test_an_unknown_model_version_lists_the_available_ones(spark, world):
    world.publish("v1")
    world.publish("v2", status=ModelStatus.CANDIDATE, minute=1)
    world.day(D1, make_users(4, seed=1), make_tags())
    _refused(spark, world, world.config(model_version="v9", write_user_vectors=True), D1, UnknownModelError,
             r"unknown model version 'v9'; available: v1 \(published\), v2 \(candidate\)")
    assert _versions(world) == dict.fromkeys(WRITTEN)


def test_no_published_model_is_an_error(spark, world):
    world.publish("v1", status=ModelStatus.CANDIDATE)
    world.day(D1, make_users(4, seed=1), make_tags())
    _refused(spark, world, world.config(), D1, UnknownModelError,
             r"no published model trained for 2026-11-05 or earlier to score with; available: v1 \(candidate, "
             r"trained for 2026-11-05\)$")


def test_no_published_model_of_the_date_or_earlier_is_an_error(spark, world):
    # only a model trained for a later day: scoring D1 with it would not be the model D1 had
    world.publish("v2", trained_for=D2)
    world.day(D1, make_users(4, seed=1), make_tags())
    _refused(spark, world, world.config(), D1, UnknownModelError,
             r"no published model trained for 2026-11-05 or earlier to score with; available: v2 \(published, "
             r"trained for 2026-11-06\)$")


def _with(name, **change):
    return tuple((r[0], change.get("kind", r[1]), change.get("encoding", r[2]), change.get("vocab_size", r[3]))
                 if r[0] == name else r for r in TABLE_FIELDS)


@pytest.mark.parametrize("fields, match", [
    (tuple(r for r in TABLE_FIELDS if r[0] != "city"), r"field city \(single\) is missing from the fields table"),
    (_with("interests", kind="single"), r"field interests is single in the fields table, multi in the model"),
    (_with("age", vocab_size=7), r"field age: bucketized into 7 ids now, 6 when the model was trained"),
    (_with("city", vocab_size=5), r"field city: vocabulary of 5 ids is smaller than the model's 8"),
], ids=["missing", "kind", "buckets", "shrunk"])
def test_field_encodings_that_do_not_match_the_model_are_refused(spark, world, fields, match):
    world.publish("v1")
    world.day(D1, make_users(4, seed=1), make_tags())
    world.write_fields(fields)
    _refused(spark, world, world.config(), D1, ScoringInputError, match)


def test_a_field_whose_ids_changed_meaning_at_the_same_size_is_refused(spark, world):
    """Other bucket edges, as many as before: the sizes match, and age bucket 3 meant other ages to the
    model. The definitions recorded in the fields table and in the model's training.json must agree."""
    trained = {"age": "bucket edges [18.0, 30.0, 50.0]", "city": "vocabulary city"}
    model = world.publish("v1")
    (Path(registry.model_dir(world.paths, "v1")) / "training.json").write_text(
        json.dumps({"field_definitions": trained}))
    users, tags = make_users(4, seed=1), make_tags()
    world.day(D1, users, tags)
    world.write_fields(definitions={**trained, "age": "bucket edges [20.0, 40.0, 60.0]"})
    _refused(spark, world, world.config(), D1, ScoringInputError,
             r"the feature encodings do not match the model: field age: its ids are bucket edges \[20.0, 40.0, "
             r"60.0\] now, bucket edges \[18.0, 30.0, 50.0\] when the model was trained \(fields table holds")
    world.write_fields(definitions=trained)  # the same definitions: scored
    config = world.config()
    run(spark, config, D1)
    probs = reference_probabilities(model, users, tags)
    assertDataFrameEqual(world.profiles(spark, D1), spark.createDataFrame(
        expected_profiles(probs, users, tags, date=D1, version="v1", top_n={o: config.score.top_n for o in probs}),
        PROFILE_SCHEMA), rtol=0.0, atol=1e-5)


def test_user_features_of_another_type_are_refused(spark, world):
    world.publish("v1")
    users = [{**u, "age": str(u["age"])} for u in make_users(4, seed=1)]
    world.write_users(D1, users, schema_overrides={"age": pa.string()})
    world.write_tags(D1, make_tags())
    _refused(spark, world, world.config(), D1, ScoringInputError, r"age must be an int column \(single field\)")


@pytest.mark.parametrize("change, shown", [
    ({"user_id": None}, "'user_id': None"),
    ({"user_id": "  "}, "'user_id': '  '"),
    ({"city": -1}, "'city': -1"),
    ({"interests": [3, -4], "interests_weights": [1.0, 0.5]}, "'interests': [3, -4]"),
    ({"interests": [-2, 5], "interests_weights": [0.0, 1.0]}, "'interests': [-2, 5]"),
], ids=["null user_id", "blank user_id", "negative single id", "negative multi id", "negative multi id at weight 0"])
def test_rows_that_cannot_be_scored_are_refused_naming_one(spark, world, change, shown):
    # the feature job never writes these (it quarantines null ids); another writer might. At weight 0
    # a negative id still reaches the embedding lookup, which would fail on the executor.
    world.publish("v1")
    users = make_users(5, seed=1)
    users[3].update(change)
    users[4].update(interests=[9999, 5], interests_weights=[0.0, 1.0])  # an unknown id at weight 0: fine
    world.day(D1, users, make_tags())
    _refused(spark, world, world.config(write_user_vectors=True), D1, ScoringInputError,
             rf"user_features for dt={D1}: 1 of 5 rows cannot be scored \(no user_id, or a negative feature id\), "
             rf"e\.g\. \{{.*{re.escape(shown)}.*\}}; nothing was written")


def _save_again(model, folder, seed=99):
    """A retrain of the version, saved as `training.artifact.finalize` does: a new folder renamed in place."""
    retrained = build_model(dataclasses.replace(model.spec.conf, seed=seed), model.spec.fields, NUM_TAGS,
                            model.spec.num_categories)
    save_model(retrained, retrained.spec.conf, model.spec.fields, NUM_TAGS, model.spec.num_categories,
               f"{folder}.new")
    os.replace(folder, f"{folder}.old")
    os.replace(f"{folder}.new", folder)


def test_the_nightlys_vectors_use_the_weights_its_profiles_were_scored_with(spark, world):
    """Profiles published, then the version saved again before the vectors stage: vectors of the new
    weights would sit beside profiles of the old under one version name."""
    from jobs.score import write_user_vectors

    model = world.publish("v1")
    world.day(D1, make_users(6, seed=1), make_tags())
    scored = run(spark, world.config(), D1)
    folder = registry.model_dir(world.paths, "v1")
    assert scored["weights_id"] == weights_id(folder) is not None
    _save_again(model, folder)
    with pytest.raises(ModelReplacedError, match=rf"^{folder} holds other weights than the published profiles were "
                                                 rf"scored with \(weights_id {weights_id(folder)}, expected "
                                                 rf"{scored['weights_id']}\): the model version was saved again "
                                                 rf"since; no vectors were written; roll {D1} back, or rerun its "
                                                 rf"night$"):
        write_user_vectors(spark, world.config(), D1, weights=scored["weights_id"])
    assert delta.table_version(world.uri(Warehouse.USER_VECTORS)) is None
    written = write_user_vectors(spark, world.config(), D1, weights=weights_id(folder))  # the weights now there
    assert written["rows_written"] == 6


def test_a_model_saved_again_while_the_job_runs_stops_the_scan_and_writes_nothing(spark, world, monkeypatch):
    """The driver builds the tag side from the weights it loaded; executors that loaded the weights of
    a retrain saved under the same version meanwhile scored users with another model."""
    import jobs.score

    model = world.publish("v1")
    world.day(D1, make_users(6, seed=1), make_tags())
    folder = registry.model_dir(world.paths, "v1")
    make_task = jobs.score._scan_task

    def retrain_then_task(*args):
        _save_again(model, folder)
        return make_task(*args)

    monkeypatch.setattr(jobs.score, "_scan_task", retrain_then_task)
    before = _versions(world)
    with pytest.raises(ModelReplacedError, match=rf"^{folder} holds other weights than the driver loaded "
                                                 rf"\(weights_id \w+, expected \w+\): the model version was saved "
                                                 rf"again while this job ran; nothing was written; run the job "
                                                 rf"again$"):
        run(spark, world.config(write_user_vectors=True), D1)
    assert {t: v for t, v in _versions(world).items() if t is not Warehouse.TAG_INDEX} == \
        {t: v for t, v in before.items() if t is not Warehouse.TAG_INDEX}  # the tag_index is written first


def test_a_user_id_twice_in_user_features_is_refused(spark, world):
    """The feature job writes one row per user; a repaired or appended partition may not. Each row got
    its own rank-1 .. rank-N rows under the one id, and users_scored counted both."""
    world.publish("v1")
    users = make_users(5, seed=1)
    users[4] = {**users[2], "city": 3}
    world.day(D1, users, make_tags())
    _refused(spark, world, world.config(write_user_vectors=True), D1, ScoringInputError,
             rf"^user_features for dt={D1}: 5 rows hold 4 user ids, e\.g\. 'u1_02' 2 times: each would get its own "
             rf"top-N rows under one id; rerun the feature job for {D1}; nothing was written$")


def test_a_negative_tag_category_is_refused(spark, world):
    world.publish("v1")
    tags = make_tags()
    tags[3]["category_id"] = -2
    world.day(D1, make_users(4, seed=1), tags)
    _refused(spark, world, world.config(), D1, ScoringInputError,
             rf"tags for dt={D1}: category_id must be >= 0 \(0 is missing\), found 1 negative, e\.g\. tag 't05'")


def test_no_user_features_for_the_date_is_an_error(spark, world):
    world.publish("v1")
    world.day(D1, make_users(4, seed=1), make_tags())
    _refused(spark, world, world.config(), D2, ScoringInputError,
             rf"no user_features for dt={D2.isoformat()} .*latest dates: {D1.isoformat()}")


def test_tags_unknown_to_the_model_leave_nothing_to_score(spark, world):
    world.publish("v1")
    world.day(D1, make_users(4, seed=1), [{"tag_id": "late", "tag_index": NUM_TAGS + 3, "category_id": 2}])
    _refused(spark, world, world.config(), D1, ScoringInputError, r"no tag left to score.*1 newer than it")


def test_a_top_n_for_an_objective_the_model_does_not_score_is_refused(spark, world):
    world.publish("v1")
    world.day(D1, make_users(4, seed=1), make_tags())
    _refused(spark, world, world.config(top_n_per_objective={"ctcvr": 3}), D1, ValueError,
             r"names \['ctcvr'\].*valid: ctr, cvr, ctr_x_cvr")


@pytest.mark.parametrize("setting", [{"min_score": 2.0}, {"top_n": 0}, {"block_size": 0}])
def test_bad_settings_of_a_config_built_in_python_are_refused(spark, world, setting):
    # run() is called from Python with Config objects that never went through the loader's checks:
    # a floor above 1 or a top_n of 0 would replace dt=D with no rows, a block_size of 0 never ends.
    world.publish("v1")
    world.day(D1, make_users(4, seed=1), make_tags())
    _refused(spark, world, world.config(**setting), D1, ConfigError, r"score\.(min_score|top_n|block_size)")
    assert _versions(world) == dict.fromkeys(WRITTEN)


def test_a_tag_vocabulary_rebuilt_since_the_tag_index_was_written_is_refused(spark, world):
    model = world.publish("v1")
    world.day(D1, make_users(4, seed=1), make_tags())
    seen = split_tags(read_tags(world.paths, D1), NUM_TAGS).seen
    ensure_tag_index(world.uri(Warehouse.TAG_INDEX), model, "v1", seen, {})  # what scoring D1 wrote
    swapped = make_tags()
    swapped[1]["tag_index"], swapped[2]["tag_index"] = swapped[2]["tag_index"], swapped[1]["tag_index"]
    world.day(D2, make_users(4, seed=2), swapped)
    _refused(spark, world, world.config(), D2, ScoringInputError,
             r"tag encoding changed since tag_index was written for model v1 \(2 tags, e.g. t04: 4 -> 3, t03: 3 -> 4\)")
    assert delta.table_version(world.uri(Warehouse.USER_TAG_PROFILES)) is None


def test_a_model_with_nan_tag_vectors_is_named_with_a_tag_and_writes_nothing(spark, world):
    """Caught on the driver, before the tag_index write: stored, the broken rows would be the
    version's index (a NaN is never close to anything, so every later run would rewrite them)."""
    def nan_tag(model):
        with torch.no_grad():
            model.tag_tower.id_embedding.weight[7] = float("nan")

    world.publish("v1", tamper=nan_tag)
    world.day(D1, make_users(4, seed=1), make_tags())
    _refused(spark, world, world.config(), D1, UndefinedScoreError,
             r"^model v1 gives NaN or inf tag vectors for 1 tags, e\.g\. t07: the model's weights are broken; "
             r"nothing was written$")
    assert _versions(world) == dict.fromkeys(WRITTEN)


def test_the_nan_message_names_a_user_with_an_inf_in_a_used_vector_only():
    """inf - inf is NaN: a user vector holding inf is the user side's fault. A NaN in an expert no
    objective uses scores nothing (a masked MIND interest does: 0 * NaN is NaN)."""
    from scoring.executor import _undefined_score
    from scoring.scan import ObjectiveTags, ScanTags

    side = ObjectiveTags(experts=np.array([0, 2]), gate=None, emb=np.zeros((3, 2), np.float32), serving=None)
    scan = ScanTags(tag_ids=np.array(["t2", "t3", "t4"], dtype=object), objectives={"ctr": side})
    users = pa.chunked_array([["a", "b", "c"]])
    vecs = torch.zeros(3, 3, 2)
    vecs[0, 1, 0] = float("nan")  # expert 1: used by no objective
    vecs[2, 2, 1] = float("inf")
    assert _undefined_score(vecs, scan, users, "v1") == (
        "model v1 gives NaN scores to 1 of 3 users of a block, e.g. user c: the model's weights or these users' "
        "features are broken")
    vecs[2, 2, 1] = 0.0
    assert _undefined_score(vecs, scan, users, "v1") == (
        "model v1 gives NaN scores, with every user vector it uses finite: its tag vectors hold NaN or inf")
    # MIND: every interest is used, a user's masked ones included, so a NaN there is named
    mind = ScanTags(tag_ids=scan.tag_ids, objectives={"ctr": dataclasses.replace(side, experts=np.array([0, 1, 2]))})
    assert _undefined_score(vecs, mind, users, "v1") == (
        "model v1 gives NaN scores to 1 of 3 users of a block, e.g. user a: the model's weights or these users' "
        "features are broken")


def test_a_failure_after_the_profiles_commit_names_the_committed_version(spark, world, monkeypatch):
    """The profiles of D are live once committed: a later step failing (here profiles_latest losing
    its race) must not read as "nothing was committed"."""
    from jobs import score

    world.publish("v1")
    world.day(D1, make_users(4, seed=1), make_tags())

    def lost_race(spark, paths):
        raise delta.ConcurrentCommitError(f"{paths.warehouse}/profiles_latest: another writer committed first; "
                                          f"nothing was committed")

    monkeypatch.setattr(score, "refresh_latest", lost_race)
    with pytest.raises(PartlyPublishedError) as failed:
        run(spark, world.config(write_user_vectors=True), D1)
    profiles = world.uri(Warehouse.USER_TAG_PROFILES)
    assert str(failed.value) == (
        f"the profiles of dt={D1} are committed ({profiles} version 0, model v1), but the profiles_latest refresh "
        f"failed: ConcurrentCommitError: {world.paths.warehouse}/profiles_latest: another writer committed first; "
        f"nothing was committed; run the same command again to finish it")
    assert _versions(world) == {Warehouse.USER_TAG_PROFILES: 0, Warehouse.TAG_INDEX: 0, Warehouse.USER_VECTORS: None}
    monkeypatch.undo()
    summary = run(spark, world.config(write_user_vectors=True), D1)  # the rerun finishes it
    assert summary["table_versions"] == {"user_tag_profiles": 1, "tag_index": 0, "user_vectors": 0}
    assertDataFrameEqual(delta.read_table(spark, world.uri(Warehouse.PROFILES_LATEST)),
                         delta.read_table(spark, profiles))


def _nan_embedding(model, field: str, ids: list[int]) -> None:
    with torch.no_grad():
        getattr(model.field_embedding.tables, field).weight[ids] = float("nan")


def test_a_model_giving_nan_scores_is_named_with_a_user_in_one_line_and_writes_nothing(spark, world):
    # The NaN is found on an executor; the driver must still say in one line what is broken.
    users = make_users(6, seed=1)
    for i, user in enumerate(users):
        user["city"] = 5 if i in (2, 4) else 3
    world.publish("v1", tamper=lambda model: _nan_embedding(model, "city", [5]))
    world.day(D1, users, make_tags())
    with pytest.raises(UndefinedScoreError) as caught:
        run(spark, world.config(block_size=4), D1)
    assert re.fullmatch(r"model v1 gives NaN scores to [12] of [1-4] users of a block, e\.g\. user u1_0[24]: "
                        r"the model's weights or these users' features are broken", str(caught.value))
    assert _versions(world) == {Warehouse.USER_TAG_PROFILES: None, Warehouse.TAG_INDEX: 0,
                                Warehouse.USER_VECTORS: None}
