"""The serving decomposition equals the model's own forward pass, for every model and option."""
from __future__ import annotations

import pytest
import torch

from mvke.builder import build_model
from mvke.serving import TagSide, score_block, serving_tag_matrix, serving_user_matrix

B_USERS, T_TAGS = 7, 9


def _all_pairs_forward(model, users: dict, tag: torch.Tensor, category: torch.Tensor) -> dict:
    """forward() on a batch holding every (user, tag) pair -> {objective: [B, T]}."""
    num_users, num_tags = users["age_bucket"].shape[0], tag.shape[0]
    rows = torch.arange(num_users).repeat_interleave(num_tags)  # user of each pair
    cols = torch.arange(num_tags).repeat(num_users)  # tag of each pair
    pairs = {k: v[rows] for k, v in users.items() if isinstance(v, torch.Tensor)}
    pairs["tag"], pairs["tag_category"] = tag[cols], category[cols]
    return {o: v.reshape(num_users, num_tags) for o, v in model(pairs).items()}


def _naive_logits(user_vecs, mask, side: TagSide, output: str, temperature: float) -> torch.Tensor:
    """The logit of each pair with Python loops, straight from the definitions."""
    num_users, num_tags = user_vecs.shape[0], side.emb.shape[0]
    out = torch.empty(num_users, num_tags, dtype=user_vecs.dtype)
    for b in range(num_users):
        for t in range(num_tags):
            e = side.emb[t]
            used = [k for k in side.experts.tolist() if mask is None or bool(mask[b, k])]
            if side.combine == "gate":
                weights = {k: side.gate[t, j] for j, k in enumerate(side.experts.tolist())}
            else:
                raw = torch.stack([side.power * torch.dot(user_vecs[b, k], e) for k in used])
                soft = torch.exp(raw - raw.max()) / torch.exp(raw - raw.max()).sum()
                weights = dict(zip(used, soft))
            u = sum(weights[k] * user_vecs[b, k] for k in used)
            dot = torch.dot(u, e)
            out[b, t] = dot if output == "dot" else dot / (u.norm() * e.norm()) / temperature
    return out


def test_score_block_equals_forward(case, toy, conf_for):
    conf = conf_for(case)
    model = build_model(conf, toy.fields, toy.num_tags, toy.num_categories).eval()
    users = toy.users(B_USERS, seed=10)
    tag, category = toy.tags(T_TAGS, seed=11)
    with torch.no_grad():
        expected = _all_pairs_forward(model, users, tag, category)
        user_vecs = model.user_vectors(users)
        mask = model.user_mask(users)
        sides = model.tag_vectors(tag, category)
        assert set(sides) == set(expected) == set(model.objectives)
        for objective, side in sides.items():
            got = score_block(user_vecs, side, output=model.output, temperature=model.temperature, user_mask=mask)
            assert got.shape == (B_USERS, T_TAGS)
            torch.testing.assert_close(got, expected[objective], atol=1e-5, rtol=1e-5)


def test_score_block_equals_naive_loop_float64(case, toy, conf_for):
    conf = conf_for(case)
    model = build_model(conf, toy.fields, toy.num_tags, toy.num_categories).double().eval()
    users = toy.users(5, seed=20)
    users = {k: v.double() if k.endswith("_weights") else v for k, v in users.items()}
    tag, category = toy.tags(6, seed=21)
    with torch.no_grad():
        user_vecs, mask = model.user_vectors(users), model.user_mask(users)
        expected_pairs = _all_pairs_forward(model, users, tag, category)
        for objective, side in model.tag_vectors(tag, category).items():
            naive = _naive_logits(user_vecs, mask, side, model.output, model.temperature)
            got = score_block(user_vecs, side, output=model.output, temperature=model.temperature, user_mask=mask)
            torch.testing.assert_close(got, naive, atol=1e-10, rtol=1e-10)
            torch.testing.assert_close(expected_pairs[objective], naive, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("case", ["mvke", "mvke_hard", "mvke_sets", "two_tower", "hard_sharing", "mmoe"])
def test_serving_matrices_give_dot_logits(case, toy, conf_for):
    model = build_model(conf_for(case), toy.fields, toy.num_tags, toy.num_categories).eval()
    users = toy.users(B_USERS, seed=30)
    tag, category = toy.tags(T_TAGS, seed=31)
    with torch.no_grad():
        expected = _all_pairs_forward(model, users, tag, category)
        user_vecs = model.user_vectors(users)
        for objective, side in model.tag_vectors(tag, category).items():
            num_used = side.experts.numel()
            user_matrix = serving_user_matrix(user_vecs, side)
            tag_matrix = serving_tag_matrix(side)
            assert user_matrix.shape == (B_USERS, num_used * model.spec.conf.embedding_dim)
            assert tag_matrix.shape == (T_TAGS, num_used * model.spec.conf.embedding_dim)
            torch.testing.assert_close(user_matrix @ tag_matrix.T, expected[objective], atol=1e-5, rtol=1e-5)


def test_serving_tag_matrix_refuses_label_aware(toy, conf_for):
    model = build_model(conf_for("mind"), toy.fields, toy.num_tags, toy.num_categories)
    tag, category = toy.tags(3, seed=1)
    side = model.tag_vectors(tag, category)["ctr"]
    assert side.combine == "label_aware" and side.gate is None
    with pytest.raises(ValueError, match="label-aware"):
        serving_tag_matrix(side)


def test_mind_masked_interests_do_not_score(toy, conf_for):
    """Garbage in the masked interests must not change any score: they are excluded, not just zero."""
    model = build_model(conf_for("mind_cosine"), toy.fields, toy.num_tags, toy.num_categories).eval()
    users = toy.users(B_USERS, seed=40)
    tag, category = toy.tags(T_TAGS, seed=41)
    with torch.no_grad():
        user_vecs, mask = model.user_vectors(users), model.user_mask(users)
        assert not mask.all() and mask[:, 0].all()
        assert torch.all(user_vecs[~mask] == 0)
        side = model.tag_vectors(tag, category)["ctr"]
        clean = score_block(user_vecs, side, output="cosine", temperature=0.2, user_mask=mask)
        noisy_vecs = torch.where(mask.unsqueeze(-1), user_vecs, torch.randn_like(user_vecs))
        noisy = score_block(noisy_vecs, side, output="cosine", temperature=0.2, user_mask=mask)
        from_zeros = score_block(user_vecs, side, output="cosine", temperature=0.2)  # zero convention
        # a zero interest that took part in the attention would dilute the dot product
        dot_masked = score_block(user_vecs, side, user_mask=mask)
        dot_unmasked = score_block(user_vecs, side, user_mask=torch.ones_like(mask))
    torch.testing.assert_close(noisy, clean, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(from_zeros, clean, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(dot_unmasked, dot_masked, atol=1e-3)


def test_score_block_hand_example():
    """Two experts, one user, two tags, worked out by hand."""
    user_vecs = torch.tensor([[[1.0, 0.0], [0.0, 2.0]]])  # [1, 2, 2]
    side = TagSide(experts=torch.tensor([0, 1]), gate=torch.tensor([[0.25, 0.75], [1.0, 0.0]]),
                   emb=torch.tensor([[2.0, 1.0], [0.0, 3.0]]))
    # tag 0: u = (0.25, 1.5), <u, e> = 0.5 + 1.5 = 2; tag 1: u = (1, 0), <u, e> = 0
    torch.testing.assert_close(score_block(user_vecs, side), torch.tensor([[2.0, 0.0]]))
    # cosine: |u| = sqrt(0.0625 + 2.25) = sqrt(2.3125), |e| = sqrt(5); temperature 0.5
    expected = torch.tensor([[2.0 / (2.3125**0.5 * 5**0.5) / 0.5, 0.0]])
    torch.testing.assert_close(score_block(user_vecs, side, output="cosine", temperature=0.5), expected)
    # label-aware with p = 1: s = (2, 2) for tag 0 -> weights (0.5, 0.5), u = (0.5, 1), <u, e> = 2
    mind_side = TagSide(experts=torch.tensor([0, 1]), gate=None, emb=side.emb[:1], combine="label_aware")
    torch.testing.assert_close(score_block(user_vecs, mind_side), torch.tensor([[2.0]]))
    # masking expert 1 leaves only expert 0: u = (1, 0), <u, e> = 2 as well, but the cosine differs
    masked = score_block(user_vecs, mind_side, output="cosine", temperature=1.0,
                         user_mask=torch.tensor([[True, False]]))
    torch.testing.assert_close(masked, torch.tensor([[2.0 / 5**0.5]]))
