"""Each building block against an independent, loop-by-loop computation of its definition."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mvke.experts import VirtualKernelExperts
from mvke.fields import FieldSpec
from mvke.gate import VirtualKernelGate
from mvke.layers import FieldEmbedding, weighted_mean
from mvke.mind import InterestExtractor, interest_count_mask, squash
from mvke.tag_tower import TagTower


def test_field_embedding_single_and_weighted_mean():
    torch.manual_seed(0)
    fields = [FieldSpec("a", "single", 4), FieldSpec("m", "multi", 6)]
    emb = FieldEmbedding(fields, 3)
    batch = {
        "a": torch.tensor([2, 0, 1]),
        "m": torch.tensor([[2, 3, 0], [0, 0, 0], [5, 1, 0]]),
        "m_weights": torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0], [2.0, 2.0, 0.0]]),
        "user_id": ["x", "y", "z"],
    }
    out = emb(batch)
    assert out.shape == (3, 2, 3)
    a_table, m_table = emb.tables["a"].weight, emb.tables["m"].weight
    torch.testing.assert_close(out[0, 0], a_table[2])
    torch.testing.assert_close(out[1, 0], torch.zeros(3))  # id 0 = missing -> zero vector
    torch.testing.assert_close(out[2, 0], a_table[1])  # id 1 = unknown, a learned vector
    torch.testing.assert_close(out[0, 1], (1 * m_table[2] + 3 * m_table[3]) / 4)
    torch.testing.assert_close(out[2, 1], (m_table[5] + m_table[1]) / 2)
    torch.testing.assert_close(out[1, 1], torch.zeros(3))


def test_a_padding_id_with_a_weight_is_absent_as_in_scoring():
    """Present = a real id with a positive weight (scoring's rule): padding does not dilute the mean
    or count as a MIND behaviour, whatever weight it carries."""
    from core.config import ModelConf
    from mvke import build_model

    torch.manual_seed(0)
    emb = FieldEmbedding([FieldSpec("m", "multi", 6)], 3)
    padded = {"m": torch.tensor([[2, 0, 0, 0, 0]]), "m_weights": torch.ones(1, 5)}
    torch.testing.assert_close(emb(padded)[0, 0], emb.tables["m"].weight[2])

    fields = [FieldSpec("clicked_tags", "multi", 8)]
    mind = build_model(ModelConf(name="mind", embedding_dim=4, hidden_dim=4), fields, 8, 3)
    history = torch.tensor([[2, 3, 4, 5, 0, 0, 0, 0], [2, 3, 4, 5, 6, 7, 0, 0]])
    weighted_padding = {"clicked_tags": history, "clicked_tags_weights": torch.ones(2, 8)}
    weighted_real = {"clicked_tags": history, "clicked_tags_weights": (history > 0).float()}
    assert mind.user_mask(weighted_padding).sum(dim=1).tolist() == [2, 2]  # 4 and 6 behaviours, not 8
    torch.testing.assert_close(mind.user_vectors(weighted_padding), mind.user_vectors(weighted_real))


def test_all_zero_weights_give_no_nan_in_values_or_gradients():
    emb = FieldEmbedding([FieldSpec("m", "multi", 5)], 4)
    batch = {"m": torch.tensor([[3, 4], [0, 0]]), "m_weights": torch.zeros(2, 2)}
    out = emb(batch)
    assert torch.all(out == 0)
    out.sum().backward()
    assert torch.isfinite(emb.tables["m"].weight.grad).all()


def test_tag_fields_are_looked_up_in_the_given_tag_embedding():
    torch.manual_seed(0)
    fields = [FieldSpec("a", "single", 4), FieldSpec("clicked", "multi", 6)]
    emb = FieldEmbedding(fields, 3, tag_fields=["clicked"])
    assert set(emb.tables) == {"a"}  # no table of its own for the tag field
    tag_table = torch.nn.Embedding(8, 3, padding_idx=0)
    batch = {"a": torch.tensor([2, 3]), "clicked": torch.tensor([[2, 7, 0], [0, 0, 0]]),
             "clicked_weights": torch.tensor([[1.0, 3.0, 0.0], [0.0, 0.0, 0.0]])}
    out = emb(batch, tag_table)
    torch.testing.assert_close(out[:, 0], emb.tables["a"].weight[[2, 3]])
    torch.testing.assert_close(out[0, 1], (tag_table.weight[2] + 3 * tag_table.weight[7]) / 4)
    torch.testing.assert_close(out[1, 1], torch.zeros(3))
    out[0, 1].sum().backward()
    touched = tag_table.weight.grad.abs().sum(dim=1) > 0
    assert touched.tolist() == [i in (2, 7) for i in range(8)]


def test_tag_fields_need_the_tag_embedding_and_a_known_field():
    fields = [FieldSpec("clicked", "multi", 6)]
    emb = FieldEmbedding(fields, 3, tag_fields=["clicked"])
    with pytest.raises(ValueError, match="need the tag tower's id embedding"):
        emb({"clicked": torch.tensor([[2]]), "clicked_weights": torch.ones(1, 1)})
    with pytest.raises(ValueError, match=r"tag_fields \['viewed'\] are not among the fields"):
        FieldEmbedding(fields, 3, tag_fields=["viewed"])


def _naive_vke(vke: VirtualKernelExperts, fields: torch.Tensor, history=None) -> torch.Tensor:
    """The definition loop by loop; `history` (values [B, L, E], weights [B, L]) replaces the field
    at `vke.history_index` with each kernel's own pooling of it."""
    batch, num_fields, dim = fields.shape
    num_kernels = vke.kernels.shape[0]
    out = torch.empty(batch, num_kernels, dim)
    for b in range(batch):
        for k in range(num_kernels):
            q = vke.w_q.weight @ vke.kernels[k]
            seen = list(fields[b])
            if history is not None:
                seen[vke.history_index] = _naive_pool(vke, history[0][b], history[1][b], q)
            scores = torch.stack([(vke.w_k.weight @ seen[i]) @ q / math.sqrt(dim) for i in range(num_fields)])
            a = torch.softmax(scores, dim=0)
            hs = [F.layer_norm(a[i] * (vke.w_v.weight @ seen[i]) + seen[i], (dim,),
                               vke.norm.weight, vke.norm.bias) for i in range(num_fields)]
            x = torch.cat(hs)
            p = vke.experts
            hidden = torch.relu(x @ p.w1[k] + p.b1[k])
            out[b, k] = hidden @ p.w2[k] + p.b2[k]
    return out


def _naive_pool(vke: VirtualKernelExperts, values: torch.Tensor, weights: torch.Tensor, q: torch.Tensor):
    """One kernel's pooled history: w_l exp(score_l) / sum, over the present behaviours only."""
    present = [l for l in range(values.shape[0]) if weights[l] > 0]
    if not present:
        return torch.zeros(values.shape[1])
    raw = torch.stack([weights[l] * torch.exp((vke.w_k.weight @ values[l]) @ q / math.sqrt(values.shape[1]))
                       for l in present])
    return sum(r * values[l] for r, l in zip(raw / raw.sum(), present))


def _history(batch: int, length: int, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Random behaviour values and weights: row 0 has no behaviours, the others some padding."""
    values = torch.randn(batch, length, dim)
    weights = torch.rand(batch, length) + 0.5
    weights[0] = 0.0
    weights[1:, -1] = 0.0
    return values, weights


def test_kernel_history_matches_the_definition():
    torch.manual_seed(4)
    vke = VirtualKernelExperts(num_fields=3, num_kernels=4, embedding_dim=5, hidden_dim=7, history_index=1)
    fields = torch.randn(3, 3, 5)
    history = _history(3, 4, 5)
    out = vke(fields, history)
    torch.testing.assert_close(out, _naive_vke(vke, fields, history), atol=1e-5, rtol=1e-5)
    out.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in vke.parameters())
    with pytest.raises(ValueError, match="history must be given exactly"):
        vke(fields)


def test_kernel_history_with_equal_scores_is_the_weighted_mean():
    """W_K = 0 gives every behaviour the same score: each kernel's pooling is the field's weighted mean."""
    torch.manual_seed(5)
    vke = VirtualKernelExperts(num_fields=2, num_kernels=3, embedding_dim=4, hidden_dim=6, history_index=0)
    with torch.no_grad():
        vke.w_k.weight.zero_()
    values, weights = _history(3, 5, 4)
    pooled = vke.pool_history(values, weights)
    expected = weighted_mean(values, weights)  # [B, E]; row 0 (no behaviours) is zero
    torch.testing.assert_close(pooled, expected.unsqueeze(1).expand(-1, 3, -1))


def test_virtual_kernel_experts_match_the_definition():
    torch.manual_seed(1)
    vke = VirtualKernelExperts(num_fields=3, num_kernels=4, embedding_dim=5, hidden_dim=7)
    with torch.no_grad():
        vke.norm.weight.uniform_(0.5, 1.5)
        vke.norm.bias.uniform_(-0.2, 0.2)
    fields = torch.randn(2, 3, 5)
    attn = vke.attention(fields)
    assert attn.shape == (2, 3, 4)
    torch.testing.assert_close(attn.sum(dim=1), torch.ones(2, 4))  # softmax over fields
    out = vke(fields)
    assert out.shape == (2, 4, 5)
    torch.testing.assert_close(out, _naive_vke(vke, fields), atol=1e-5, rtol=1e-5)


def test_gate_is_softmax_of_raw_kernels_over_the_subset():
    kernels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 2.0]])
    gate = VirtualKernelGate([1, 3], embedding_dim=2)
    tag_emb = torch.tensor([[2.0, 1.0], [0.0, 0.0]])
    # tag 0: logits (1, 0) -> softmax; tag 1: logits (0, 0) -> uniform
    e = math.exp(1.0)
    expected = torch.tensor([[e / (e + 1), 1 / (e + 1)], [0.5, 0.5]])
    got = gate(tag_emb, kernels)
    assert got.shape == (2, 2)
    torch.testing.assert_close(got, expected)


def test_projected_gate_scales_by_sqrt_e():
    torch.manual_seed(2)
    gate = VirtualKernelGate([0, 2], embedding_dim=4, projected=True)
    kernels, tag_emb = torch.randn(3, 4), torch.randn(5, 4)
    q = tag_emb @ gate.query.weight.T + gate.query.bias
    k = kernels[[0, 2]] @ gate.key.weight.T + gate.key.bias
    expected = torch.softmax(q @ k.T / 2.0, dim=-1)
    torch.testing.assert_close(gate(tag_emb, kernels), expected)


def test_hard_gate_is_one_hot_with_straight_through_gradient():
    torch.manual_seed(3)
    kernels = torch.randn(4, 3, requires_grad=True)
    tag_emb = torch.randn(6, 3, requires_grad=True)
    gate = VirtualKernelGate([0, 1, 3], embedding_dim=3, hard=True)
    hard = gate(tag_emb, kernels)
    soft = torch.softmax(tag_emb @ kernels[[0, 1, 3]].T, dim=-1)
    expected = F.one_hot(soft.argmax(dim=-1), 3).float()
    assert torch.equal(hard, expected)  # exactly one-hot in the forward pass
    (hard * torch.arange(3.0)).sum().backward()
    assert kernels.grad.abs().sum() > 0 and tag_emb.grad.abs().sum() > 0  # the soft gate's gradient


def test_tag_tower_shapes_and_shared_embeddings():
    tower = TagTower(num_tags=10, num_categories=4, objectives=("ctr", "cvr"), embedding_dim=6, hidden_dim=8)
    out = tower(torch.tensor([2, 3, 9]), torch.tensor([1, 2, 3]))
    assert set(out) == {"ctr", "cvr"}
    assert all(v.shape == (3, 6) for v in out.values())
    assert not torch.allclose(out["ctr"], out["cvr"])  # one head per objective


def test_interest_count_is_max1_min_k_floor_log2():
    counts = [0, 1, 2, 3, 4, 7, 8, 15, 16, 100]
    expected_k = [1, 1, 1, 1, 2, 2, 3, 3, 4, 4]
    weights = torch.zeros(len(counts), 100)
    for row, n in enumerate(counts):
        weights[row, :n] = 0.5
    mask = interest_count_mask(weights, num_interests=4)
    assert mask.shape == (len(counts), 4)
    assert mask.sum(dim=1).tolist() == expected_k
    assert mask[:, 0].all()


def test_squash_matches_definition_and_is_safe_at_zero():
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0]], requires_grad=True)
    out = squash(z)
    torch.testing.assert_close(out[0], torch.tensor([3.0, 4.0]) * (25 / 26) / 5, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(out[1], torch.zeros(2))
    out.sum().backward()
    assert torch.isfinite(z.grad).all()


def test_dynamic_routing_matches_a_per_user_loop():
    torch.manual_seed(4)
    extractor = InterestExtractor(num_interests=3, embedding_dim=4, routing_iters=3)
    behaviours = torch.randn(2, 5, 4)
    weights = torch.tensor([[1.0, 0.5, 2.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, False, False], [True, True, False]])
    got = extractor(behaviours, weights, mask)
    assert got.shape == (2, 3, 4)
    for b in range(2):
        used = [j for j in range(3) if mask[b, j]]
        u = [extractor.bilinear.weight @ behaviours[b, i] for i in range(5)]
        logits = {(i, j): torch.dot(u[i], extractor.routing_seed[j]) for i in range(5) for j in used}
        for step in range(3):
            caps = {}
            for j in used:
                z = torch.zeros(4)
                for i in range(5):
                    denom = sum(torch.exp(logits[(i, m)]) for m in used)
                    z = z + weights[b, i] * torch.exp(logits[(i, j)]) / denom * u[i]
                n2 = torch.dot(z, z)
                caps[j] = n2 / (1 + n2) * z / torch.sqrt(n2)
            if step < 2:
                logits = {(i, j): logits[(i, j)] + torch.dot(caps[j], u[i]) for i in range(5) for j in used}
        for j in used:
            torch.testing.assert_close(got[b, j], caps[j], atol=1e-5, rtol=1e-4)
