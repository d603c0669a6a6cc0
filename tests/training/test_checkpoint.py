"""Checkpoints: atomic, tensors only (weights_only loads), refused for another model."""
import json
import shutil

import pytest
import torch

from mvke import build_model
from training.checkpoint import (CheckpointDamagedError, CheckpointMismatchError, checkpoint_path, latest_epoch,
                                 load_checkpoint, prepare_start, save_checkpoint)
from training.report import empty_history
from training.worker import rerun_advice

from tests.training.toy import FIELDS, NUM_CATEGORIES, NUM_TAGS, learnable_batches, small_conf

FINGERPRINT = {"fields": [["history", "multi", 8], ["interest", "single", 6]], "num_tags": 6}


def _trained():
    model = build_model(small_conf(), FIELDS, NUM_TAGS, NUM_CATEGORIES)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    batch = learnable_batches(32, 32)[0]
    model(batch)["ctr"].sum().backward()
    optimizer.step()
    return model, optimizer


def test_round_trip_with_weights_only_and_history(tmp_path):
    model, optimizer = _trained()
    history = {"steps": [{"step": 1, "epoch": 0, "loss": 0.5, "samples_per_s": 10.0}], "epochs": []}
    path = save_checkpoint(tmp_path, 0, model.state_dict(), optimizer.state_dict(), FINGERPRINT, history)
    assert path == checkpoint_path(tmp_path, 0)
    state = torch.load(path / "state.pt", weights_only=True)  # raises if anything but tensors/plain data
    assert state["optimizer"]["state"][0]["step"] == optimizer.state_dict()["state"][0]["step"]
    loaded = load_checkpoint(tmp_path, 0, FINGERPRINT)
    assert loaded.epoch == 0 and loaded.history == history
    fresh = build_model(small_conf(seed=9), FIELDS, NUM_TAGS, NUM_CATEGORIES)
    fresh.load_state_dict(loaded.model_state)
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))
    again = torch.optim.Adam(fresh.parameters(), lr=0.01)
    again.load_state_dict(loaded.optimizer_state)
    assert torch.equal(again.state_dict()["state"][0]["exp_avg"], optimizer.state_dict()["state"][0]["exp_avg"])


def test_latest_epoch_ignores_incomplete_and_temporary_folders(tmp_path):
    model, optimizer = _trained()
    assert latest_epoch(tmp_path / "none") is None
    for epoch in (0, 1):
        save_checkpoint(tmp_path, epoch, model.state_dict(), optimizer.state_dict(), FINGERPRINT, empty_history())
    (tmp_path / "checkpoint-5").mkdir()  # no meta.json: a crash mid-copy by some other tool
    (tmp_path / ".tmp-checkpoint-7-abc").mkdir()
    assert latest_epoch(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "checkpoint-0", "checkpoint-1", "checkpoint-5"]


def test_a_failed_run_says_what_a_rerun_does_with_its_checkpoints(tmp_path):
    """The kill tests in test_train_job.py cover the two branches with a checkpoint; a rank killed
    before the first one leaves an empty (or no) folder, and a rerun starts over, whatever resume is."""
    folder = tmp_path / "checkpoints"
    starts_over = f"no epoch was checkpointed under {folder}: a rerun starts from the first epoch"
    assert [rerun_advice(str(folder), resume) for resume in (True, False)] == [starts_over, starts_over]
    (folder / "checkpoint-0").mkdir(parents=True)  # no meta.json: not a checkpoint
    assert rerun_advice(str(folder), True) == starts_over
    model, optimizer = _trained()
    save_checkpoint(folder, 1, model.state_dict(), optimizer.state_dict(), FINGERPRINT, empty_history())
    assert rerun_advice(str(folder), True) == (
        f"checkpoints under {folder} are kept (up to epoch 2): rerun the same command to resume")


def test_a_checkpoint_for_other_vocabulary_sizes_is_refused(tmp_path):
    model, optimizer = _trained()
    save_checkpoint(tmp_path, 0, model.state_dict(), optimizer.state_dict(), FINGERPRINT, empty_history())
    other = json.loads(json.dumps(FINGERPRINT))
    other["fields"][1][2] = 9
    with pytest.raises(CheckpointMismatchError,
                       match=r"checkpoint-0 was written for a different model.*fields: checkpoint has "
                             r"\[\['history', 'multi', 8\], \['interest', 'single', 6\]\], this run has .*9\]\]"):
        load_checkpoint(tmp_path, 0, other)


def test_a_fresh_start_deletes_the_checkpoints_a_later_resume_would_pick_up(tmp_path):
    """An earlier run of the version reached epoch 3; a rerun with resume=false that is killed after
    its epoch 0 must be resumed from its own epoch 0, not from the earlier run's epoch 3."""
    model, optimizer = _trained()
    for epoch in range(4):
        save_checkpoint(tmp_path, epoch, model.state_dict(), optimizer.state_dict(), FINGERPRINT,
                        {**empty_history(), "run": "old"})
    assert prepare_start(tmp_path, FINGERPRINT, resume=True) == 3
    assert latest_epoch(tmp_path) == 3  # resuming keeps them

    assert prepare_start(tmp_path, FINGERPRINT, resume=False) is None
    save_checkpoint(tmp_path, 0, model.state_dict(), optimizer.state_dict(), FINGERPRINT,
                    {**empty_history(), "run": "new"})
    assert prepare_start(tmp_path, FINGERPRINT, resume=True) == 0
    assert load_checkpoint(tmp_path, 0, FINGERPRINT).history == {**empty_history(), "run": "new"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-0"]


def test_a_fresh_start_ignores_a_checkpoint_of_another_model(tmp_path):
    model, optimizer = _trained()
    save_checkpoint(tmp_path, 0, model.state_dict(), optimizer.state_dict(), FINGERPRINT, empty_history())
    other = {**FINGERPRINT, "num_tags": 7}
    with pytest.raises(CheckpointMismatchError, match="num_tags: checkpoint has 6, this run has 7"):
        prepare_start(tmp_path, other, resume=True)
    assert prepare_start(tmp_path, other, resume=False) is None
    assert latest_epoch(tmp_path) is None


@pytest.mark.parametrize("name, damage, error", [
    ("meta.json", b"", r"JSONDecodeError"),  # zero length: written, not yet on disk, when the host died
    ("meta.json", b'{"epoch": 1}', r"ValueError: keys \['epoch'\], not epoch, fingerprint and history"),
    ("meta.json", b'[1]', r"ValueError: keys \[1\], not epoch, fingerprint and history"),
    ("meta.json", b'{"epoch": 1, "fingerprint": null, "history": {"steps": [], "epochs": []}}',
     r"ValueError: epoch must be a whole number, fingerprint an object and history an object with steps and epochs "
     r"lists"),
    ("meta.json", b'{"epoch": 1, "fingerprint": {}, "history": []}', r"ValueError: epoch must be a whole number"),
    ("meta.json", b'{"epoch": "1", "fingerprint": {}, "history": {"steps": [], "epochs": []}}',
     r"ValueError: epoch must be a whole number"),
    ("state.pt", b"", r"(EOFError|RuntimeError|UnpicklingError)"),
    ("state.pt", b"PK\x03\x04 not a zip", r"(RuntimeError|UnpicklingError)"),
])
def test_a_damaged_last_checkpoint_is_refused_on_the_driver_naming_it(tmp_path, name, damage, error):
    """Found before any worker starts: rank 0 failing to load it would be a worker failure whose
    advice (rerun to resume) fails again the same way."""
    model, optimizer = _trained()
    for epoch in (0, 1):
        save_checkpoint(tmp_path, epoch, model.state_dict(), optimizer.state_dict(), FINGERPRINT, empty_history())
    (checkpoint_path(tmp_path, 1) / name).write_bytes(damage)
    with pytest.raises(CheckpointDamagedError, match=rf"^{tmp_path}/checkpoint-1/{name} cannot be read \({error}.*\); "
                                                     rf"delete {tmp_path}/checkpoint-1 \(the run resumes from the "
                                                     rf"checkpoint before it, or starts over\) or run with "
                                                     rf"--set train.resume=false$"):
        prepare_start(tmp_path, FINGERPRINT, resume=True)
    assert prepare_start(tmp_path / "other", FINGERPRINT, resume=True) is None
    shutil.rmtree(checkpoint_path(tmp_path, 1))
    assert prepare_start(tmp_path, FINGERPRINT, resume=True) == 0


def test_a_finished_model_folder_is_on_disk_before_it_says_done_and_before_it_appears(tmp_path, monkeypatch):
    """A host losing power after the registry row is committed must not leave a DONE folder of empty
    files, which the rerun would take as trained and scoring would fail on every night."""
    import os

    from core.config import Paths
    from training.artifact import DONE_FILE, finalize

    paths = Paths(raw=str(tmp_path / "raw"), warehouse=str(tmp_path / "wh"), models=str(tmp_path / "models"))
    staging = tmp_path / "models" / "_staging" / "v1"
    staging.mkdir(parents=True)
    for name in ("model.safetensors", "model.json", "curves.png"):
        (staging / name).write_bytes(b"x")
    real, synced = os.fsync, []

    def recording(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", recording)
    final = finalize(staging, paths, "v1", {"date": "2026-11-10"}, {"ctr": {"auc": 0.7}})
    assert sorted(p.name for p in final.iterdir()) == sorted(
        ["model.safetensors", "model.json", "curves.png", "training.json", "metrics.json", DONE_FILE])
    done = synced.index(str(staging / DONE_FILE))
    assert {str(staging / p.name) for p in final.iterdir()} - {str(staging / DONE_FILE)} <= set(synced[:done])
    assert str(staging) in synced[done:]  # DONE's name, before the rename
    assert synced[-1] == str(tmp_path / "models")  # the rename
