"""A trained model on disk: `model.safetensors` (weights, no pickle) + `model.json` (conf, fields, sizes).

`load_model(dir)` rebuilds the model with `build_model` from the JSON and loads the weights;
missing, unreadable or mismatched files raise ValueError. Nothing is unpickled. A format 1
`model.json` names every ModelConf key: a missing key is an error, never a default, since a
default can build a different model than the one the weights were trained in.
"""
from __future__ import annotations

import dataclasses
import json
import typing
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from core.config import ModelConf
from mvke.base import ProfileModel
from mvke.builder import build_model
from mvke.fields import FieldSpec

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
FORMAT_VERSION = 1


def save_model(model: ProfileModel, conf: ModelConf, fields: Sequence[FieldSpec], num_tags: int,
               num_categories: int, dir: str | Path) -> Path:
    """Write the weights and the build arguments into `dir` (created if needed); returns `dir`."""
    fields = tuple(fields)
    if model.spec is not None and (model.spec.conf, model.spec.fields, model.spec.num_tags,
                                   model.spec.num_categories) != (conf, fields, num_tags, num_categories):
        raise ValueError("save_model: conf, fields or sizes differ from those the model was built with")
    out = Path(dir)
    out.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE),
              metadata={"format_version": str(FORMAT_VERSION), "weights_id": uuid.uuid4().hex})
    meta = {
        "format_version": FORMAT_VERSION,
        "model_conf": _conf_to_json(conf),
        "fields": [dataclasses.asdict(f) for f in fields],
        "num_tags": num_tags,
        "num_categories": num_categories,
    }
    (out / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return out


def load_model(dir: str | Path) -> ProfileModel:
    """The model saved in `dir`, in eval mode, with `model.spec` set. Raises ValueError on missing or
    mismatched files."""
    root = Path(dir)
    weights_path, meta_path = root / WEIGHTS_FILE, root / META_FILE
    for path in (meta_path, weights_path):
        if not path.is_file():
            raise ValueError(f"model artifact incomplete: {path} is missing")
    meta = _read_meta(meta_path)
    conf = _conf_from_json(meta["model_conf"])
    fields = tuple(_field_from_json(f) for f in meta["fields"])
    model = build_model(conf, fields, int(meta["num_tags"]), int(meta["num_categories"]))
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{weights_path} is not a readable safetensors file: {exc}") from exc
    _check_state(model, state, weights_path)
    model.load_state_dict(state)
    return model.eval()


def weights_id(dir: str | Path) -> str | None:
    """The id `save_model` wrote into the weights file's header (None for a file saved without one):
    another save, even of the same weights in the same folder, has another id."""
    try:
        with safe_open(str(Path(dir) / WEIGHTS_FILE), framework="pt") as weights:
            return (weights.metadata() or {}).get("weights_id")
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"{Path(dir) / WEIGHTS_FILE} is not a readable safetensors file: {exc}") from exc


def saved_num_tags(dir: str | Path) -> int:
    """The tag vocabulary size of the model saved in `dir` (its model.json; the weights are not read)."""
    return int(_read_meta(Path(dir) / META_FILE)["num_tags"])


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object")
    missing = [k for k in ("format_version", "model_conf", "fields", "num_tags", "num_categories") if k not in meta]
    if missing:
        raise ValueError(f"{path}: missing keys {missing}")
    if meta["format_version"] != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {meta['format_version']!r}, this code reads {FORMAT_VERSION}")
    return meta


def _check_state(model: ProfileModel, state: dict[str, torch.Tensor], path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} does not match the model in {META_FILE}: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for name, tensor in expected.items():
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ValueError(f"{path}: {name} has shape {tuple(state[name].shape)}, "
                             f"the model expects {tuple(tensor.shape)}")


def _conf_to_json(conf: ModelConf) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(conf)))


def _conf_from_json(raw: Any) -> ModelConf:
    if not isinstance(raw, dict):
        raise ValueError("model.json: model_conf must be an object")
    hints = typing.get_type_hints(ModelConf)
    unknown = sorted(set(raw) - set(hints))
    if unknown:
        raise ValueError(f"model.json: unknown model_conf keys {unknown}")
    missing = sorted({f.name for f in dataclasses.fields(ModelConf)} - set(raw))
    if missing:
        raise ValueError(f"model.json: model_conf lacks keys {missing}; format_version {FORMAT_VERSION} "
                         f"records every key, so this file is damaged or was written by other code")
    values = {}
    for name, value in raw.items():
        origin = typing.get_origin(hints[name])
        if origin is tuple:
            value = tuple(value)
        elif origin is dict and typing.get_origin(typing.get_args(hints[name])[1]) is tuple:
            value = {k: tuple(v) for k, v in value.items()}
        values[name] = value
    return ModelConf(**values)


def _field_from_json(raw: Any) -> FieldSpec:
    names = {f.name for f in dataclasses.fields(FieldSpec)}
    if not isinstance(raw, dict) or set(raw) != names:
        raise ValueError(f"model.json: a field must have exactly the keys {sorted(names)}, got {raw!r}")
    return FieldSpec(name=raw["name"], kind=raw["kind"], vocab_size=int(raw["vocab_size"]))
