"""The loop on a plain list of dict batches: it learns, logs, predicts, and stops on a non-finite loss."""
import numpy as np
import pytest
import torch

from mvke import ProfileLoss, build_model
from training.errors import NonFiniteLossError
from training.loop import concat_predictions, logits_of, predict, train_epoch
from training.metrics import auc, log_loss, sigmoid

from tests.training.toy import FIELDS, NUM_CATEGORIES, NUM_TAGS, learnable_batches, small_conf


def _setup(lr=0.02, **conf):
    conf = small_conf(**conf)
    model = build_model(conf, FIELDS, NUM_TAGS, NUM_CATEGORIES)
    return model, ProfileLoss.from_conf(conf), torch.optim.Adam(model.parameters(), lr=lr)


def _full_loss(model, loss_fn, batches):
    with torch.no_grad():
        model.eval()
        return float(np.mean([float(loss_fn(model(b), b)) for b in batches]))


def test_loop_lowers_the_loss_on_a_learnable_set(batches):
    model, loss_fn, optimizer = _setup()
    before = _full_loss(model, loss_fn, batches)
    results = [train_epoch(model, loss_fn, optimizer, batches, epoch=e, first_step=e * len(batches))
               for e in range(10)]
    after = _full_loss(model, loss_fn, batches)
    assert after < 0.5 * before, (before, after)
    assert results[-1].loss < results[0].loss
    assert [r.last_step for r in results] == [len(batches) * (e + 1) for e in range(10)]
    assert all(r.steps == len(batches) and r.samples == 256 for r in results)
    rows = predict(model, learnable_batches(256, 64, seed=1))  # unseen rows of the same rule
    assert auc(rows["click"], rows["logit_ctr"]) > 0.9


def test_predict_returns_aligned_rows_and_labels(batches):
    model, _, _ = _setup()
    rows = predict(model, batches)
    assert set(rows) == {"logit_ctr", "logit_cvr", "click", "conversion", "user_key"}
    assert all(len(v) == 256 for v in rows.values())
    with torch.no_grad():
        expected = torch.cat([model(b)["ctr"] for b in batches]).numpy()
    np.testing.assert_array_equal(rows["logit_ctr"], expected)
    np.testing.assert_array_equal(rows["click"], torch.cat([b["click"] for b in batches]).numpy())
    halves = concat_predictions([predict(model, batches[:3]), {}, predict(model, batches[3:])])
    assert {k: v.tolist() for k, v in halves.items()} == {k: v.tolist() for k, v in rows.items()}
    assert set(logits_of(rows)) == {"ctr", "cvr"}
    assert log_loss(rows["click"], sigmoid(rows["logit_ctr"])) > 0


def test_logs_every_n_steps_with_the_reduced_loss(batches):
    model, loss_fn, optimizer = _setup()
    seen, reduced = [], iter(range(17, 25))  # the "reduced" loss of step s is s: each log's mean is known

    def reduce(loss):
        value = float(next(reduced))
        return lambda: loss * 0 + value

    result = train_epoch(model, loss_fn, optimizer, batches, epoch=2, first_step=16,
                         reduce=reduce, workers=3, log_every=3, on_log=seen.append)
    assert [(s.step, s.epoch, s.loss) for s in seen] == [  # steps 17..24, every 3rd step of this epoch
        (19, 2, (17 + 18 + 19) / 3), (22, 2, (20 + 21 + 22) / 3)]  # the mean of the steps since the last log
    assert result.loss == pytest.approx(sum(range(17, 25)) / 8)  # the epoch's mean of the reduced losses
    assert result.samples == 256 * 3 and result.last_step == 24


def test_the_loss_reduction_overlaps_backward_and_is_awaited_before_the_update(batches):
    model, loss_fn, optimizer = _setup()
    events = []
    for parameter in model.parameters():
        parameter.register_hook(lambda grad: events.append("backward") or grad)
    original_step = optimizer.step
    optimizer.step = lambda *a, **k: events.append("update") or original_step(*a, **k)

    def reduce(value):
        events.append("start")
        return lambda: events.append("wait") or value

    train_epoch(model, loss_fn, optimizer, batches[:2], epoch=0, reduce=reduce)
    squeezed = [e for i, e in enumerate(events) if i == 0 or e != events[i - 1]]
    assert squeezed == ["start", "backward", "wait", "update"] * 2


def test_a_huge_learning_rate_stops_with_a_non_finite_loss_naming_epoch_and_step(batches):
    model, loss_fn, optimizer = _setup(lr=1e30)
    with pytest.raises(NonFiniteLossError, match=r"at epoch 5 step \d+"):  # index 4, counted from 1
        for epoch in range(4, 8):
            train_epoch(model, loss_fn, optimizer, batches, epoch=epoch)


def test_inf_weights_stop_before_any_update(batches):
    model, loss_fn, optimizer = _setup()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    bad = [dict(b) for b in batches]
    bad[0]["history_weights"] = torch.full_like(bad[0]["history_weights"], float("inf"))
    with pytest.raises(NonFiniteLossError, match="training loss is nan at epoch 1 step 1"):
        train_epoch(model, loss_fn, optimizer, bad, epoch=0)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


def test_an_epoch_timed_over_a_longer_wall_time_keeps_everything_but_its_rate(batches):
    """The worker re-times each epoch from its reader's open to its close (EpochResult.over)."""
    model, loss_fn, optimizer = _setup()
    result = train_epoch(model, loss_fn, optimizer, batches, epoch=0)
    longer = result.over(result.seconds + 2.0)
    assert longer.seconds == result.seconds + 2.0 and longer.samples_per_s == 256 / (result.seconds + 2.0)
    assert (longer.epoch, longer.steps, longer.last_step, longer.samples, longer.loss, longer.logs) == \
        (result.epoch, result.steps, result.last_step, result.samples, result.loss, result.logs)
