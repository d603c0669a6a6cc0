"""Whole models against the formulas: a batch goes in, each sample's logit is recomputed user by user
with loops over fields, kernels, behaviours and interests, straight from MVKE.md (MVKE) and seed 004
(MIND), reading only the model's parameters. This catches wiring slips the per-block tests cannot:
the wrong objective's tag head, gate or expert subset, a field embedded from the wrong table."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mvke.builder import build_model


def _field(model, spec, batch: dict, b: int) -> torch.Tensor:
    """F_u[i] of user b: a lookup, or the weighted mean of the present values (zero if none)."""
    embedding = model.field_embedding
    table = (model.tag_tower.id_embedding if spec.name in embedding.tag_fields else embedding.tables[spec.name]).weight
    if spec.kind == "single":
        return table[batch[spec.name][b]]
    total, weight_sum = torch.zeros(table.shape[1], dtype=table.dtype), 0.0
    for i, w in zip(batch[spec.name][b].tolist(), batch[spec.name + "_weights"][b].tolist()):
        if i != 0 and w > 0:
            total, weight_sum = total + w * table[i], weight_sum + w
    return total / weight_sum if weight_sum > 0 else total


def _mlp(seq, x: torch.Tensor) -> torch.Tensor:
    return seq[2](torch.relu(seq[0](x)))


def _tag(model, objective: str, tag: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
    """e_t^tau: shared id and category embeddings, the objective's own head."""
    tower = model.tag_tower
    return _mlp(tower.heads[objective], torch.cat([tower.id_embedding.weight[tag], tower.category_embedding.weight[category]]))


def _logit(model, u: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    return u @ e if model.output == "dot" else (u @ e) / (u.norm() * e.norm()) / model.temperature


def _history(model, batch: dict, b: int, q: torch.Tensor, dim: int) -> torch.Tensor:
    """Kernel history: the history field of user b pooled by the kernel with query q, softmax over the
    present behaviours of log w_l + (W_K e_l) . q / sqrt(E); zero without behaviours."""
    vke, name = model.experts, model.history_field
    spec = next(s for s in model.field_embedding.fields if s.name == name)
    table = (model.tag_tower.id_embedding if name in model.field_embedding.tag_fields
             else model.field_embedding.tables[name]).weight
    present = [(i, w) for i, w in zip(batch[name][b].tolist(), batch[name + "_weights"][b].tolist())
               if i != 0 and w > 0]
    if not present:
        return torch.zeros(dim, dtype=table.dtype)
    logits = torch.stack([math.log(w) + (vke.w_k.weight @ table[i]) @ q / math.sqrt(dim) for i, w in present])
    shares = torch.exp(logits - logits.max()) / torch.exp(logits - logits.max()).sum()
    assert spec.kind == "multi"
    return sum(s * table[i] for s, (i, _) in zip(shares, present))


def _gate(model, objective: str, e: torch.Tensor, subset: list[int]) -> torch.Tensor:
    """g(t) over the objective's kernels: raw e . VK_k, or the projected form; one-hot when hard."""
    gate, kernels = model.gates[objective], model.experts.kernels
    if gate.projected:
        raw = torch.stack([(gate.query.weight @ e + gate.query.bias) @ (gate.key.weight @ kernels[k] + gate.key.bias)
                           for k in subset]) / math.sqrt(kernels.shape[1])
    else:
        raw = torch.stack([e @ kernels[k] for k in subset])  # raw kernels, no scaling
    soft = torch.exp(raw) / torch.exp(raw).sum()
    return F.one_hot(soft.argmax(), len(subset)).to(soft.dtype) if gate.hard else soft


def _mvke_reference(model, batch: dict) -> dict[str, torch.Tensor]:
    vke = model.experts
    dim = vke.kernels.shape[1]
    names = [spec.name for spec in model.field_embedding.fields]
    out = {o: torch.empty(batch["tag"].shape[0], dtype=torch.float64) for o in model.objectives}
    for b in range(batch["tag"].shape[0]):
        shared = [_field(model, spec, batch, b) for spec in model.field_embedding.fields]
        experts = []
        for k in range(vke.kernels.shape[0]):
            q = vke.w_q.weight @ vke.kernels[k]
            fields = list(shared)
            if model.history_field is not None:
                fields[names.index(model.history_field)] = _history(model, batch, b, q, dim)
            scores = torch.stack([(vke.w_k.weight @ f) @ q / math.sqrt(dim) for f in fields])
            a = torch.exp(scores) / torch.exp(scores).sum()  # softmax over the fields
            hidden = [F.layer_norm(a[i] * (vke.w_v.weight @ f) + f, (dim,), vke.norm.weight, vke.norm.bias)
                      for i, f in enumerate(fields)]
            mlp = vke.experts
            experts.append(torch.relu(torch.cat(hidden) @ mlp.w1[k] + mlp.b1[k]) @ mlp.w2[k] + mlp.b2[k])
        for objective in model.objectives:
            e = _tag(model, objective, batch["tag"][b], batch["tag_category"][b])
            subset = model.gates[objective].experts.tolist()
            u = sum(g * experts[k] for g, k in zip(_gate(model, objective, e, subset), subset))
            out[objective][b] = _logit(model, u, e)
    return out


def _squash(z: torch.Tensor) -> torch.Tensor:
    n2 = z @ z
    return z * 0 if n2 == 0 else n2 / (1 + n2) * z / n2.sqrt()


def _mind_reference(model, batch: dict) -> dict[str, torch.Tensor]:
    routing, ids = model.extractor, model.tag_tower.id_embedding.weight
    name = model.sequence_field
    out = {o: torch.empty(batch["tag"].shape[0], dtype=torch.float64) for o in model.objectives}
    for b in range(batch["tag"].shape[0]):
        present = [(i, w) for i, w in zip(batch[name][b].tolist(), batch[name + "_weights"][b].tolist())
                   if i != 0 and w > 0]
        count = len(present)
        used = max(1, min(model.num_interests, math.floor(math.log2(count)) if count else 0))
        mapped = [routing.bilinear.weight @ ids[i] for i, _ in present]  # S e_i
        logits = [[m @ routing.routing_seed[j] for j in range(used)] for m in mapped]
        for step in range(routing.routing_iters):
            capsules = []
            for j in range(used):
                z = torch.zeros(ids.shape[1], dtype=ids.dtype)
                for (_, w), m, row in zip(present, mapped, logits):
                    z = z + w * (torch.exp(row[j]) / sum(torch.exp(x) for x in row)) * m
                capsules.append(_squash(z))
            if step + 1 < routing.routing_iters:
                logits = [[row[j] + capsules[j] @ m for j in range(used)] for m, row in zip(mapped, logits)]
        others = [] if model.field_embedding is None else [
            _field(model, spec, batch, b) for spec in model.field_embedding.fields]
        interests = [_mlp(model.interest_mlp, torch.cat([c, *others])) for c in capsules]
        for objective in model.objectives:
            e = _tag(model, objective, batch["tag"][b], batch["tag_category"][b])
            raw = torch.stack([model.power * (v @ e) for v in interests])
            attention = torch.exp(raw - raw.max()) / torch.exp(raw - raw.max()).sum()
            out[objective][b] = _logit(model, sum(a * v for a, v in zip(attention, interests)), e)
    return out


def _flat(model, batch: dict, b: int) -> torch.Tensor:
    return torch.cat([_field(model, spec, batch, b) for spec in model.field_embedding.fields])


def _single_vector_reference(model, batch: dict) -> dict[str, torch.Tensor]:
    """two_tower: one MLP over the fields; hard sharing: a shared ReLU layer, then one MLP head per
    objective; MMoE: K expert MLPs over the fields, mixed by a softmax of a linear map of the fields
    over the objective's experts."""
    out = {o: torch.empty(batch["tag"].shape[0], dtype=torch.float64) for o in model.objectives}
    for b in range(batch["tag"].shape[0]):
        flat = _flat(model, batch, b)
        for objective in model.objectives:
            if hasattr(model, "user_tower"):
                u = _mlp(model.user_tower, flat)
            elif hasattr(model, "bottom"):
                u = _mlp(model.heads[objective], torch.relu(model.bottom[0](flat)))
            else:
                mlp, gate = model.experts, model.gates[objective]
                logits = gate.weight @ flat + gate.bias
                weights = torch.exp(logits) / torch.exp(logits).sum()
                u = sum(w * (torch.relu(flat @ mlp.w1[k] + mlp.b1[k]) @ mlp.w2[k] + mlp.b2[k])
                        for w, k in zip(weights, model.expert_sets[objective]))
            e = _tag(model, objective, batch["tag"][b], batch["tag_category"][b])
            out[objective][b] = _logit(model, u, e)
    return out


REFERENCES = {"mvke": _mvke_reference, "mind": _mind_reference, "two_tower": _single_vector_reference,
              "hard_sharing": _single_vector_reference, "mmoe": _single_vector_reference}


@pytest.mark.parametrize("case", ["mvke", "mvke_cosine", "mvke_sets", "mvke_tag_fields", "mvke_projected",
                                  "mvke_hard", "mvke_projected_hard_cosine", "mvke_kernel_history",
                                  "mvke_kernel_history_tag_fields",
                                  "mind", "mind_cosine", "mind_power", "mind_tag_fields",
                                  "two_tower", "two_tower_cvr_cosine", "two_tower_tag_fields",
                                  "hard_sharing", "hard_sharing_cosine", "hard_sharing_tag_fields",
                                  "mmoe", "mmoe_cosine", "mmoe_tag_fields"])
def test_forward_equals_the_formulas_computed_by_hand(case, toy, conf_for):
    conf = conf_for(case)
    model = build_model(conf, toy.fields, toy.num_tags, toy.num_categories).double().eval()
    batch = toy.batch(10, seed=7)
    batch = {k: v.double() if isinstance(v, torch.Tensor) and v.is_floating_point() else v for k, v in batch.items()}
    with torch.no_grad():
        got = model(batch)
        expected = REFERENCES[conf.name](model, batch)
    assert set(got) == set(expected)
    for objective in got:
        # MIND's squash adds 1e-9 under the square root; the rest agrees to rounding
        torch.testing.assert_close(got[objective], expected[objective], atol=1e-8, rtol=1e-8)
