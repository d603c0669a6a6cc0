"""Per-epoch checkpoints that load without unpickling code, written atomically.

`<checkpoint_dir>/checkpoint-<epoch>/` holds `state.pt` (model and optimizer state:
tensors and plain numbers only, so `torch.load(weights_only=True)` reads it) and
`meta.json` (the epoch, the model fingerprint and the metric history so far). It is
written under a temporary name, synced to disk and renamed into place, so a reader sees a
complete checkpoint or none, also after the host crashed. Resuming checks the fingerprint
(model conf, fields, vocabulary sizes) and refuses a checkpoint written for another model,
and one that cannot be read (damaged by some other hand) with its folder named.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.errors import TrainingError

STATE_FILE = "state.pt"
META_FILE = "meta.json"
_NAME = re.compile(r"^checkpoint-(\d+)$")


class CheckpointMismatchError(TrainingError):
    """A checkpoint was written for a different model (conf, fields or vocabulary sizes)."""


class CheckpointDamagedError(TrainingError):
    """A checkpoint's files cannot be read."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the epoch it closes, state dicts, and the history recorded so far."""

    epoch: int
    model_state: dict[str, Any]
    optimizer_state: dict[str, Any]
    history: dict[str, Any]


def checkpoint_path(root: str | Path, epoch: int) -> Path:
    return Path(root) / f"checkpoint-{epoch}"


def latest_epoch(root: str | Path) -> int | None:
    """The highest epoch with a complete checkpoint under `root`, or None."""
    folder = Path(root)
    if not folder.is_dir():
        return None
    epochs = [int(m.group(1)) for p in folder.iterdir() if (m := _NAME.match(p.name)) and (p / META_FILE).is_file()]
    return max(epochs, default=None)


def save_checkpoint(root: str | Path, epoch: int, model_state: dict, optimizer_state: dict,
                    fingerprint: dict, history: dict) -> Path:
    """Write checkpoint-<epoch> atomically (tmp folder, then rename); returns its path."""
    import torch

    final = checkpoint_path(root, epoch)
    tmp = Path(root) / f".tmp-{final.name}-{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    with open(tmp / STATE_FILE, "wb") as state:
        torch.save({"model": model_state, "optimizer": optimizer_state}, state)
        _sync(state)
    with open(tmp / META_FILE, "w") as meta:
        meta.write(json.dumps({"epoch": epoch, "fingerprint": fingerprint, "history": history}, sort_keys=True))
        _sync(meta)
    sync_folder(tmp)  # its entries
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    sync_folder(Path(root))  # the rename
    return final


def _sync(file: Any) -> None:
    file.flush()
    os.fsync(file.fileno())


def sync_folder(folder: Path) -> None:
    """Flush a folder's entries (names created, renamed or removed in it) to disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_files(folder: Path) -> None:
    """Flush every file under `folder`, then every folder's entries, deepest first."""
    folders = []
    for parent, _, files in os.walk(folder):
        folders.append(Path(parent))
        for name in files:
            with open(Path(parent) / name, "rb") as file:
                os.fsync(file.fileno())
    for each in reversed(folders):
        sync_folder(each)


def load_checkpoint(root: str | Path, epoch: int, fingerprint: dict) -> Checkpoint:
    """Load checkpoint-<epoch> with weights_only=True after checking its fingerprint."""
    import torch

    folder = checkpoint_path(root, epoch)
    meta = _read_meta(folder)
    check_fingerprint(meta["fingerprint"], fingerprint, folder)
    try:
        state = torch.load(folder / STATE_FILE, weights_only=True)
        model_state, optimizer_state = state["model"], state["optimizer"]
    except Exception as exc:  # torch.load raises a dozen kinds for damaged bytes (struct, unicode, pickle, zip...)
        raise _damaged(folder, STATE_FILE, exc) from None
    return Checkpoint(epoch=meta["epoch"], model_state=model_state, optimizer_state=optimizer_state,
                      history=meta["history"])


def _read_meta(folder: Path) -> dict:
    """meta.json as save_checkpoint writes it, or CheckpointDamagedError: a resumed run reads each part."""
    try:
        meta = json.loads((folder / META_FILE).read_text())
        if not isinstance(meta, dict) or not {"epoch", "fingerprint", "history"} <= meta.keys():
            raise ValueError(f"keys {sorted(meta) if isinstance(meta, dict) else meta!r}, not epoch, fingerprint "
                             f"and history")
        history = meta["history"]
        if not (type(meta["epoch"]) is int and isinstance(meta["fingerprint"], dict) and isinstance(history, dict)
                and isinstance(history.get("steps"), list) and isinstance(history.get("epochs"), list)):
            raise ValueError("epoch must be a whole number, fingerprint an object and history an object with "
                             "steps and epochs lists")
        return meta
    except (OSError, ValueError) as exc:
        raise _damaged(folder, META_FILE, exc) from None


def _damaged(folder: Path, name: str, exc: Exception) -> CheckpointDamagedError:
    return CheckpointDamagedError(
        f"{folder / name} cannot be read ({type(exc).__name__}: {exc}); delete {folder} (the run resumes from the "
        f"checkpoint before it, or starts over) or run with --set train.resume=false")


def resumable_epoch(root: str | Path, fingerprint: dict) -> int | None:
    """The last checkpointed epoch a run with this fingerprint would resume after (None: a fresh start).

    Raises CheckpointMismatchError when that checkpoint was written for another model, and
    CheckpointDamagedError when its files cannot be read.
    """
    last = latest_epoch(root)
    if last is None:
        return None
    load_checkpoint(root, last, fingerprint)  # every rank waits on rank 0's load: it must not fail there
    return last


def prepare_start(root: str | Path, fingerprint: dict, *, resume: bool) -> int | None:
    """The driver's step before launching: with `resume`, `resumable_epoch` (a mismatch fails
    before any worker starts). Without it the run starts from scratch, and the checkpoints an
    earlier run of this version left are deleted first: kept, a later resumed run would pick up
    theirs (a higher epoch than this run reached) instead of this run's."""
    if resume:
        return resumable_epoch(root, fingerprint)
    remove_checkpoints(root)
    return None


def check_fingerprint(found: dict, expected: dict, where: Path) -> None:
    """Raise CheckpointMismatchError naming every key that differs."""
    keys = sorted(set(found) | set(expected))
    differences = [f"{k}: checkpoint has {found.get(k)!r}, this run has {expected.get(k)!r}"
                   for k in keys if found.get(k) != expected.get(k)]
    if differences:
        raise CheckpointMismatchError(
            f"{where} was written for a different model; delete it or train under another version. "
            + "; ".join(differences)
        )


def remove_checkpoints(root: str | Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
