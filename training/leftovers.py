"""What training runs leave behind when they die, and which of it `vacuum` may delete.

A training run writes three kinds of scratch under the models root, and removes each when it
ends well: the staging folder of the version (`_staging/<version>`), its per-epoch checkpoints
(`_checkpoints/<version>`), and the Petastorm copies of its examples (`paths.petastorm_root`).
A run that is killed (SIGKILL, a lost node) leaves them; a rerun for the same version picks
the checkpoints up, but once new data or a deploy renames the version nothing else would.
`finalize` can also leave a `.replaced-<version>-*` folder when it dies between its rename and
its delete. All of these can be rebuilt by training again, so they are deleted once older than
the retention window (the newest file inside decides the age, so a run still writing keeps
its scratch).

A complete model folder without a registry row (a job that died between `finalize` and the
registry commit, and was never rerun) holds weights that nothing can rebuild bit for bit: it
is only reported, never deleted; rerun the training of its date, or delete it by hand.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from core import registry
from core.config import Paths, normalise_path
from training import artifact


@dataclass(frozen=True)
class Leftover:
    path: str
    kind: str  # one of KINDS
    age_hours: float


KINDS = {
    "staging": "staging folder of a run that never finished",
    "checkpoints": "checkpoints of a run that never finished",
    "petastorm": "Petastorm copy of a run's examples",
    "replaced": "model folder a rerun replaced",
}
UNREGISTERED = "complete model folder with no registry row (kept)"
# How Petastorm names each copy: '{time}-appid-{spark application id}-{uuid4}'. Only such folders
# are swept from the cache root, whatever else may live there.
PETASTORM_COPY = re.compile(r"^\d{14}-appid-.+-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def find(paths: Paths, retention_hours: float, *, now: float | None = None) -> tuple[list[Leftover], list[Leftover]]:
    """(deletable scratch older than the window, unregistered model folders of any age), oldest first.

    `paths.models` and `paths.petastorm_cache` are filesystem paths (the config refuses store URIs)."""
    models = _local(paths.models)
    now = time.time() if now is None else now
    candidates = [(models / "_staging", "staging"), (models / "_checkpoints", "checkpoints"),
                  (_local(paths.petastorm_root), "petastorm")]
    found = [Leftover(str(folder), kind, _age_hours(folder, now))
             for parent, kind in candidates for folder in _folders(parent)
             if kind != "petastorm" or PETASTORM_COPY.match(folder.name)]
    found += [Leftover(str(folder), "replaced", _age_hours(folder, now))
              for folder in _folders(models) if folder.name.startswith(".replaced-")]
    stale = [f for f in found if f.age_hours >= retention_hours]
    return sorted(stale, key=lambda f: -f.age_hours), _unregistered(paths, models, now)


def remove(leftovers: list[Leftover]) -> list[tuple[Leftover, str]]:
    """Delete the folders; return those that could not be (all or part of them is still there), with why."""
    failed = []
    for leftover in leftovers:
        try:
            shutil.rmtree(leftover.path)
        except FileNotFoundError:  # gone already
            pass
        except OSError as exc:
            failed.append((leftover, f"{type(exc).__name__}: {exc}"))
    return failed


def describe(leftover: Leftover) -> str:
    what = KINDS.get(leftover.kind, UNREGISTERED)
    return f"{leftover.path} ({what}, {leftover.age_hours:.0f} h old)"


def _unregistered(paths: Paths, models: Path, now: float) -> list[Leftover]:
    records = registry.list_models(paths)
    known = {r.model_version for r in records} | {normalise_path(r.path) for r in records if r.path}
    return [Leftover(str(folder), "unregistered", _age_hours(folder, now))
            for folder in _folders(models)
            if not folder.name.startswith(("_", ".")) and artifact.is_complete(folder)
            and folder.name not in known and normalise_path(str(folder)) not in known]


def _local(path: str) -> Path:
    return Path(path.removeprefix("file://"))


def _folders(parent: Path) -> list[Path]:
    if not parent.is_dir():
        return []
    return sorted(p for p in parent.iterdir() if p.is_dir() and not p.is_symlink())


def _age_hours(folder: Path, now: float) -> float:
    """Hours since anything in `folder` (the folder included) last changed."""
    newest = folder.lstat().st_mtime
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            try:
                newest = max(newest, os.lstat(os.path.join(root, name)).st_mtime)
            except FileNotFoundError:  # removed while we looked: the run is still at work
                newest = now
    return max(0.0, (now - newest) / 3600)
