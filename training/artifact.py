"""The trained model's folder `paths.models/<model_version>/` and its name.

Layout (docs/training.md):
  model.safetensors, model.json   weights and build arguments (mvke.artifact; no pickle)
  training.json                   date, window, split, table versions read, code version,
                                  train/model config, row counts, resume info, publish decision
  metrics.json                    validation metrics per objective
  curves.png                      training loss per step, validation metrics per epoch
  DONE                            written last: the folder is complete
Rank 0 writes the weights into a staging folder; the driver adds the rest and renames the
staging folder into place, so the version folder appears complete or not at all.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from core.config import Paths
from core.registry import model_dir
from training.checkpoint import sync_files, sync_folder

ROOT = Path(__file__).resolve().parent.parent
CODE_PACKAGES = ("core", "features", "jobs", "mvke", "training")
DONE_FILE = "DONE"
TRAINING_FILE = "training.json"
METRICS_FILE = "metrics.json"
PLOT_FILE = "curves.png"


def model_version(model_name: str, date: dt.date, fingerprint: dict[str, Any]) -> str:
    """`<model.name>-<D>-<8 hex of sha256(fingerprint)>`: the same inputs give the same name."""
    digest = hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{model_name}-{date.isoformat()}-{digest}"


def staging_dir(paths: Paths, version: str) -> Path:
    return Path(paths.models) / "_staging" / version


def checkpoint_dir(paths: Paths, version: str) -> Path:
    return Path(paths.models) / "_checkpoints" / version


def code_version(root: Path | None = None) -> dict[str, str | None]:
    """The git commit of the checkout (read from .git, no subprocess) and a hash of the source files."""
    root = root or ROOT
    return {"git_commit": _git_commit(root / ".git"), "source_sha256": source_hash(root)}


def finalize(staging: Path, paths: Paths, version: str, training: dict, metrics: dict) -> Path:
    """Add training.json, metrics.json and DONE to `staging`, then move it to the version folder.

    Everything else is on disk before DONE is written, and DONE before the rename: a host that
    loses power cannot leave a folder that says it is complete over empty files."""
    (staging / TRAINING_FILE).write_text(json.dumps(json_safe(training), indent=2, sort_keys=True))
    (staging / METRICS_FILE).write_text(json.dumps(json_safe(metrics), indent=2, sort_keys=True))
    sync_files(staging)
    with open(staging / DONE_FILE, "w") as done:
        done.write(dt.datetime.now(dt.timezone.utc).isoformat())
        done.flush()
        os.fsync(done.fileno())
    sync_folder(staging)  # DONE's name
    final = Path(model_dir(paths, version))
    if final.exists():
        old = final.with_name(f".replaced-{final.name}-{uuid.uuid4().hex}")
        os.replace(final, old)
        shutil.rmtree(old)
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staging, final)
    sync_folder(final.parent)  # the rename
    return final


def is_complete(folder: str | Path) -> bool:
    return (Path(folder) / DONE_FILE).is_file()


def json_safe(value: Any) -> Any:
    """NaN and infinities become None (strict JSON); containers are walked."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def _git_commit(git_dir: Path) -> str | None:
    head = git_dir / "HEAD"
    if not head.is_file():
        return None
    ref = head.read_text().strip()
    if not ref.startswith("ref: "):
        return ref or None
    name = ref.removeprefix("ref: ")
    loose = git_dir / name
    if loose.is_file():
        return loose.read_text().strip() or None
    packed = git_dir / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1] == name:
                return parts[0]
    return None


def source_hash(root: Path | None = None, packages: tuple[str, ...] = CODE_PACKAGES) -> str:
    """sha256 over the names and bytes of the .py files of `packages` under `root`."""
    root = root or ROOT
    digest = hashlib.sha256()
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(path.relative_to(root).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
