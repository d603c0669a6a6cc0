"""The `tag_index` table: the tag side of the scan, once per model version.

One row per (model_version, objective, tag): the gate g[t, :] over the objective's experts, the
tag vector e_t and the serving vector concat_k g[t, k] e_t, which a user's concat_k x_k(u) scores
with one dot product (docs/scoring.md). The table is partitioned by model_version, so a version
is written, or replaced, by one atomic commit and read without touching the others.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from core import delta
from mvke.base import ProfileModel
from mvke.fields import UNKNOWN_ID
from mvke.serving import TagSide, serving_tag_matrix
from scoring.inputs import ScoringInputError
from scoring.scan import ObjectiveTags, ScanTags
from scoring.topn import UndefinedScoreError

PARTITION = "model_version"
VECTOR = pa.list_(pa.float32())
SCHEMA = pa.schema([
    pa.field("model_version", pa.string()),
    pa.field("objective", pa.string()),
    pa.field("tag_id", pa.string()),
    pa.field("tag_index", pa.int32()),
    pa.field("category_id", pa.int32()),
    pa.field("gate", VECTOR),
    pa.field("tag_vector", VECTOR),
    pa.field("serving_vector", VECTOR),
])
ENCODING = ["tag_id", "tag_index", "category_id"]


@dataclass(frozen=True)
class TagIndex:
    """The rows of one model version and whether this run wrote them."""

    rows: pa.Table
    written: bool
    table_version: int | None


def compute_tag_index(model: ProfileModel, model_version: str, tags: pa.Table) -> pa.Table:
    """Rows of `tags` (tag_id, tag_index, category_id; all seen by the model) for every objective."""
    tag = torch.from_numpy(tags["tag_index"].to_numpy().astype(np.int64))  # [T]
    category = torch.from_numpy(model_category_ids(tags["category_id"], model.spec.num_categories))  # [T]
    with torch.inference_mode():
        sides = model.tag_vectors(tag, category)
    parts = []
    for objective, side in sides.items():
        gate = None if side.gate is None else side.gate.float().numpy()  # [T, S]
        serving = serving_tag_matrix(side).float().numpy() if side.combine == "gate" else None  # [T, S*E]
        parts.append(pa.table({
            "model_version": pa.array([model_version] * tags.num_rows, pa.string()),
            "objective": pa.array([objective] * tags.num_rows, pa.string()),
            "tag_id": tags["tag_id"],
            "tag_index": tags["tag_index"],
            "category_id": tags["category_id"],
            "gate": _vectors(gate, tags.num_rows),
            "tag_vector": _vectors(side.emb.float().numpy(), tags.num_rows),
            "serving_vector": _vectors(serving, tags.num_rows),
        }, schema=SCHEMA))
    return pa.concat_tables(parts)


def model_category_ids(category_id: pa.Array | pa.ChunkedArray, num_categories: int) -> np.ndarray:
    """The category ids the model is given for tags: null -> 0 (missing), an id the model has not
    seen (>= `num_categories`) -> 1 (unknown)."""
    ids = pc.fill_null(category_id, 0).to_numpy().astype(np.int64)
    return np.where(ids >= num_categories, UNKNOWN_ID, ids)


def read_tag_index(uri: str, model_version: str, version: int | None = None) -> pa.Table | None:
    """The rows of `model_version` (at table `version`, default latest), or None if the table or that
    model version is absent."""
    if model_version not in delta.partition_values(uri, PARTITION, version):
        return None
    # read_arrow opens the files by their real paths (delta-rs's file_uris() %-encode a local folder's spaces).
    return delta.read_arrow(uri, version, partition={PARTITION: model_version}).select(SCHEMA.names).cast(SCHEMA)


def ensure_tag_index(uri: str, model: ProfileModel, model_version: str, tags: pa.Table,
                     commit_info: Mapping[str, str]) -> TagIndex:
    """The tag index of `model_version` for `tags`: the stored rows when they hold every tag with the
    same encoding and the vectors this model computes (to 1e-6), else the computed rows, written in
    one commit that replaces that version's rows (a new tag, a changed category, or a model folder
    replaced under the same version all lead here).

    A rewrite keeps the stored tags that are not in `tags` (retired since, or left out of a rerun
    of an earlier date), computed again by this model with their stored encoding: the rows of a
    version are every tag it has scored, so the check below still knows their tag_index.

    A tag whose tag_index differs from the one stored for this model version, or a new tag with
    the tag_index of a stored one, means the tag vocabulary was rebuilt after training:
    ScoringInputError, nothing written.
    """
    rows = compute_tag_index(model, model_version, tags)
    _check_finite(rows, model_version)

    def once() -> TagIndex:
        # again after another scoring run of this model wrote the rows first: they are then the same,
        # or hold tags of another date this run must keep
        read = delta.table_version(uri)
        existing = None if read is None else read_tag_index(uri, model_version, read)
        written = rows
        if existing is not None:
            _check_same_vocabulary(existing, tags, model_version)
            if _holds(existing, rows):
                return TagIndex(rows=existing, written=False, table_version=read)
            retired = _stored_tags_not_in(existing, tags)
            if retired.num_rows:
                kept = compute_tag_index(model, model_version, retired)
                _check_finite(kept, model_version)
                written = pa.concat_tables([rows, kept])
        version = delta.write_arrow(written, uri, mode="overwrite", partition_by=[PARTITION],
                                    replace_partitions=[model_version], commit_info=dict(commit_info),
                                    replaced_as_of=read)  # lands only on the rows it read
        return TagIndex(rows=written, written=True, table_version=version)

    return delta.retry_on_conflict(once)


def scan_tags(rows: pa.Table, tags: pa.Table, probe: Mapping[str, TagSide]) -> ScanTags:
    """The scan's tag side: the tag_index rows of `tags` (in their tag_index order), per objective.

    `probe` gives each objective's experts, combination and power (the model's own TagSides).
    """
    wanted = tags["tag_id"]
    objectives = {}
    for objective, side in probe.items():
        part = rows.filter(pc.equal(rows["objective"], objective))
        part = part.take(pc.index_in(wanted, part["tag_id"]))  # one row per wanted tag, in `tags` order
        gate = _matrix(part["gate"]) if side.combine == "gate" else None
        serving = _matrix(part["serving_vector"]) if side.combine == "gate" else None
        objectives[objective] = ObjectiveTags(experts=side.experts.numpy().astype(np.int64), gate=gate,
                                              emb=_matrix(part["tag_vector"]), serving=serving,
                                              combine=side.combine, power=float(side.power))
    return ScanTags(tag_ids=np.asarray(wanted.to_pylist(), dtype=object), objectives=objectives)


def probe_sides(model: ProfileModel) -> dict[str, TagSide]:
    """Each objective's TagSide for one tag: its experts, combination and power, not its vectors.

    The probe is the unknown tag of the unknown category: rows every model has, even one trained
    when no tag had a category (num_categories 2)."""
    unknown = torch.tensor([UNKNOWN_ID])
    with torch.inference_mode():
        return model.tag_vectors(unknown, unknown)


def _check_same_vocabulary(existing: pa.Table, tags: pa.Table, model_version: str) -> None:
    """Every tag keeps its stored tag_index, and no new tag takes the tag_index of a stored one."""
    stored = dict(zip(existing["tag_id"].to_pylist(), existing["tag_index"].to_pylist()))
    holders = {i: t for t, i in stored.items()}
    changed = []
    for tag, index in zip(tags["tag_id"].to_pylist(), tags["tag_index"].to_pylist()):
        if tag in stored and stored[tag] != index:
            changed.append(f"{tag}: {stored[tag]} -> {index}")
        elif tag not in stored and index in holders:
            changed.append(f"{tag}: {index}, stored for {holders[index]}")
    if changed:
        shown = ", ".join(changed[:5])
        raise ScoringInputError(f"tag encoding changed since tag_index was written for model {model_version} "
                                f"({len(changed)} tags, e.g. {shown}): the tags table does not match the model")


def _stored_tags_not_in(existing: pa.Table, tags: pa.Table) -> pa.Table:
    """The stored encoding (tag_id, tag_index, category_id) of the tags of `existing` missing from `tags`."""
    one_objective = existing.filter(pc.equal(existing["objective"], existing["objective"][0]))
    missing = one_objective.filter(pc.invert(pc.is_in(one_objective["tag_id"], tags["tag_id"])))
    return missing.select(ENCODING).cast(tags.select(ENCODING).schema).sort_by("tag_index")


def _check_finite(rows: pa.Table, model_version: str) -> None:
    """UndefinedScoreError when a tag's gate or vectors hold NaN or inf: every score of that tag
    would be undefined, and the rows must not be stored as the version's index."""
    broken_tags: set[str] = set()
    for objective in pc.unique(rows["objective"]).to_pylist():  # one width per objective and column
        part = rows.filter(pc.equal(rows["objective"], objective))
        broken = np.zeros(part.num_rows, dtype=bool)
        for column in ("gate", "tag_vector", "serving_vector"):
            if part[column].null_count == 0:  # MIND has no gate and no serving vector
                broken |= ~np.isfinite(_matrix(part[column])).all(axis=1)
        broken_tags.update(part.filter(pa.array(broken))["tag_id"].to_pylist())
    if broken_tags:
        raise UndefinedScoreError(f"model {model_version} gives NaN or inf tag vectors for {len(broken_tags)} "
                                  f"tags, e.g. {min(broken_tags)}: the model's weights are broken; nothing was written")


def _holds(existing: pa.Table, computed: pa.Table) -> bool:
    """`existing` has a row for every (objective, tag) of `computed`, same encoding and vectors."""
    keys = ["objective", *ENCODING]
    stored = existing.filter(pc.is_in(existing["tag_id"], computed["tag_id"]))
    if stored.num_rows != computed.num_rows:
        return False
    order = [(k, "ascending") for k in keys]
    stored, computed = stored.sort_by(order), computed.sort_by(order)
    if not stored.select(keys).equals(computed.select(keys)):
        return False
    for column in ("gate", "tag_vector", "serving_vector"):
        old, new = stored[column].combine_chunks(), computed[column].combine_chunks()
        if not pc.list_value_length(old).equals(pc.list_value_length(new)):
            return False
        if not np.allclose(old.flatten().to_numpy(), new.flatten().to_numpy(), rtol=0, atol=1e-6):
            return False
    return True


def _vectors(matrix: np.ndarray | None, rows: int) -> pa.Array:
    """[T, D] float32 -> list<float> [T]; None -> T nulls."""
    if matrix is None:
        return pa.nulls(rows, VECTOR)
    width = matrix.shape[1]
    offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * width)
    return pa.ListArray.from_arrays(offsets, pa.array(np.ascontiguousarray(matrix).reshape(-1), pa.float32()))


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    """list<float> [T] of equal lengths -> [T, D] float32."""
    array = column.combine_chunks()
    width = len(array[0]) if len(array) else 0
    return array.flatten().to_numpy().astype(np.float32).reshape(len(array), width)
