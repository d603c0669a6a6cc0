"""The loss against hand-computed binary cross entropies."""
from __future__ import annotations

import math

import pytest
import torch

from mvke.loss import ProfileLoss, kernel_diversity

CTR = torch.tensor([0.0, 2.0, -1.0, 0.5])
CVR = torch.tensor([1.0, -2.0, 0.3, 0.0])
BATCH = {
    "click": torch.tensor([1.0, 0.0, 1.0, 0.0]),
    "conversion": torch.tensor([1.0, 0.0, 0.0, 0.0]),
    "user_id": ["a", "b", "c", "d"],
}


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def _bce(p: float, y: float) -> float:
    return -(y * math.log(p) + (1 - y) * math.log(1 - p))


def test_clicked_mode_weights_and_masks():
    loss_fn = ProfileLoss(loss_weights={"ctr": 1.0, "cvr": 2.0}, cvr_mode="clicked")
    ctr = sum(_bce(_sig(float(l)), float(y)) for l, y in zip(CTR, BATCH["click"])) / 4
    # CVR only on the clicked samples 0 and 2
    cvr = (_bce(_sig(1.0), 1.0) + _bce(_sig(0.3), 0.0)) / 2
    terms = loss_fn.terms({"ctr": CTR, "cvr": CVR}, BATCH)
    assert terms["ctr"].item() == pytest.approx(ctr, rel=1e-6)
    assert terms["cvr"].item() == pytest.approx(cvr, rel=1e-6)
    total = loss_fn({"ctr": CTR, "cvr": CVR}, BATCH)
    assert total.item() == pytest.approx(ctr + 2 * cvr, rel=1e-6)


def test_clicked_mode_without_clicks_is_zero_not_nan():
    batch = {"click": torch.zeros(4), "conversion": torch.zeros(4)}
    cvr = CVR.clone().requires_grad_()
    term = ProfileLoss(loss_weights={}, cvr_mode="clicked").terms({"cvr": cvr}, batch)["cvr"]
    assert term.item() == 0.0
    term.backward()
    assert torch.equal(cvr.grad, torch.zeros(4))


def test_clicked_mode_is_a_mean_per_batch_so_ranks_weigh_equally_whatever_their_clicks():
    """The documented behaviour (docs/training.md): Horovod averages the ranks' losses, so a rank with one
    click weighs as much as a rank with three, not by its share of the clicks."""
    loss_fn = ProfileLoss(loss_weights={}, cvr_mode="clicked")
    one = {"click": torch.tensor([1.0, 0.0, 0.0, 0.0]), "conversion": torch.tensor([1.0, 0.0, 0.0, 0.0])}
    three = {"click": torch.tensor([1.0, 1.0, 1.0, 0.0]), "conversion": torch.tensor([0.0, 1.0, 0.0, 0.0])}
    ranks = [loss_fn.terms({"cvr": CVR}, batch)["cvr"].item() for batch in (one, three)]
    per_rank = [_bce(_sig(1.0), 1.0), (_bce(_sig(1.0), 0.0) + _bce(_sig(-2.0), 1.0) + _bce(_sig(0.3), 0.0)) / 3]
    assert ranks == pytest.approx(per_rank, rel=1e-6)
    pooled = (per_rank[0] + 3 * per_rank[1]) / 4  # a mean over all four clicks, for contrast
    assert sum(ranks) / 2 == pytest.approx(sum(per_rank) / 2, rel=1e-6) != pytest.approx(pooled, rel=1e-3)


def test_esmm_mode_trains_ctcvr_on_all_impressions():
    loss_fn = ProfileLoss(loss_weights={"ctr": 0.5}, cvr_mode="esmm")  # cvr weight defaults to 1
    ctcvr_label = [1.0, 0.0, 0.0, 0.0]
    expected_cvr = sum(_bce(_sig(float(a)) * _sig(float(b)), y) for a, b, y in zip(CTR, CVR, ctcvr_label)) / 4
    expected_ctr = sum(_bce(_sig(float(l)), float(y)) for l, y in zip(CTR, BATCH["click"])) / 4
    terms = loss_fn.terms({"ctr": CTR, "cvr": CVR}, BATCH)
    assert terms["cvr"].item() == pytest.approx(expected_cvr, rel=1e-5)
    assert loss_fn({"ctr": CTR, "cvr": CVR}, BATCH).item() == pytest.approx(0.5 * expected_ctr + expected_cvr,
                                                                            rel=1e-5)


def test_esmm_is_finite_for_confident_logits_and_needs_ctr():
    loss_fn = ProfileLoss(loss_weights={}, cvr_mode="esmm")
    big = torch.tensor([40.0, -40.0, 40.0, -40.0], requires_grad=True)
    loss = loss_fn({"ctr": big, "cvr": big}, BATCH)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(big.grad).all()
    with pytest.raises(ValueError, match="ctr"):
        loss_fn({"cvr": CVR}, BATCH)


def test_esmm_loss_and_gradient_stay_exact_when_both_towers_are_confident():
    """-log(1 - p) for p = sigmoid(a) sigmoid(b) near 1: a clamp of log p at -1e-7 cut the loss of a
    confident wrong ctcvr (a, b > ~17, label 0) to 16.1 and its gradient to 0, so it was never corrected."""
    loss_fn = ProfileLoss(loss_weights={"ctr": 0.0}, cvr_mode="esmm")
    ctr = torch.tensor([20.0, 40.0, 40.0, -40.0, 3.0, 20.0], requires_grad=True)
    cvr = torch.tensor([20.0, 40.0, -40.0, 40.0, -2.0, 20.0], requires_grad=True)
    click = torch.tensor([1.0, 1.0, 1.0, 0.0, 1.0, 1.0])
    conversion = torch.tensor([0.0, 0.0, 0.0, 0.0, 1.0, 1.0])

    def exact(a: float, b: float, y: float) -> float:  # 1 - s(a) s(b) = s(-a) + s(a) s(-b), in float64
        log_p = math.log(_sig(a)) + math.log(_sig(b))
        return -log_p if y else -math.log(_sig(-a) + _sig(a) * _sig(-b))

    def grad_a(a: float, b: float, y: float) -> float:  # d/da, with d log s(a)/da = s(-a)
        p = _sig(a) * _sig(b)
        return -_sig(-a) if y else p * _sig(-a) / (_sig(-a) + _sig(a) * _sig(-b))

    values = list(zip(ctr.tolist(), cvr.tolist(), (click * conversion).tolist()))
    loss = loss_fn({"ctr": ctr, "cvr": cvr}, {"click": click, "conversion": conversion})
    assert loss.item() == pytest.approx(sum(exact(*v) for v in values) / 6, rel=1e-5)
    loss.backward()
    expected = torch.tensor([grad_a(*v) / 6 for v in values])
    torch.testing.assert_close(ctr.grad, expected, rtol=1e-4, atol=1e-12)
    assert ctr.grad[0].item() == pytest.approx(0.5 / 6, rel=1e-4)  # not 0: the wrong, confident pair learns


def test_diversity_term_is_mean_squared_off_diagonal_cosine():
    kernels = torch.tensor([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]])
    # cos: (0,1) = 0, (0,2) = 1/sqrt2, (1,2) = 1/sqrt2 -> squares 0, 0.5, 0.5 (each pair twice)
    assert kernel_diversity(kernels).item() == pytest.approx(1 / 3, rel=1e-6)
    loss_fn = ProfileLoss(loss_weights={"ctr": 1.0}, cvr_mode="clicked", diversity_weight=0.3)
    with_div = loss_fn({"ctr": CTR}, BATCH, kernels)
    without = ProfileLoss(loss_weights={"ctr": 1.0}, cvr_mode="clicked")({"ctr": CTR}, BATCH, kernels)
    assert (with_div - without).item() == pytest.approx(0.1, rel=1e-5)
    assert kernel_diversity(kernels[:1]).item() == 0.0


def test_nan_logits_give_a_nan_loss_tensor():
    loss = ProfileLoss(loss_weights={}, cvr_mode="clicked")({"ctr": torch.full((4,), float("nan"))}, BATCH)
    assert isinstance(loss, torch.Tensor) and loss.dim() == 0 and torch.isnan(loss)


def test_unknown_objective_and_mode_are_rejected():
    with pytest.raises(ValueError, match="no label"):
        ProfileLoss(loss_weights={}, cvr_mode="clicked")({"ltv": CTR}, BATCH)
    with pytest.raises(ValueError, match="cvr_mode"):
        ProfileLoss(loss_weights={}, cvr_mode="both")
