"""A tiny warehouse for the scoring tests: fields, user_features, tags, and a registered model.

Users and tags are inline rows in the documented schemas (docs/tables.md). The reference
scores come from the model's own `forward` on every (user, tag) pair, built here from the
raw rows without any scoring code.
"""
from __future__ import annotations

import dataclasses
import datetime as dt

import numpy as np
import pyarrow as pa
import torch

from core import delta, registry
from core.config import Config, ModelConf, Paths, ScoreConf
from core.tables import Warehouse, warehouse_uri
from mvke.artifact import save_model
from mvke.builder import build_model
from mvke.fields import FieldSpec

D1, D2 = dt.date(2026, 11, 5), dt.date(2026, 11, 6)
NUM_TAGS = 14  # the model knows tag ids 2..13
NUM_CATEGORIES = 5
MODEL_FIELDS = (
    FieldSpec("age", "single", 6),
    FieldSpec("city", "single", 8),
    FieldSpec("clicked_tags", "multi", NUM_TAGS),
    FieldSpec("interests", "multi", 7),
)
# The feature job's view tonight: vocabularies grew after training (new ids map to 1, unknown).
TABLE_FIELDS = (
    ("age", "single", "bucket", 6),
    ("city", "single", "vocab", 10),
    ("clicked_tags", "multi", "vocab", NUM_TAGS + 2),
    ("interests", "multi", "vocab", 9),
)
MODEL_CASES = {
    "mvke": {},
    "mvke_cosine": {"output": "cosine", "temperature": 0.5},
    "mind": {"name": "mind", "mind_interests": 3},
}
T0 = dt.datetime(2026, 11, 4, 3, 0, tzinfo=dt.timezone.utc)
MULTI = pa.list_(pa.int32())
WEIGHTS = pa.list_(pa.float32())


def model_conf(case: str) -> ModelConf:
    return dataclasses.replace(ModelConf(), embedding_dim=8, hidden_dim=16, seed=5, **MODEL_CASES[case])


def make_users(count: int, seed: int) -> list[dict]:
    """user_features rows: some fields missing (0, null, empty), some ids newer than the model."""
    rng = np.random.default_rng(seed)
    users = []
    for i in range(count):
        clicked = rng.integers(1, NUM_TAGS + 2, rng.integers(0, 7)).tolist()
        interests = rng.integers(2, 9, rng.integers(0, 4)).tolist()
        users.append({
            "user_id": f"u{seed}_{i:02d}",
            "age": int(rng.integers(0, 6)),
            "city": int(rng.integers(1, 10)),
            "clicked_tags": clicked,
            "clicked_tags_weights": rng.uniform(0.5, 2.0, len(clicked)).astype(np.float32).tolist(),
            "interests": interests,
            "interests_weights": rng.uniform(0.5, 2.0, len(interests)).astype(np.float32).tolist(),
        })
    users[0].update(age=None, clicked_tags=None, clicked_tags_weights=None)
    users[1].update(interests=[], interests_weights=[])
    # Every id known to the model but one newer than it, at weight 0: it does not count as unknown.
    users[2].update(age=2, city=3, clicked_tags=[2], clicked_tags_weights=[1.0],
                    interests=[3, 8], interests_weights=[1.0, 0.0])
    return users


def make_tags() -> list[dict]:
    """12 tags the model knows (one with no category, one with a category newer than the model),
    and one tag created after training (tag_index beyond the model's vocabulary)."""
    tags = [{"tag_id": f"t{i:02d}", "tag_index": i, "category_id": 2 + i % 3} for i in range(2, NUM_TAGS)]
    tags[0]["category_id"] = 0
    tags[5]["category_id"] = NUM_CATEGORIES + 1
    tags.append({"tag_id": "t_new", "tag_index": NUM_TAGS, "category_id": 2})
    return tags


def is_missing(user: dict) -> bool:
    single = any(not user[f.name] for f in MODEL_FIELDS if f.kind == "single")
    multi = any(not any(i > 0 and w > 0 for i, w in zip(user[f.name] or [], user[f.name + "_weights"] or []))
                for f in MODEL_FIELDS if f.kind == "multi")
    return single or multi


def has_unknown(user: dict) -> bool:
    """An id at or past the model's vocabulary that reaches the score (a multi field's at weight > 0)."""
    for f in MODEL_FIELDS:
        if f.kind == "single":
            values = [(user[f.name], 1.0)]
        else:
            values = zip(user[f.name] or [], user[f.name + "_weights"] or [])
        if any(i is not None and i >= f.vocab_size and w > 0 for i, w in values):
            return True
    return False


def reference_probabilities(model, users: list[dict], tags: list[dict]) -> dict[str, np.ndarray]:
    """sigmoid(model.forward) of every (user, tag) pair, float64 [U, T]; plus ctr_x_cvr."""
    def known(i, size):
        return 1 if i >= size else i

    rows, cols = np.repeat(np.arange(len(users)), len(tags)), np.tile(np.arange(len(tags)), len(users))
    batch = {}
    for f in MODEL_FIELDS:
        if f.kind == "single":
            batch[f.name] = torch.tensor([known(users[r][f.name] or 0, f.vocab_size) for r in rows])
            continue
        width = max(1, max(len(u[f.name] or []) for u in users))
        ids = [[known(i, f.vocab_size) for i in users[r][f.name] or []] for r in rows]
        weights = [list(users[r][f.name + "_weights"] or []) for r in rows]
        batch[f.name] = torch.tensor([v + [0] * (width - len(v)) for v in ids])
        batch[f.name + "_weights"] = torch.tensor([v + [0.0] * (width - len(v)) for v in weights])
    batch["tag"] = torch.tensor([known(tags[c]["tag_index"], NUM_TAGS) for c in cols])
    batch["tag_category"] = torch.tensor([known(tags[c]["category_id"], NUM_CATEGORIES) for c in cols])
    with torch.no_grad():
        logits = model(batch)
    probs = {o: torch.sigmoid(v.double()).numpy().reshape(len(users), len(tags)) for o, v in logits.items()}
    if {"ctr", "cvr"} <= set(probs):
        probs["ctr_x_cvr"] = probs["ctr"] * probs["cvr"]
    return probs


def expected_profiles(probs: dict[str, np.ndarray], users: list[dict], tags: list[dict], *, date: dt.date,
                      version: str, top_n: dict[str, int], min_score: float = 0.0,
                      excluded: tuple[str, ...] = ()) -> list[tuple]:
    """Brute force: per user and objective, argsort of the full score row (ties: lower tag_index)."""
    allowed = np.array([t["tag_index"] < NUM_TAGS and t["tag_id"] not in excluded for t in tags])
    tag_index = np.array([t["tag_index"] for t in tags])
    rows = []
    for objective, n in top_n.items():
        for u, user in enumerate(users):
            scores = np.where(allowed, probs[objective][u], -np.inf)
            order = np.lexsort((tag_index, -scores))[: min(n, allowed.sum())]
            kept = [c for c in order if scores[c] >= min_score]
            rows += [(date, user["user_id"], objective, rank, tags[c]["tag_id"], float(scores[c]), version)
                     for rank, c in enumerate(kept, start=1)]
    return rows


class World:
    """Warehouse tables and model registry under one tmp folder."""

    def __init__(self, root) -> None:
        self.paths = Paths(raw=str(root / "raw"), warehouse=str(root / "warehouse"), models=str(root / "models"))
        self.models: dict[str, object] = {}

    def config(self, **score) -> Config:
        return Config(paths=self.paths, score=ScoreConf(**score))

    def uri(self, table: Warehouse) -> str:
        return warehouse_uri(self.paths, table)

    def publish(self, version: str, case: str = "mvke", status=registry.ModelStatus.PUBLISHED, minute: int = 0,
                tamper=None, trained_for: dt.date = D1):
        """Register a fresh model; `tamper(model)` may change its weights before it is saved."""
        conf = model_conf(case)
        model = build_model(conf, MODEL_FIELDS, NUM_TAGS, NUM_CATEGORIES).eval()
        if tamper is not None:
            tamper(model)
        path = registry.model_dir(self.paths, version)
        save_model(model, conf, MODEL_FIELDS, NUM_TAGS, NUM_CATEGORIES, path)
        registry.register(self.paths, registry.ModelRecord(version, trained_for, status,
                                                           T0 + dt.timedelta(minutes=minute), {}, path))
        self.models[version] = model
        return model

    def write_fields(self, rows=TABLE_FIELDS, definitions: dict[str, str] | None = None) -> None:
        """The fields table; with `definitions` ({field: definition}) its definition column too."""
        columns = {
            "name": [r[0] for r in rows], "kind": [r[1] for r in rows], "encoding": [r[2] for r in rows],
            "source": [f"test.{r[0]}" for r in rows], "vocab_size": pa.array([r[3] for r in rows], pa.int32()),
        }
        if definitions is not None:
            columns["definition"] = [definitions.get(r[0]) for r in rows]
        table = pa.table(columns)
        delta.write_arrow(table, self.uri(Warehouse.FIELDS), mode="overwrite")

    def write_users(self, date: dt.date, users: list[dict], schema_overrides: dict | None = None) -> None:
        types = {"age": pa.int32(), "city": pa.int32(), "clicked_tags": MULTI, "clicked_tags_weights": WEIGHTS,
                 "interests": MULTI, "interests_weights": WEIGHTS, **(schema_overrides or {})}
        columns = {"dt": pa.array([date] * len(users), pa.date32()),
                   "user_id": pa.array([u["user_id"] for u in users], pa.string())}
        columns.update({name: pa.array([u[name] for u in users], kind) for name, kind in types.items()})
        delta.write_arrow(pa.table(columns), self.uri(Warehouse.USER_FEATURES), mode="overwrite",
                          partition_by=["dt"], replace_partitions=[date.isoformat()])

    def write_tags(self, date: dt.date, tags: list[dict]) -> None:
        n = len(tags)
        table = pa.table({
            "dt": pa.array([date] * n, pa.date32()),
            "tag_id": [t["tag_id"] for t in tags],
            "tag_index": pa.array([t["tag_index"] for t in tags], pa.int32()),
            "tag_name": [f"name {t['tag_id']}" for t in tags],
            "category": [f"c{t['category_id']}" for t in tags],
            "category_id": pa.array([t["category_id"] for t in tags], pa.int32()),
            "impressions": pa.array([10] * n, pa.int64()),
            "clicks": pa.array([1] * n, pa.int64()),
            "conversions": pa.array([0] * n, pa.int64()),
            "popularity_rank": pa.array(list(range(1, n + 1)), pa.int32()),
        })
        delta.write_arrow(table, self.uri(Warehouse.TAGS), mode="overwrite", partition_by=["dt"],
                          replace_partitions=[date.isoformat()])

    def day(self, date: dt.date, users: list[dict], tags: list[dict]) -> None:
        self.write_users(date, users)
        self.write_tags(date, tags)

    def profiles(self, spark, date: dt.date | None = None):
        df = delta.read_table(spark, self.uri(Warehouse.USER_TAG_PROFILES))
        return df if date is None else df.where(df.dt == date)
