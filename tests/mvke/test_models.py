"""Every model family: shapes at each stage, gradients everywhere, and a tiny memorisation run."""
from __future__ import annotations

import pytest
import torch

from mvke.builder import build_model
from mvke.loss import ProfileLoss

EXPECTED_USER_VECTORS = {"mvke": 5, "two_tower": 1, "hard_sharing": 2, "mmoe": 2, "mind": 4}


def _auc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """Share of (positive, negative) pairs ranked right; ties count half."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    diff = pos.unsqueeze(1) - neg.unsqueeze(0)
    return float(((diff > 0).float() + 0.5 * (diff == 0).float()).mean())


def test_shapes_at_each_stage(family, toy, conf_for):
    conf = conf_for(family)
    model = build_model(conf, toy.fields, toy.num_tags, toy.num_categories)
    batch = toy.batch(6, seed=1)
    num_vectors = EXPECTED_USER_VECTORS[family]
    user_vecs = model.user_vectors(batch)
    assert user_vecs.shape == (6, num_vectors, conf.embedding_dim)
    mask = model.user_mask(batch)
    assert mask is None if family != "mind" else mask.shape == (6, num_vectors)
    sides = model.tag_vectors(batch["tag"], batch["tag_category"])
    assert tuple(sides) == model.objectives
    for objective, side in sides.items():
        assert side.emb.shape == (6, conf.embedding_dim)
        assert side.experts.dtype == torch.long and int(side.experts.max()) < num_vectors
        if side.gate is not None:
            assert side.gate.shape == (6, side.experts.numel())
            torch.testing.assert_close(side.gate.sum(dim=1), torch.ones(6))
    if family == "mvke":
        assert [s.experts.tolist() for s in sides.values()] == [[0, 1, 2], [1, 2, 3, 4]]
        fields = model.field_embedding(batch)
        assert fields.shape == (6, len(toy.fields), conf.embedding_dim)
        assert model.experts.attention(fields).shape == (6, len(toy.fields), conf.num_experts)
    logits = model(batch)
    assert set(logits) == set(model.objectives)
    assert all(v.shape == (6,) and torch.isfinite(v).all() for v in logits.values())


@pytest.mark.parametrize("family", ["mvke", "two_tower", "hard_sharing", "mmoe"])
def test_tag_fields_share_the_tag_towers_id_embedding(family, toy, conf_for):
    """With tag_fields the user side reads the tag tower's id rows of exactly the clicked tags, and
    the field has no table of its own; without, the user side never touches the tag tower."""
    batch = toy.users(6, seed=7)
    clicked = batch["clicked_tags"][batch["clicked_tags_weights"] > 0].unique().tolist()
    expected = [t in clicked for t in range(toy.num_tags)]

    shared = build_model(conf_for(family, tag_fields=("clicked_tags",)), toy.fields, toy.num_tags,
                         toy.num_categories)
    shared.user_vectors(batch).sum().backward()
    touched = shared.tag_tower.id_embedding.weight.grad.abs().sum(dim=1) > 0
    assert touched.tolist() == expected
    assert set(shared.field_embedding.tables) == {f.name for f in toy.fields} - {"clicked_tags"}

    plain = build_model(conf_for(family), toy.fields, toy.num_tags, toy.num_categories)
    plain.user_vectors(batch).sum().backward()
    assert plain.tag_tower.id_embedding.weight.grad is None
    own = sum(p.numel() for p in plain.parameters()) - sum(p.numel() for p in shared.parameters())
    assert own == toy.num_tags * plain.spec.conf.embedding_dim  # one clicked_tags table fewer


def test_kernel_history_with_equal_scores_equals_plain_mvke(toy, conf_for):
    """With W_K = 0 every kernel pools the history into its weighted mean, which is what plain MVKE
    sees; the two builds share every parameter (same seed), so their user vectors are equal."""
    plain = build_model(conf_for("mvke"), toy.fields, toy.num_tags, toy.num_categories)
    history = build_model(conf_for("mvke_kernel_history"), toy.fields, toy.num_tags, toy.num_categories)
    history.load_state_dict(plain.state_dict())
    batch = toy.users(6, seed=8)
    with torch.no_grad():
        assert not torch.allclose(history.user_vectors(batch), plain.user_vectors(batch))
        for model in (plain, history):
            model.experts.w_k.weight.zero_()
        torch.testing.assert_close(history.user_vectors(batch), plain.user_vectors(batch))


def test_two_tower_has_one_objective(toy, conf_for):
    model = build_model(conf_for("two_tower_cvr_cosine"), toy.fields, toy.num_tags, toy.num_categories)
    assert model.objectives == ("cvr",)
    assert set(model(toy.batch(3, seed=2))) == {"cvr"}


@pytest.mark.parametrize("case", ["mvke", "mvke_hard", "mvke_projected", "mvke_tag_fields", "mvke_kernel_history",
                                  "mvke_kernel_history_tag_fields", "mmoe",
                                  "mmoe_tag_fields", "mind", "mind_tag_fields", "hard_sharing",
                                  "hard_sharing_tag_fields", "two_tower", "two_tower_tag_fields"])
def test_gradients_reach_every_parameter_expert_and_kernel(case, toy, conf_for):
    conf = conf_for(case, diversity_weight=0.1 if case.startswith("mvke") else 0.0)
    model = build_model(conf, toy.fields, toy.num_tags, toy.num_categories)
    batch = toy.batch(32, seed=3)
    loss = ProfileLoss.from_conf(conf)(model(batch), batch, model.kernels())
    loss.backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    if case.startswith("mvke"):
        assert (model.experts.kernels.grad.abs().sum(dim=1) > 0).all()  # every kernel
        reached = torch.zeros(conf.num_experts, dtype=torch.bool)
        for side in model.tag_vectors(batch["tag"], batch["tag_category"]).values():
            # soft gate: every expert of the subset; hard gate: the experts some tag selected
            chosen = side.gate.detach().amax(dim=0) > 0
            reached[side.experts[chosen]] = True
        assert reached.sum() >= 2
        for w in (model.experts.experts.w1, model.experts.experts.w2):
            has_grad = w.grad.flatten(1).abs().sum(dim=1) > 0
            assert torch.equal(has_grad, reached)  # every expert in use gets its own gradient
        if case == "mvke":
            assert reached.all()
    if case == "mmoe":
        assert (model.experts.w1.grad.flatten(1).abs().sum(dim=1) > 0).all()


def test_hard_gate_still_trains_kernels_through_the_gate(toy, conf_for):
    """With the expert MLPs frozen out of the picture, the kernels still get a gate gradient."""
    model = build_model(conf_for("mvke_hard"), toy.fields, toy.num_tags, toy.num_categories)
    batch = toy.batch(16, seed=4)
    sides = model.tag_vectors(batch["tag"], batch["tag_category"])
    assert all(torch.equal(s.gate, torch.nn.functional.one_hot(s.gate.argmax(1), s.gate.shape[1]).float())
               for s in sides.values())
    user_vecs = model.user_vectors(batch).detach()
    side = sides["ctr"]
    logit = (side.gate.unsqueeze(-1) * user_vecs[:, side.experts]).sum(1).mul(side.emb).sum()
    logit.backward()
    assert model.experts.kernels.grad.abs().sum() > 0


def test_build_is_seeded_and_leaves_the_global_rng_alone(toy, conf_for):
    state = torch.random.get_rng_state()
    a = build_model(conf_for("mvke"), toy.fields, toy.num_tags, toy.num_categories)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_model(conf_for("mvke"), toy.fields, toy.num_tags, toy.num_categories)
    c = build_model(conf_for("mvke", seed=4), toy.fields, toy.num_tags, toy.num_categories)
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(pa, pb), name
    assert not torch.equal(a.experts.kernels, c.experts.kernels)


def test_users_with_no_values_give_finite_outputs(family, toy, conf_for):
    model = build_model(conf_for(family), toy.fields, toy.num_tags, toy.num_categories)
    batch = toy.batch(4, seed=5)
    for f in toy.fields:
        if f.kind == "multi":
            batch[f.name] = torch.zeros_like(batch[f.name])
            batch[f.name + "_weights"] = torch.zeros_like(batch[f.name + "_weights"])
        else:
            batch[f.name] = torch.zeros_like(batch[f.name])
    loss = ProfileLoss.from_conf(model.spec.conf)(model(batch), batch, model.kernels())
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_overfits_a_tiny_dataset(family, toy, conf_for):
    """A few dozen (user, tag) pairs with random labels are memorised: loss falls, AUC on them ~1."""
    conf = conf_for(family, embedding_dim=8, hidden_dim=32)
    model = build_model(conf, toy.fields, toy.num_tags, toy.num_categories)
    batch = toy.batch(40, seed=6)
    batch["conversion"] = batch["click"] * (torch.arange(40) % 3 != 0).float()
    loss_fn = ProfileLoss.from_conf(conf)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    torch.manual_seed(0)
    with torch.no_grad():
        first = float(loss_fn(model(batch), batch))
    for _ in range(100):
        optimizer.zero_grad()
        loss = loss_fn(model(batch), batch)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits = model(batch)
        last = float(loss_fn(logits, batch))
    assert last < 0.1 * first
    objective = model.objectives[0]
    label = batch["click"] if objective == "ctr" else batch["conversion"]
    assert _auc(logits[objective], label) > 0.97
