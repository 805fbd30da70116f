"""Metrics against oracles: numpy loops and scikit-learn on random labels, and a 3-class example worked by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from sklearn import metrics as skm  # the oracle (in the dev extra)

from mnistlab.evaluation import metrics as M

# ---------------------------------------------------------------------------- numpy oracles


def _np_confusion(preds, y, k):
    cm = np.zeros((k, k), dtype=np.int64)
    for p, t in zip(preds, y):
        cm[t, p] += 1
    return cm


def _np_prf(cm):
    k = cm.shape[0]
    out = {"precision": [], "recall": [], "f1": [], "support": []}
    for c in range(k):
        tp = cm[c, c]
        pred_pos = sum(cm[r, c] for r in range(k))
        true_pos = sum(cm[c, r] for r in range(k))
        p = tp / pred_pos if pred_pos else 0.0
        r = tp / true_pos if true_pos else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        out["precision"].append(p)
        out["recall"].append(r)
        out["f1"].append(f)
        out["support"].append(int(true_pos))
    return out


def _np_topk(logits, y, k):
    hits = 0
    for row, t in zip(logits, y):
        order = sorted(range(len(row)), key=lambda j: -row[j])
        hits += t in order[:k]
    return hits / len(y)


@pytest.fixture
def random_batch(seeded):
    num_classes, n = 7, 300
    logits = torch.randn(n, num_classes)
    y = torch.randint(0, num_classes, (n,))
    return logits, y, num_classes


def test_confusion_matrix_matches_loop_oracle(random_batch):
    logits, y, k = random_batch
    cm = M.confusion_matrix(logits.argmax(1), y, k)
    assert cm.dtype == torch.int64 and cm.shape == (k, k)
    np.testing.assert_array_equal(cm.numpy(), _np_confusion(logits.argmax(1).numpy(), y.numpy(), k))
    # Logits are accepted too, and give the same matrix.
    assert torch.equal(M.confusion_matrix(logits, y, k), cm)


def test_confusion_matrix_sums_to_n_and_trace_is_accuracy(random_batch):
    logits, y, k = random_batch
    cm = M.confusion_matrix(logits.argmax(1), y, k)
    assert cm.sum().item() == len(y)
    assert cm.trace().item() / len(y) == pytest.approx(M.accuracy(logits, y))


def test_accuracy_and_topk_match_oracle(random_batch):
    logits, y, k = random_batch
    preds = logits.argmax(1)
    expected = float(np.mean(preds.numpy() == y.numpy()))
    assert M.accuracy(logits, y) == pytest.approx(expected)
    assert M.accuracy(preds, y) == pytest.approx(expected)
    for kk in (1, 2, 3, 5):
        assert M.topk_accuracy(logits, y, kk) == pytest.approx(_np_topk(logits.tolist(), y.tolist(), kk))
    assert M.topk_accuracy(logits, y, 1) == pytest.approx(expected)
    assert M.topk_accuracy(logits, y, k + 3) == 1.0  # k is capped at K


def test_per_class_prf_matches_oracle(random_batch):
    logits, y, k = random_batch
    cm = M.confusion_matrix(logits, y, k)
    got, want = M.per_class_prf(cm), _np_prf(cm.numpy())
    for key in ("precision", "recall", "f1"):
        np.testing.assert_allclose(got[key], want[key], rtol=1e-12)
        assert got[f"macro_{key}"] == pytest.approx(np.mean(want[key]))
    assert got["support"] == want["support"]
    weights = np.array(want["support"]) / len(y)
    assert got["weighted_f1"] == pytest.approx(float(np.sum(weights * np.array(want["f1"]))))


def test_hand_worked_three_class_example():
    # true:  0 0 0 1 1 2 2 2 2 2
    # pred:  0 0 1 1 2 2 2 2 0 1
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    preds = torch.tensor([0, 0, 1, 1, 2, 2, 2, 2, 0, 1])
    cm = M.confusion_matrix(preds, y, 3)
    assert cm.tolist() == [[2, 1, 0],
                           [0, 1, 1],
                           [1, 1, 3]]
    assert M.accuracy(preds, y) == pytest.approx(6 / 10)
    prf = M.per_class_prf(cm)
    # class 0: tp 2, predicted 3, true 3 -> P 2/3, R 2/3
    # class 1: tp 1, predicted 3, true 2 -> P 1/3, R 1/2, F1 = 2*(1/6)/(5/6) = 2/5
    # class 2: tp 3, predicted 4, true 5 -> P 3/4, R 3/5, F1 = 2*(9/20)/(27/20) = 2/3
    assert prf["precision"] == pytest.approx([2 / 3, 1 / 3, 3 / 4])
    assert prf["recall"] == pytest.approx([2 / 3, 1 / 2, 3 / 5])
    assert prf["f1"] == pytest.approx([2 / 3, 2 / 5, 2 / 3])
    assert prf["support"] == [3, 2, 5]
    assert prf["macro_f1"] == pytest.approx((2 / 3 + 2 / 5 + 2 / 3) / 3)


def test_perfect_and_all_wrong():
    y = torch.tensor([0, 1, 2, 3, 0, 1])
    logits = torch.nn.functional.one_hot(y, 4).float() * 5
    assert M.accuracy(logits, y) == 1.0
    prf = M.per_class_prf(M.confusion_matrix(logits, y, 4))
    assert prf["f1"] == [1.0] * 4 and prf["macro_f1"] == 1.0

    wrong = (y + 1) % 4
    assert M.accuracy(wrong, y) == 0.0
    cm = M.confusion_matrix(wrong, y, 4)
    assert cm.trace().item() == 0
    prf = M.per_class_prf(cm)
    assert prf["precision"] == [0.0] * 4 and prf["f1"] == [0.0] * 4


def test_class_without_predictions_or_samples_gives_zero_not_nan():
    y = torch.tensor([0, 0, 1, 1])
    preds = torch.tensor([0, 0, 0, 0])  # class 1 never predicted, class 2 absent altogether
    prf = M.per_class_prf(M.confusion_matrix(preds, y, 3))
    for key in ("precision", "recall", "f1"):
        assert not any(math.isnan(v) for v in prf[key])
    assert prf["precision"] == pytest.approx([0.5, 0.0, 0.0])
    assert prf["recall"] == pytest.approx([1.0, 0.0, 0.0])
    assert prf["f1"] == pytest.approx([2 / 3, 0.0, 0.0])
    assert prf["support"] == [2, 2, 0]


def test_confusion_matrix_rejects_out_of_range_labels():
    with pytest.raises(ValueError, match="outside"):
        M.confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(ValueError, match="shapes"):
        M.confusion_matrix(torch.tensor([0, 1, 2]), torch.tensor([0, 1]), 3)


def test_perplexity_of_uniform_logits_is_k():
    for k in (2, 10, 47):
        logits = torch.zeros(16, k)
        y = torch.randint(0, k, (16,), generator=torch.Generator().manual_seed(k))
        nll = torch.nn.functional.cross_entropy(logits, y).item()
        assert M.perplexity(nll) == pytest.approx(k)
        assert M.classification_report(logits, y)["perplexity"] == pytest.approx(k)
    assert M.perplexity(0.0) == 1.0
    assert M.perplexity(1e6) == math.inf


# ---------------------------------------------------------------------------- multi-label


def test_multilabel_metrics_match_oracle(seeded):
    n, num_labels = 64, 5
    logits = torch.randn(n, num_labels) * 2
    targets = (torch.rand(n, num_labels) < 0.4).long()
    probs = torch.sigmoid(logits)
    decided = (probs.numpy() >= 0.5)
    t = targets.numpy().astype(bool)

    exact = np.mean([all(decided[i] == t[i]) for i in range(n)])
    ham = np.mean([[decided[i, j] != t[i, j] for j in range(num_labels)] for i in range(n)])
    for scores in (logits, probs):  # logits are recognised by values outside [0, 1]
        assert M.subset_accuracy(scores, targets) == pytest.approx(exact)
        assert M.hamming_loss(scores, targets) == pytest.approx(ham)

    got = M.multilabel_prf(logits, targets, logits=True)
    for j in range(num_labels):
        tp = np.sum(decided[:, j] & t[:, j])
        p = tp / decided[:, j].sum() if decided[:, j].sum() else 0.0
        r = tp / t[:, j].sum() if t[:, j].sum() else 0.0
        assert got["precision"][j] == pytest.approx(p)
        assert got["recall"][j] == pytest.approx(r)
        assert got["f1"][j] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)
        assert got["support"][j] == t[:, j].sum()
    tp, pp, tt = np.sum(decided & t), decided.sum(), t.sum()
    assert got["micro_f1"] == pytest.approx(2 * tp / (pp + tt))


def test_multilabel_hand_example_and_no_nan():
    probs = torch.tensor([[0.9, 0.1, 0.2],
                          [0.6, 0.7, 0.1],
                          [0.2, 0.8, 0.4]])
    targets = torch.tensor([[1, 0, 0],
                            [1, 0, 0],
                            [0, 1, 1]])
    # decisions: [1,0,0] exact; [1,1,0] one wrong; [0,1,0] one wrong
    assert M.subset_accuracy(probs, targets) == pytest.approx(1 / 3)
    assert M.hamming_loss(probs, targets) == pytest.approx(2 / 9)
    prf = M.multilabel_prf(probs, targets)
    assert prf["precision"] == pytest.approx([1.0, 0.5, 0.0])  # label 2 never predicted -> 0
    assert prf["recall"] == pytest.approx([1.0, 1.0, 0.0])
    assert prf["f1"] == pytest.approx([1.0, 2 / 3, 0.0])
    assert M.subset_accuracy(probs, targets, threshold=0.35) == pytest.approx(2 / 3)


# ---------------------------------------------------------------------------- the report


def test_classification_report_is_complete_and_json_ready(random_batch):
    logits, y, k = random_batch
    names = [f"class-{i}" for i in range(k)]
    report = M.classification_report(logits, y, names, loss=1.25)
    json.dumps(report)  # plain python all the way down
    assert report["accuracy"] == pytest.approx(M.accuracy(logits, y))
    assert report["loss"] == 1.25
    assert report["uniform_perplexity"] == k
    nll = torch.nn.functional.cross_entropy(logits, y).item()
    assert report["perplexity"] == pytest.approx(math.exp(nll))
    assert set(report["topk"]) == {"top1", "top3", "top5"}
    assert report["topk"]["top1"] == pytest.approx(report["accuracy"])
    assert [row["name"] for row in report["per_class"]] == names
    assert sum(row["support"] for row in report["per_class"]) == len(y)
    cm = report["confusion_matrix"]
    assert len(cm) == k and sum(map(sum, cm)) == len(y)
    assert sum(cm[i][i] for i in range(k)) / len(y) == pytest.approx(report["accuracy"])

    small = M.classification_report(torch.randn(8, 3), torch.randint(0, 3, (8,)))
    assert set(small["topk"]) == {"top1"}  # only k < K
    assert small["loss"] is None and small["class_names"] == ["0", "1", "2"]


def test_format_report_shows_tables_and_truncates_names(random_batch):
    logits, y, k = random_batch
    names = ["zero", "one", "a very long class name indeed", "three", "four", "five", "six"]
    text = M.format_report(M.classification_report(logits, y, names, loss=0.5))
    assert "precision" in text and "recall" in text and "support" in text
    assert "confusion matrix" in text
    assert "a very long class name indeed" not in text
    assert "a very long~" in text
    report = M.classification_report(logits, y, names)
    assert f"{report['accuracy']:.4f}" in text
    # Every confusion matrix row is present with its counts.
    cm_lines = text.split("confusion matrix")[1].splitlines()[2:]
    assert len(cm_lines) == k
    for line, counts in zip(cm_lines, report["confusion_matrix"]):
        assert [int(v) for v in line.split()[-k:]] == counts
    # A report read back from JSON formats the same way.
    assert M.format_report(json.loads(json.dumps(report))) == M.format_report(report)


@pytest.mark.gpu
def test_metrics_on_cuda(random_batch):
    logits, y, k = random_batch
    cpu = M.classification_report(logits, y)
    gpu = M.classification_report(logits.cuda(), y.cuda())
    assert gpu["confusion_matrix"] == cpu["confusion_matrix"]
    assert gpu["accuracy"] == pytest.approx(cpu["accuracy"])
    assert M.confusion_matrix(logits.cuda(), y.cuda(), k).device.type == "cuda"


# ---------------------------------------------------------------------------- scikit-learn as the oracle

SEEDS = [0, 1, 2, 3, 4]


def _random_labels(seed: int, k: int = 6, n: int = 200):
    """Random true labels and predictions; class k-1 is never predicted and class 0 never true."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(1, k, (n,), generator=g)
    preds = torch.randint(0, k - 1, (n,), generator=g)
    agree = torch.rand(n, generator=g) < 0.4  # some signal, so that no score is trivially 0
    preds = torch.where(agree & (y < k - 1), y, preds)
    return preds, y, k


@pytest.mark.parametrize("seed", SEEDS)
def test_single_label_metrics_match_sklearn(seed):
    preds, y, k = _random_labels(seed)
    labels = list(range(k))
    yt, yp = y.numpy(), preds.numpy()
    assert M.accuracy(preds, y) == pytest.approx(skm.accuracy_score(yt, yp))
    cm = M.confusion_matrix(preds, y, k)
    np.testing.assert_array_equal(cm.numpy(), skm.confusion_matrix(yt, yp, labels=labels))
    prf = M.per_class_prf(cm)
    p, r, f, s = skm.precision_recall_fscore_support(yt, yp, labels=labels, zero_division=0)
    np.testing.assert_allclose(prf["precision"], p)
    np.testing.assert_allclose(prf["recall"], r)
    np.testing.assert_allclose(prf["f1"], f)
    np.testing.assert_array_equal(prf["support"], s)
    assert prf["support"][0] == 0 and prf["precision"][k - 1] == 0.0  # the absent classes give 0, not NaN
    for name, avg in (("macro_precision", "macro"), ("macro_recall", "macro")):
        fn = skm.precision_score if "precision" in name else skm.recall_score
        assert prf[name] == pytest.approx(fn(yt, yp, labels=labels, average=avg, zero_division=0))
    assert prf["macro_f1"] == pytest.approx(skm.f1_score(yt, yp, labels=labels, average="macro", zero_division=0))
    assert prf["weighted_f1"] == pytest.approx(
        skm.f1_score(yt, yp, labels=labels, average="weighted", zero_division=0))


@pytest.mark.parametrize("seed", SEEDS)
def test_classification_report_matches_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(150, 5, generator=g)
    logits[:, 3] -= 10.0  # class 3 is never predicted
    y = torch.randint(0, 5, (150,), generator=g)
    report = M.classification_report(logits, y)
    yt, yp, labels = y.numpy(), logits.argmax(1).numpy(), list(range(5))
    assert report["accuracy"] == pytest.approx(skm.accuracy_score(yt, yp))
    assert report["confusion_matrix"] == skm.confusion_matrix(yt, yp, labels=labels).tolist()
    want = skm.classification_report(yt, yp, labels=labels, output_dict=True, zero_division=0)
    for i, row in enumerate(report["per_class"]):
        assert row["precision"] == pytest.approx(want[str(i)]["precision"])
        assert row["recall"] == pytest.approx(want[str(i)]["recall"])
        assert row["f1"] == pytest.approx(want[str(i)]["f1-score"])
        assert row["support"] == want[str(i)]["support"]
    for key in ("precision", "recall"):
        assert report["macro"][key] == pytest.approx(want["macro avg"][key])
    assert report["macro"]["f1"] == pytest.approx(want["macro avg"]["f1-score"])
    assert report["weighted_f1"] == pytest.approx(want["weighted avg"]["f1-score"])
    assert report["nll"] == pytest.approx(skm.log_loss(yt, torch.softmax(logits.double(), 1).numpy(), labels=labels))
    for k in (1, 3):  # top5 is left out with 5 classes
        want_k = skm.top_k_accuracy_score(yt, logits.numpy(), k=k, labels=labels)
        assert report["topk"][f"top{k}"] == pytest.approx(want_k)
    assert "top5" not in report["topk"]


@pytest.mark.parametrize("seed", SEEDS)
def test_multilabel_metrics_match_sklearn(seed):
    g = torch.Generator().manual_seed(seed)
    n, labels = 120, 6
    targets = torch.rand(n, labels, generator=g) < 0.3
    targets[:, 0] = False  # a label nobody has
    probs = torch.rand(n, labels, generator=g)
    probs = torch.where(targets, probs * 0.5 + 0.4, probs * 0.6)  # some signal
    probs[:, labels - 1] = 0.1  # a label never predicted
    yt, yp = targets.numpy().astype(int), (probs >= 0.5).numpy().astype(int)
    assert M.hamming_loss(probs, targets, logits=False) == pytest.approx(skm.hamming_loss(yt, yp))
    assert M.subset_accuracy(probs, targets, logits=False) == pytest.approx(skm.accuracy_score(yt, yp))
    prf = M.multilabel_prf(probs, targets, logits=False)
    p, r, f, s = skm.precision_recall_fscore_support(yt, yp, zero_division=0)
    np.testing.assert_allclose(prf["precision"], p)
    np.testing.assert_allclose(prf["recall"], r)
    np.testing.assert_allclose(prf["f1"], f)
    np.testing.assert_array_equal(prf["support"], s)
    assert prf["macro_f1"] == pytest.approx(skm.f1_score(yt, yp, average="macro", zero_division=0))
    assert prf["micro_f1"] == pytest.approx(skm.f1_score(yt, yp, average="micro", zero_division=0))
    assert prf["weighted_f1"] == pytest.approx(skm.f1_score(yt, yp, average="weighted", zero_division=0))
    report = M.multilabel_report(probs, targets)
    assert report["subset_accuracy"] == pytest.approx(skm.accuracy_score(yt, yp))
    assert report["hamming_loss"] == pytest.approx(skm.hamming_loss(yt, yp))
    logits = torch.logit(probs.double().clamp(1e-6, 1 - 1e-6)).float()  # the same decisions from logits
    assert M.hamming_loss(logits, targets, logits=True) == pytest.approx(skm.hamming_loss(yt, yp))
