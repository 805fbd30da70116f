"""Classification metrics on torch tensors: accuracy, top-k, confusion matrix, per-class P/R/F1,
perplexity, multi-label scores, and the evaluation report that `mnistlab evaluate` prints.

Every function accepts CPU or CUDA tensors. Counting stays on the tensor's device; a function
that returns a Python number syncs once at the end (`.item()` / `.tolist()`).

Conventions (the same as scikit-learn, which the tests do not need):
- confusion matrix rows are the true class, columns the predicted class;
- a precision, recall or F1 whose denominator is 0 is reported as 0.0, never NaN;
- macro averages are plain means over all K classes, including classes absent from the data.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

TOPK = (1, 3, 5)  # top-k accuracies in the report, each kept only when k < num_classes
_CORNER = "true \\ pred"  # top-left cell of the text confusion matrix


def _as_preds(logits_or_preds: torch.Tensor) -> torch.Tensor:
    """(N, K) scores -> (N,) argmax labels; (N,) labels pass through."""
    if logits_or_preds.ndim == 2:
        return logits_or_preds.argmax(dim=1)
    if logits_or_preds.ndim == 1:
        return logits_or_preds.long()
    raise ValueError(f"expected (N, K) logits or (N,) predictions, got shape {tuple(logits_or_preds.shape)}")


def _check_same_n(a: torch.Tensor, y: torch.Tensor) -> None:
    if y.ndim != 1 or a.shape[0] != y.shape[0]:
        raise ValueError(f"shapes do not match: {tuple(a.shape)} against labels {tuple(y.shape)}")


def accuracy(logits_or_preds: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of samples whose prediction (argmax of logits, or the given label) equals y."""
    _check_same_n(logits_or_preds, y)
    if y.numel() == 0:
        return 0.0
    preds = _as_preds(logits_or_preds)
    return (preds == y).float().mean().item()  # sync point


def topk_accuracy(logits: torch.Tensor, y: torch.Tensor, k: int) -> float:
    """Fraction of samples whose true class is among the k highest logits (k is capped at K)."""
    _check_same_n(logits, y)
    if logits.ndim != 2:
        raise ValueError(f"top-k accuracy needs (N, K) logits, got shape {tuple(logits.shape)}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if y.numel() == 0:
        return 0.0
    k = min(k, logits.shape[1])
    topk = logits.topk(k, dim=1).indices  # (N, k)
    return (topk == y[:, None]).any(dim=1).float().mean().item()  # sync point


def confusion_matrix(preds: torch.Tensor, y: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(K, K) int64 counts on the inputs' device: rows are the true class, columns the prediction.

    `preds` may also be (N, K) logits; their argmax is used.
    """
    _check_same_n(preds, y)
    preds = _as_preds(preds)
    y = y.long()
    if y.numel() and (min(y.min().item(), preds.min().item()) < 0
                      or max(y.max().item(), preds.max().item()) >= num_classes):
        raise ValueError(f"labels or predictions outside [0, {num_classes})")
    # One bincount over the flattened (true, pred) pair index instead of a K*K loop.
    counts = torch.bincount(y * num_classes + preds, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _safe_div(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    return torch.where(den > 0, num / den.clamp(min=1e-300), torch.zeros_like(num))


def _prf(tp: torch.Tensor, pred_pos: torch.Tensor, true_pos: torch.Tensor) -> dict:
    """Precision, recall, F1 and support lists from float64 counts, 0.0 where undefined."""
    precision = _safe_div(tp, pred_pos)
    recall = _safe_div(tp, true_pos)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    support = true_pos.long()
    weights = _safe_div(true_pos, true_pos.sum().expand_as(true_pos))
    return {
        "precision": precision.tolist(),
        "recall": recall.tolist(),
        "f1": f1.tolist(),
        "support": support.tolist(),
        "macro_precision": precision.mean().item() if tp.numel() else 0.0,
        "macro_recall": recall.mean().item() if tp.numel() else 0.0,
        "macro_f1": f1.mean().item() if tp.numel() else 0.0,
        "weighted_f1": (f1 * weights).sum().item(),
    }


def per_class_prf(cm: torch.Tensor) -> dict:
    """Per-class precision/recall/F1/support (lists, length K) and their macro averages from a confusion matrix."""
    cm = torch.as_tensor(cm).detach().to("cpu", torch.float64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {tuple(cm.shape)}")
    return _prf(cm.diagonal(), cm.sum(dim=0), cm.sum(dim=1))


def perplexity(mean_nll: float) -> float:
    """exp(mean negative log-likelihood in nats); K for a uniform guess over K classes."""
    mean_nll = float(mean_nll)
    return math.exp(mean_nll) if mean_nll < 709.0 else math.inf  # exp overflows a double past ~709.78


# ---------------------------------------------------------------------------- multi-label


def _binarize(probs_or_logits: torch.Tensor, threshold: float, logits: bool | None) -> torch.Tensor:
    """(N, L) scores -> (N, L) bool decisions.

    Args:
        logits: True applies a sigmoid first, False takes the scores as probabilities; None decides
            by the values (anything outside [0, 1] means logits).
    """
    x = probs_or_logits.detach().float()
    if logits is None:
        logits = bool(((x < 0) | (x > 1)).any().item()) if x.numel() else False
    if logits:
        x = torch.sigmoid(x)
    return x >= threshold


def _check_multilabel(scores: torch.Tensor, targets: torch.Tensor) -> None:
    if scores.ndim != 2 or scores.shape != targets.shape:
        raise ValueError(f"multi-label scores and targets must both be (N, L), got "
                         f"{tuple(scores.shape)} and {tuple(targets.shape)}")


def subset_accuracy(probs_or_logits: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5,
                    logits: bool | None = None) -> float:
    """Fraction of samples whose whole label set is predicted exactly (exact match ratio)."""
    _check_multilabel(probs_or_logits, targets)
    if targets.shape[0] == 0:
        return 0.0
    decided = _binarize(probs_or_logits, threshold, logits)
    return (decided == targets.bool()).all(dim=1).float().mean().item()  # sync point


def hamming_loss(probs_or_logits: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5,
                 logits: bool | None = None) -> float:
    """Fraction of (sample, label) decisions that are wrong."""
    _check_multilabel(probs_or_logits, targets)
    if targets.numel() == 0:
        return 0.0
    decided = _binarize(probs_or_logits, threshold, logits)
    return (decided != targets.bool()).float().mean().item()  # sync point


def multilabel_prf(probs_or_logits: torch.Tensor, targets: torch.Tensor, threshold: float = 0.5,
                   logits: bool | None = None) -> dict:
    """Per-label precision/recall/F1/support (lists, length L), macro averages and micro F1."""
    _check_multilabel(probs_or_logits, targets)
    decided = _binarize(probs_or_logits, threshold, logits).double()
    truth = targets.bool().double()
    tp = (decided * truth).sum(dim=0).cpu()
    pred_pos = decided.sum(dim=0).cpu()
    true_pos = truth.sum(dim=0).cpu()
    out = _prf(tp, pred_pos, true_pos)
    micro_p = _safe_div(tp.sum(), pred_pos.sum())
    micro_r = _safe_div(tp.sum(), true_pos.sum())
    out["micro_f1"] = _safe_div(2 * micro_p * micro_r, micro_p + micro_r).item()
    return out


def topk_oracle_sets(probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """(N, L) bool: each row's |y| highest-scoring labels, i.e. the decision when the true set size is given.

    An oracle (it peeks at how many labels are true): it measures how well the scores *rank* the
    labels, apart from the threshold that decides how many to name.
    """
    _check_multilabel(probs, targets)
    k = targets.bool().sum(dim=1, keepdim=True)  # (N, 1)
    rank = probs.argsort(dim=1, descending=True, stable=True).argsort(dim=1)  # rank of each label in its row
    return rank < k


def multilabel_report(probs: torch.Tensor, targets: torch.Tensor, class_names: list[str] | None = None,
                      threshold: float = 0.5, loss: float | None = None, decision: str = "") -> dict:
    """Everything `mnistlab evaluate` shows for a multi-label model, as a JSON-ready dict.

    Args:
        probs: (N, L) per-label probabilities (sigmoids for bce, softmax for ce); a label is predicted
            when its probability is >= threshold.
        targets: (N, L) multi-hot true label sets.
        decision: how `probs` were made, for the reader (e.g. "sigmoid >= 0.5").
    """
    _check_multilabel(probs, targets)
    probs = probs.detach().float().cpu()
    targets = targets.detach().cpu().bool()
    num_labels = probs.shape[1]
    if class_names is None:
        class_names = [str(i) for i in range(num_labels)]
    if len(class_names) != num_labels:
        raise ValueError(f"{len(class_names)} class names for {num_labels} labels")
    decided = probs >= threshold
    prf = multilabel_prf(probs, targets, threshold, logits=False)
    n = targets.shape[0]
    oracle = topk_oracle_sets(probs, targets)
    return {
        "task": "multilabel",
        "num_samples": int(n),
        "num_classes": num_labels,
        "class_names": [str(name) for name in class_names],
        "threshold": float(threshold),
        "decision": decision or f"probability >= {threshold:g}",
        "accuracy": subset_accuracy(probs, targets, threshold, logits=False),  # = subset accuracy
        "subset_accuracy": subset_accuracy(probs, targets, threshold, logits=False),
        "hamming_loss": hamming_loss(probs, targets, threshold, logits=False),
        # Hamming loss of predicting no label at all: the baseline a useful model must beat.
        "hamming_loss_all_negative": float(targets.float().mean()) if n else 0.0,
        "topk_oracle_subset_accuracy": float((oracle == targets).all(dim=1).float().mean()) if n else 0.0,
        "label_cardinality": float(targets.sum(1).float().mean()) if n else 0.0,
        "predicted_cardinality": float(decided.sum(1).float().mean()) if n else 0.0,
        "loss": None if loss is None else float(loss),
        "per_class": [
            {"name": str(name), "precision": prf["precision"][i], "recall": prf["recall"][i],
             "f1": prf["f1"][i], "support": prf["support"][i]}
            for i, name in enumerate(class_names)
        ],
        "macro": {"precision": prf["macro_precision"], "recall": prf["macro_recall"], "f1": prf["macro_f1"]},
        "micro_f1": prf["micro_f1"],
        "weighted_f1": prf["weighted_f1"],
    }


def format_multilabel_report(report: dict, name_width: int = 12) -> str:
    """A fixed-width text block for `multilabel_report`: headline numbers and the per-label table."""
    lines = [
        f"samples             {report.get('num_samples', 'n/a')}",
        f"decision            {report.get('decision', 'n/a')}",
        f"subset accuracy     {_fmt(report.get('subset_accuracy'))}  (whole label set right)",
        f"Hamming loss        {_fmt(report.get('hamming_loss'))}  "
        f"(predicting no label: {_fmt(report.get('hamming_loss_all_negative'))})",
        f"micro F1            {_fmt(report.get('micro_f1'))}",
        f"macro F1            {_fmt((report.get('macro') or {}).get('f1'))}",
        f"labels per image    {_fmt(report.get('predicted_cardinality'), '.3f')} predicted, "
        f"{_fmt(report.get('label_cardinality'), '.3f')} true",
        f"top-|y| oracle      {_fmt(report.get('topk_oracle_subset_accuracy'))}  "
        "(subset accuracy when told how many labels)",
        f"loss                {_fmt(report.get('loss'))}",
    ]
    lines += _prf_table(report.get("per_class") or [], report.get("macro") or {}, "label", name_width)
    return "\n".join(lines)


def _prf_table(rows: list[dict], macro: dict, first_column: str, name_width: int) -> list[str]:
    """The per-class (or per-label) precision/recall/F1/support table, with a macro-average row."""
    if not rows:
        return []
    names = [_truncate(str(row["name"]), name_width) for row in rows]
    w = max([len(first_column), len("macro avg")] + [len(n) for n in names])
    lines = ["", f"{first_column:<{w}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>8}"]
    for name, row in zip(names, rows):
        lines.append(f"{name:<{w}}  {row['precision']:>9.4f}  {row['recall']:>9.4f}  {row['f1']:>9.4f}  "
                     f"{row['support']:>8d}")
    if macro:
        total = sum(row["support"] for row in rows)
        lines.append(f"{'macro avg':<{w}}  {macro['precision']:>9.4f}  {macro['recall']:>9.4f}  "
                     f"{macro['f1']:>9.4f}  {total:>8d}")
    return lines


# ---------------------------------------------------------------------------- the report


def classification_report(logits: torch.Tensor, y: torch.Tensor, class_names: list[str] | None = None,
                          loss: float | None = None) -> dict:
    """Everything `mnistlab evaluate` shows, as a JSON-ready dict.

    Args:
        logits: (N, K) scores from the model.
        loss: the trainer's mean loss, reported as given (may be None). Perplexity is always
            exp(mean cross-entropy of `logits`), so that it compares with uniform_perplexity = K
            whatever loss trained the model.
    """
    if logits.ndim != 2:
        raise ValueError(f"classification_report needs (N, K) logits, got shape {tuple(logits.shape)}")
    _check_same_n(logits, y)
    num_classes = logits.shape[1]
    if class_names is None:
        class_names = [str(i) for i in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    cm = confusion_matrix(logits, y, num_classes)
    prf = per_class_prf(cm)
    nll = F.cross_entropy(logits.float(), y.long()).item() if y.numel() else None  # sync point
    return {
        "num_samples": int(y.numel()),
        "num_classes": num_classes,
        "class_names": [str(name) for name in class_names],
        "accuracy": accuracy(logits, y),
        "loss": None if loss is None else float(loss),
        "nll": nll,
        "perplexity": None if nll is None else perplexity(nll),
        "uniform_perplexity": float(num_classes),
        "topk": {f"top{k}": topk_accuracy(logits, y, k) for k in TOPK if k < num_classes},
        "per_class": [
            {"name": str(name), "precision": prf["precision"][i], "recall": prf["recall"][i],
             "f1": prf["f1"][i], "support": prf["support"][i]}
            for i, name in enumerate(class_names)
        ],
        "macro": {"precision": prf["macro_precision"], "recall": prf["macro_recall"],
                  "f1": prf["macro_f1"]},
        "weighted_f1": prf["weighted_f1"],
        "confusion_matrix": cm.cpu().tolist(),
    }


def _truncate(name: str, width: int) -> str:
    return name if len(name) <= width else name[: max(width - 1, 1)] + "~"


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "n/a" if value is None else format(value, spec)


def format_report(report: dict, name_width: int = 12) -> str:
    """A fixed-width text block: headline numbers, per-class table and the confusion matrix.

    Args:
        name_width: class names longer than this are cut to it (ending in "~").
    """
    if report.get("task") == "multilabel":
        return format_multilabel_report(report, name_width)
    names = list(report.get("class_names") or [row["name"] for row in report.get("per_class", [])])
    lines = [
        f"samples     {report.get('num_samples', 'n/a')}",
        f"accuracy    {_fmt(report.get('accuracy'))}",
        f"loss        {_fmt(report.get('loss'))}",
        f"perplexity  {_fmt(report.get('perplexity'), '.3f')}  "
        f"(uniform guess: {_fmt(report.get('uniform_perplexity'), '.0f')})",
    ]
    for key, value in (report.get("topk") or {}).items():
        lines.append(f"{key + ' acc':<12}{_fmt(value)}")

    lines += _prf_table(report.get("per_class") or [], report.get("macro") or {}, "class", name_width)

    cm = report.get("confusion_matrix")
    if cm:
        labels = [_truncate(str(n), name_width) for n in names] or [str(i) for i in range(len(cm))]
        row_w = max(len(label) for label in labels + [_CORNER])
        # Column headers are cut shorter than row labels so that a 10-class matrix fits 80 columns.
        col_labels = [_truncate(label, 6) for label in labels]
        col_w = max(len(label) for label in col_labels + [str(v) for r in cm for v in r])
        lines += ["", "confusion matrix (rows: true class, columns: predicted class)",
                  f"{_CORNER:<{row_w}} " + " ".join(f"{c:>{col_w}}" for c in col_labels)]
        for label, counts in zip(labels, cm):
            lines.append(f"{label:<{row_w}} " + " ".join(f"{v:>{col_w}d}" for v in counts))
    return "\n".join(lines)
