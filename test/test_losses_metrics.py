"""Losses and metrics against direct computations: hand-worked values and plain numpy loops.

Also the properties training relies on: masks really mask (changing, even NaN-ing, an ignored
pixel changes nothing), the teacher gets no gradient, empty masks give 0 rather than NaN, and
accumulated metrics do not depend on batching or on how accumulators are merged.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gep_model import losses
from gep_model.metrics import DepthMetrics, SegmentationMetrics


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _close(a, b, tol=1e-6):
    a, b = (x.detach() if torch.is_tensor(x) else x for x in (a, b))
    assert float(a) == pytest.approx(float(b), rel=tol, abs=tol)


def _np_log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _np_info_nce(q, k, temperature):
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    logp = _np_log_softmax(q @ k.T / temperature)
    return -np.mean([logp[i, i] for i in range(len(q))])


# --- stage 1 ---------------------------------------------------------------------------------
def test_info_nce_matches_numpy_and_bounds():
    q, k = torch.randn(6, 4, generator=_gen(1)), torch.randn(6, 4, generator=_gen(2))
    _close(losses.info_nce(q, k, 0.2), _np_info_nce(q.numpy(), k.numpy(), 0.2), 1e-5)
    same = torch.ones(5, 3)  # every row identical: no information about which row pairs
    _close(losses.info_nce(same, same * 2, 0.2), math.log(5))
    eye = torch.eye(5)  # aligned and orthogonal: the positive dominates at low temperature
    assert losses.info_nce(eye, eye * 3, 0.01) < 1e-6


def _tokens(seed, grad):
    return torch.randn(2, 4, 8, generator=_gen(seed)).requires_grad_(grad)


def test_alignment_loss_terms_and_gradients():
    torch.manual_seed(0)
    student, teacher = _tokens(1, True), _tokens(2, True)
    s_patch, t_patch = _tokens(3, True), _tokens(4, True)
    head = losses.ProjectionHead(8)
    assert [m.__class__.__name__ for m in head.net] == ['Linear', 'ReLU', 'Linear']
    assert head.net[0].out_features == 32 and head(student).shape == (2, 4, 8)
    weights = {'mse_tokens': 1.0, 'mse_patch': 0.5, 'nce': 2.0}
    total, terms = losses.alignment_loss(student, teacher, s_patch, t_patch, head,
                                         temperature=0.3, weights=weights)
    _close(terms['mse_tokens'], ((student - teacher) ** 2).mean())
    _close(terms['mse_patch'], ((s_patch - t_patch) ** 2).mean())
    query = head(student).mean(1).detach().numpy()
    _close(terms['nce'], _np_info_nce(query, teacher.mean(1).detach().numpy(), 0.3), 1e-5)
    _close(total, sum(weights[n] * terms[n] for n in weights))
    total.backward()
    assert student.grad.abs().sum() > 0 and s_patch.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())
    assert teacher.grad is None and t_patch.grad is None
    total, terms = losses.alignment_loss(student, teacher, None, None, None,
                                         weights={'nce': 0.0})
    assert set(terms) == {'mse_tokens'}
    _close(total, terms['mse_tokens'])
    with pytest.raises(ValueError):
        losses.alignment_loss(student, teacher, None, None, None)


# --- stage 2 ---------------------------------------------------------------------------------
def _np_next_token(pred, target, weight):
    err = ((pred - target) ** 2).mean(-1)
    return (weight * err).sum() / weight.sum()


def test_next_token_loss_modalities_and_padding():
    pred = torch.randn(2, 5, 3, generator=_gen(1), requires_grad=True)
    target = torch.randn(2, 5, 3, generator=_gen(2), requires_grad=True)
    modality = torch.tensor([[1, 1, 2, 2, 0], [2, 1, 2, 0, 0]])
    valid = modality != 0
    p, t = pred.detach().numpy(), target.detach().numpy()
    _close(losses.next_token_loss(pred, target, modality), _np_next_token(p, t, np.ones((2, 5))))
    _close(losses.next_token_loss(pred, target, modality, valid=valid),
           _np_next_token(p, t, valid.numpy().astype(float)))
    events_only = losses.next_token_loss(pred, target, modality, {2: 1.0}, valid)
    _close(events_only, _np_next_token(p, t, (modality == 2).numpy().astype(float)))
    weighted = losses.next_token_loss(pred, target, modality, {1: 1.0, 2: 0.25}, valid)
    w = np.where(modality.numpy() == 1, 1.0, np.where(modality.numpy() == 2, 0.25, 0.0))
    _close(weighted, _np_next_token(p, t, w))
    # Image and padding tokens do not count for events_only, whatever their values.
    garbage = pred.detach().clone()
    garbage[modality != 2] = float('nan')
    _close(losses.next_token_loss(garbage, target, modality, {2: 1.0}, valid), events_only)
    events_only.backward()
    assert (pred.grad[modality != 2] == 0).all() and pred.grad[modality == 2].abs().sum() > 0
    assert target.grad is None
    # Nothing counts: 0 with a gradient path, not NaN and not an exception.
    pred.grad = None
    nothing = losses.next_token_loss(pred, target, modality, {3: 1.0})
    assert nothing.item() == 0.0 and nothing.requires_grad
    nothing.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


# --- depth -----------------------------------------------------------------------------------
def _depth_batch(seed=0, shape=(2, 1, 8, 8)):
    g = _gen(seed)
    target = torch.rand(shape, generator=g, dtype=torch.float64) * 20 + 0.5
    noise = 0.3 * torch.randn(shape, generator=g, dtype=torch.float64)
    pred_log = target.log() + noise
    valid = torch.rand(shape, generator=g) > 0.3
    return pred_log, target, valid


def _np_silog(pred_log, target, valid, lam):
    d = pred_log[valid] - np.log(target[valid])
    return math.sqrt(np.mean(d ** 2) - lam * np.mean(d) ** 2)


def _np_gradient_matching(pred_log, target_log, valid, scales):
    """Loop over every adjacent pixel pair of every subsampled level."""
    level_losses = []
    for level in range(scales):
        step = 2 ** level
        r = (pred_log - target_log)[..., ::step, ::step]
        r, m = r.reshape(-1, *r.shape[-2:]), valid[..., ::step, ::step].reshape(-1, *r.shape[-2:])
        loss, pairs = 0.0, 0
        for dy, dx in ((0, 1), (1, 0)):
            errors = [abs(r[b, y + dy, x + dx] - r[b, y, x])
                      for b in range(r.shape[0]) for y in range(r.shape[1] - dy)
                      for x in range(r.shape[2] - dx) if m[b, y, x] and m[b, y + dy, x + dx]]
            loss += np.mean(errors) if errors else 0.0
            pairs += len(errors)
        if pairs:
            level_losses.append(loss)
    return np.mean(level_losses) if level_losses else 0.0


def test_silog_matches_numpy_and_is_scale_invariant_at_lambda_one():
    pred_log, target, valid = _depth_batch()
    for lam in (0.85, 0.5, 1.0):
        _close(losses.silog_loss(pred_log, target, valid, lam=lam),
               _np_silog(pred_log.numpy(), target.numpy(), valid.numpy(), lam), 1e-5)
    _close(losses.silog_loss(pred_log, target, valid, scale=10.0),
           10 * _np_silog(pred_log.numpy(), target.numpy(), valid.numpy(), 0.85), 1e-5)
    base = losses.silog_loss(pred_log, target, valid, lam=1.0)
    _close(losses.silog_loss(pred_log + math.log(3.7), target, valid, lam=1.0), base, 1e-5)
    assert losses.silog_loss(pred_log + math.log(3.7), target, valid) > base


def test_gradient_matching_matches_numpy_and_is_scale_invariant():
    pred_log, target, valid = _depth_batch(shape=(2, 1, 9, 10))
    for scales in (1, 3):
        _close(losses.gradient_matching_loss(pred_log, target.log(), valid, scales),
               _np_gradient_matching(pred_log.numpy(), target.log().numpy(), valid.numpy(),
                                     scales), 1e-5)
    base = losses.gradient_matching_loss(pred_log, target.log(), valid)
    _close(losses.gradient_matching_loss(pred_log + 2.0, target.log(), valid), base, 1e-5)
    total, terms = losses.depth_loss(pred_log, target, valid)
    _close(terms['silog'], losses.silog_loss(pred_log, target, valid))
    _close(terms['grad'], losses.gradient_matching_loss(pred_log, target.log(), valid))
    _close(total, terms['silog'] + 0.25 * terms['grad'])


def test_depth_loss_ignores_invalid_pixels():
    pred_log, target, valid = _depth_batch()
    valid[0, 0, 0, :2] = False
    pred_log.requires_grad_(True)
    total, _ = losses.depth_loss(pred_log, target, valid)
    total.backward()
    bad_target = torch.where(valid, target, torch.tensor(float('nan'), dtype=torch.float64))
    bad_target[0, 0, 0, :2] = torch.tensor([0.0, -1.0], dtype=torch.float64)
    bad_pred = torch.where(valid, pred_log.detach(), torch.tensor(float('inf'),
                                                                  dtype=torch.float64))
    bad_pred.requires_grad_(True)
    bad_total, _ = losses.depth_loss(bad_pred, bad_target, valid)
    _close(bad_total, total)
    bad_total.backward()
    assert torch.isfinite(bad_pred.grad).all() and (bad_pred.grad[~valid] == 0).all()
    torch.testing.assert_close(bad_pred.grad, pred_log.grad)


def test_depth_loss_empty_and_perfect_are_zero_without_nan():
    pred_log, target, _ = _depth_batch()
    for pred, valid in ((pred_log, torch.zeros_like(target, dtype=torch.bool)),
                        (target.log(), torch.ones_like(target, dtype=torch.bool))):
        pred = pred.clone().requires_grad_(True)
        total, terms = losses.depth_loss(pred, target, valid)
        assert total.item() == 0.0 and terms['silog'].item() == 0.0
        total.backward()
        assert torch.isfinite(pred.grad).all()
    nothing = torch.full_like(target, float('nan'))
    assert losses.depth_loss(pred_log, nothing)[0].item() == 0.0


# --- segmentation and classification ---------------------------------------------------------
def _seg_batch(seed=0, classes=4):
    g = _gen(seed)
    logits = torch.randn(2, classes, 5, 6, generator=g, dtype=torch.float64)
    labels = torch.randint(0, classes, (2, 5, 6), generator=g)
    labels[torch.rand(2, 5, 6, generator=g) < 0.25] = 255
    return logits, labels


def _np_seg(logits, labels, ignore, smooth=1e-6):
    x = np.moveaxis(logits, 1, -1).reshape(-1, logits.shape[1])
    y = labels.reshape(-1)
    x, y = x[y != ignore], y[y != ignore]
    logp = _np_log_softmax(x)
    ce = -np.mean([logp[i, y[i]] for i in range(len(y))])
    p, onehot = np.exp(logp), np.eye(x.shape[1])[y]
    dice = (2 * (p * onehot).sum(0) + smooth) / (p.sum(0) + onehot.sum(0) + smooth)
    return ce, 1 - dice.mean()


def test_segmentation_loss_matches_numpy():
    logits, labels = _seg_batch()
    total, terms = losses.segmentation_loss(logits, labels, dice_weight=0.5)
    ce, dice = _np_seg(logits.numpy(), labels.numpy(), 255)
    _close(terms['ce'], ce)
    _close(terms['dice'], dice)
    _close(losses.dice_loss(logits, labels), dice)
    _close(total, ce + 0.5 * dice)
    labels = torch.arange(3).repeat(2, 2, 1)  # every class present, predicted confidently
    assert losses.dice_loss(F.one_hot(labels, 3).movedim(-1, 1).double() * 50, labels) < 1e-9


def test_segmentation_loss_ignores_ignored_pixels():
    logits, labels = _seg_batch()
    logits.requires_grad_(True)
    total, _ = losses.segmentation_loss(logits, labels)
    total.backward()
    ignored = (labels == 255).unsqueeze(1).expand_as(logits)
    bad = torch.where(ignored, torch.tensor(float('nan'), dtype=torch.float64), logits.detach())
    bad.requires_grad_(True)
    bad_total, _ = losses.segmentation_loss(bad, labels)
    _close(bad_total, total)
    bad_total.backward()
    assert (bad.grad[ignored] == 0).all()
    torch.testing.assert_close(bad.grad, logits.grad)
    everything_ignored = torch.full_like(labels, 255)
    empty, terms = losses.segmentation_loss(logits, everything_ignored)
    assert empty.item() == 0.0 and terms['ce'].item() == 0.0


def test_classification_loss():
    logits = torch.randn(5, 4, generator=_gen(3), dtype=torch.float64)
    labels = torch.tensor([0, 3, 1, 1, 2])
    logp = _np_log_softmax(logits.numpy())
    _close(losses.classification_loss(logits, labels), -logp[range(5), labels.numpy()].mean())
    eps = 0.1
    smoothed = -((1 - eps) * logp[range(5), labels.numpy()] + eps * logp.mean(1)).mean()
    _close(losses.classification_loss(logits, labels, label_smoothing=eps), smoothed)
    # Windows without a category (-1 in the window cache) are left out of the mean.
    some = torch.tensor([0, -1, 1, -1, 2])
    _close(losses.classification_loss(logits, some),
           -logp[[0, 2, 4], [0, 1, 2]].mean())
    none = losses.classification_loss(logits.requires_grad_(), torch.full((5,), -1))
    assert none.item() == 0 and none.requires_grad


# --- depth metrics ---------------------------------------------------------------------------
def test_depth_metrics_perfect_and_hand_computed():
    metrics = DepthMetrics()
    target = torch.rand(3, 10, 10, generator=_gen(1), dtype=torch.float64) * 29 + 0.5
    metrics.update(target.clone(), target)
    r = metrics.compute()
    assert r['abs_rel'] == r['sq_rel'] == r['rmse'] == r['rmse_log'] == r['mae_10'] == 0
    assert r['delta1'] == r['delta2'] == r['delta3'] == 1
    metrics = DepthMetrics(cutoffs=(10, 20, 30), min_depth=0.1, max_depth=30)
    nan, inf = float('nan'), float('inf')
    # Last five ground-truth values are invalid: NaN, inf, 0, negative, beyond max_depth.
    target = torch.tensor([5.0, 15.0, 25.0, 10.0, nan, inf, 0.0, -2.0, 31.0])
    pred = torch.tensor([4.0, 18.0, 25.0, 40.0, 1.0, 1.0, 1.0, 1.0, 1.0])  # 40 clips to 30
    metrics.update(pred, target)
    r = metrics.compute()
    assert r['count'] == 4
    _close(r['abs_rel'], (1 / 5 + 3 / 15 + 0 + 20 / 10) / 4, 1e-12)
    _close(r['sq_rel'], (1 / 5 + 9 / 15 + 0 + 400 / 10) / 4, 1e-12)
    _close(r['rmse'], math.sqrt((1 + 9 + 0 + 400) / 4), 1e-12)
    logs = [math.log(4 / 5), math.log(18 / 15), 0.0, math.log(3)]
    _close(r['rmse_log'], math.sqrt(sum(x * x for x in logs) / 4), 1e-12)
    _close(r['mae'], (1 + 3 + 0 + 20) / 4, 1e-12)
    # Ratios 1.25, 1.2, 1, 3: the strict '<' leaves 5 vs 4 (exactly 1.25) out of delta1.
    assert (r['delta1'], r['delta2'], r['delta3']) == (0.5, 0.75, 0.75)
    _close(r['mae_10'], (1 + 20) / 2, 1e-12)  # ground truth 5 and 10
    _close(r['mae_20'], (1 + 3 + 20) / 3, 1e-12)
    _close(r['mae_30'], (1 + 3 + 0 + 20) / 4, 1e-12)
    masked = DepthMetrics()
    masked.update(pred, target, valid=torch.tensor([True, False] + [True] * 7))
    assert masked.compute()['count'] == 3
    assert math.isnan(DepthMetrics().compute()['abs_rel'])


def _depth_data(g):
    target = torch.rand(9, 8, 8, generator=g) * 40
    target[torch.rand(9, 8, 8, generator=g) < 0.2] = 0
    return target * torch.exp(0.4 * torch.randn(9, 8, 8, generator=g)) + 0.05, target


def _seg_data(g):
    target = torch.randint(0, 6, (9, 8, 8), generator=g)
    target[torch.rand(9, 8, 8, generator=g) < 0.1] = 255
    noise = torch.randint(0, 6, (9, 8, 8), generator=g)
    return torch.where(torch.rand(9, 8, 8, generator=g) < 0.7, target.clamp(max=5), noise), target


def _results_equal(a, b):
    for key, va in a.items():
        if torch.is_tensor(va):
            torch.testing.assert_close(va, b[key], rtol=1e-12, atol=0, equal_nan=True)
        else:
            assert va == pytest.approx(b[key], rel=1e-12, abs=1e-15, nan_ok=True), key


@pytest.mark.parametrize('make, data', [(DepthMetrics, _depth_data),
                                        (lambda: SegmentationMetrics(6), _seg_data)])
def test_accumulation_is_batching_and_merge_invariant(make, data):
    pred, target = data(_gen(5))
    whole, split, first, second, restored = (make() for _ in range(5))
    whole.update(pred, target)
    for chunk in ((0, 1), (1, 4), (4, 9)):  # one batch vs the same data in three
        split.update(pred[slice(*chunk)], target[slice(*chunk)])
    _results_equal(split.compute(), whole.compute())
    first.update(pred[:2], target[:2])
    second.update(pred[2:], target[2:])
    reduced = first.sums + second.sums  # what all_reduce over two ranks leaves on each
    _results_equal(first.merge(second).compute(), whole.compute())
    torch.testing.assert_close(reduced, whole.sums, rtol=1e-12, atol=0)
    restored.load_state_dict(whole.state_dict())
    _results_equal(restored.compute(), whole.compute())
    assert whole.sums.dtype == torch.float64
    whole.reset()
    assert not whole.sums.any()
    with pytest.raises(ValueError):
        split.merge(DepthMetrics(cutoffs=(10,)))


# --- segmentation metrics --------------------------------------------------------------------
def test_segmentation_metrics_perfect_and_hand_built_confusion():
    labels = torch.randint(0, 5, (2, 7, 7), generator=_gen(4))
    perfect = SegmentationMetrics(5)
    perfect.update(labels, labels)
    r = perfect.compute()
    assert r['miou'] == 1 and r['pixel_acc'] == 1 and r['mean_class_acc'] == 1
    target = torch.tensor([[0, 0, 1, 1, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1, 2, 0]])  # wrong predictions on ignored pixels
    metrics = SegmentationMetrics(3)
    metrics.update(pred, target)
    r = metrics.compute()
    assert metrics.confusion.tolist() == [[1, 1, 0], [0, 2, 0], [0, 0, 0]]
    # IoU_0 = 1 / 2, IoU_1 = 2 / 3; class 2 has union 0 and is left out.
    _close(r['miou'], (1 / 2 + 2 / 3) / 2, 1e-12)
    assert math.isnan(r['iou'][2])
    _close(r['pixel_acc'], 3 / 4, 1e-12)
    _close(r['mean_class_acc'], (1 / 2 + 1) / 2, 1e-12)
    # A class that is only predicted has IoU 0 and does count.
    metrics.update(torch.tensor([2]), torch.tensor([0]))
    _close(metrics.compute()['miou'], (1 / 3 + 2 / 3 + 0) / 3, 1e-12)
    # Logits are reduced by argmax; an ignore_index inside the class range drops that class.
    logits, labels = _seg_batch(classes=4)
    from_logits, from_labels = SegmentationMetrics(4), SegmentationMetrics(4)
    from_logits.update(logits, labels)
    from_labels.update(logits.argmax(1), labels)
    assert torch.equal(from_logits.sums, from_labels.sums)
    in_range = SegmentationMetrics(3, ignore_index=2)
    in_range.update(torch.tensor([0, 1, 2, 0]), torch.tensor([0, 1, 2, 2]))
    r = in_range.compute()
    assert math.isnan(r['iou'][2]) and r['miou'] == 1
    with pytest.raises(ValueError):
        SegmentationMetrics(3).update(torch.tensor([0]), torch.tensor([3]))
