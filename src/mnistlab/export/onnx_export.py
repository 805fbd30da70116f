"""A run's checkpoint -> one self-contained .onnx file, checked against PyTorch before it is written.

The graph takes float32 images (N, C, H, W) in [0, 1] (the ToTensor range) with a dynamic batch
axis, applies the run's normalisation itself, and outputs logits (N, K) (a binary logistic model's
one logit z becomes [0, z]). The metadata (`mnistlab.*` keys, see `runtime`) carries the class
names, the model and data set, the test accuracy of this very file, the image preparation and the
mnistlab version.

The exporter is PyTorch's TorchScript one (`dynamo=False`) with `dynamic_axes`: on this CPU it
exports every family in 0.1-0.3 s (the dynamo exporter took 4-20 s per model, 20 s for an LSTM,
and logs past any redirect), and its LSTM/GRU graphs were checked at batch sizes 1, 5 and 37.
Its warnings and prints are captured, never shown.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.nn as nn

from mnistlab.data.loader import build_bundle, load_any
from mnistlab.errors import CheckpointError, ExportError, MnistlabError
from mnistlab.export import INSTALL_HINT
from mnistlab.export.runtime import FORMAT, PREFIX, OnnxPredictor, open_session, probabilities_from_logits
from mnistlab.fileio import atomic_write_bytes
from mnistlab.models.cnn import fold_space_to_depth
from mnistlab.models.tta import TTAModel, as_tested
from mnistlab.runs.checkpoint import load_checkpoint, resolve_checkpoint
from mnistlab.training.losses import as_class_logits

DEFAULT_OPSET = 17
MAX_PROB_DIFF = 1e-4  # largest |p_onnx - p_torch| over the test set
MIN_AGREEMENT = 0.9999  # share of test images given the same class
BATCH = 1000


class Exported(nn.Module):
    """The model with its normalisation in front and class logits behind: [0, 1] images -> (N, K) logits."""

    def __init__(self, model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.model = model
        c = len(mean)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1))
        self.register_buffer("inv_std", 1 / torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return as_class_logits(self.model((x - self.mean) * self.inv_std))


def exported_model(ckpt: Any, tta: bool | None = None, for_graph: bool = False) -> Exported:
    """What the ONNX graph computes for a checkpoint: normalisation, the model (in eval mode) and,
    when the run evaluated with test-time augmentation (or `tta`), the same views, so the file's
    accuracy is the run's.

    `for_graph`: the module the graph is traced from, with a space-to-depth stem merged into its first
    convolution (`fold_space_to_depth`: the same function, faster in onnxruntime); the check compares
    the file with the model as trained (`for_graph=False`).
    """
    model = ckpt.build_model().float().eval()
    if for_graph:
        model = fold_space_to_depth(model, ckpt.in_shape)
    return Exported(as_tested(model, ckpt.cfg, tta), *ckpt.norm).eval()


@contextlib.contextmanager
def quiet() -> Iterator[io.StringIO]:
    """Swallow everything the exporter says: Python warnings, logging, and prints to fd 1 and 2 (C++ too)."""
    captured = io.StringIO()
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "torch._dynamo", "onnxscript")]
    levels = [lg.level for lg in loggers]
    saved = [os.dup(1), os.dup(2)]
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings(), \
            contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
        warnings.simplefilter("ignore")
        for lg in loggers:
            lg.setLevel(logging.CRITICAL)
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            yield captured
        finally:
            for fd, copy in zip((1, 2), saved):
                os.dup2(copy, fd)
                os.close(copy)
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _onnx() -> Any:
    try:
        import onnx
        import onnxruntime  # noqa: F401  (the check needs it)
    except ImportError:
        raise MnistlabError(INSTALL_HINT) from None
    return onnx


def default_out(checkpoint: str | os.PathLike, quantize: str | None = None) -> Path:
    """runs/NAME -> runs/NAME/model.onnx (model.int8.onnx); a checkpoint file -> its stem beside it."""
    path = resolve_checkpoint(checkpoint)
    stem = "model" if path.name == "last.safetensors" else path.stem
    return path.parent / f"{stem}{'.int8' if quantize else ''}.onnx"


CALIBRATION_IMAGES = 256  # training images that calibrate int8 (never test images: those score it)


def test_set(ckpt: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The run's test split as float32 (N, C, H, W) in [0, 1], its labels (N,) or multi-hot (N, K), and
    CALIBRATION_IMAGES random training images in the same form (for int8 calibration)."""
    cfg = ckpt.cfg
    raw = load_any(cfg.dataset, data_dir=cfg.data_dir, image_size=cfg.image_size, channels=cfg.channels,
                   test_size=cfg.test_size, seed=cfg.seed)
    pick = np.random.default_rng(0).permutation(len(raw.train_x))[:CALIBRATION_IMAGES]
    bundle = build_bundle(raw.train_x[pick], raw.train_y[pick], raw.test_x, raw.test_y, raw.class_names,
                          name=cfg.dataset, val_size=0, normalize="unit", device="cpu", seed=cfg.seed,
                          classes=cfg.classes, positive=cfg.positive, warn=False)
    x, y = bundle.test.x.float().contiguous().numpy(), bundle.test.y.numpy()
    if tuple(x.shape[1:]) != ckpt.in_shape:
        raise ExportError(f"{cfg.dataset}: test images are {tuple(x.shape[1:])} but {ckpt.path} takes {ckpt.in_shape}")
    return x, y, bundle.train.x.float().contiguous().numpy()


def accuracy(probs: np.ndarray, y: np.ndarray, threshold: float) -> float:
    """Share of correct answers: the class (argmax), or for multi-hot y the whole label set at the threshold."""
    if y.ndim == 2:
        return float(((probs >= threshold) == (y > 0.5)).all(axis=1).mean())
    return float((probs.argmax(1) == y).mean())


def _batched(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, batch: int = BATCH) -> np.ndarray:
    return np.concatenate([fn(x[i : i + batch]) for i in range(0, len(x), batch)])


def images_per_second(session: Any, x: np.ndarray, batch: int = BATCH, repeats: int = 3) -> float:
    """Batched onnxruntime throughput on `x` (best of `repeats` passes after a warm-up batch)."""
    name = session.get_inputs()[0].name
    session.run(None, {name: x[:batch]})
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for i in range(0, len(x), batch):
            session.run(None, {name: x[i : i + batch]})
        best = min(best, time.perf_counter() - t)
    return len(x) / best


def _torch_probs(model: nn.Module, x: np.ndarray, rule: str) -> np.ndarray:
    with torch.inference_mode():
        return _batched(lambda b: probabilities_from_logits(model(torch.from_numpy(b)).numpy(), rule), x)


def _quantize(fp32: bytes, x_calib: np.ndarray, recurrent: bool) -> bytes:
    """int8 through onnxruntime: static QDQ (calibrated on training images) for feed-forward graphs,
    dynamic (weights only) for recurrent ones, whose LSTM/GRU nodes static quantization does not cover."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quant_pre_process,
                                          quantize_dynamic, quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self, name: str) -> None:
            self.batches = iter([{name: x_calib[i : i + 64]} for i in range(0, len(x_calib), 64)])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="mnistlab-int8-") as tmp:
        src, pre, dst = (os.path.join(tmp, n) for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        Path(src).write_bytes(fp32)
        with quiet():
            try:
                quant_pre_process(src, pre, skip_symbolic_shape=True)
            except Exception:
                pre = src
            if recurrent:
                quantize_dynamic(pre, dst, weight_type=QuantType.QInt8)
            else:
                name = open_session(pre).get_inputs()[0].name
                quantize_static(pre, dst, Reader(name), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        return Path(dst).read_bytes()


def _set_metadata(model_proto: Any, meta: dict[str, Any]) -> None:
    del model_proto.metadata_props[:]
    for key, value in meta.items():
        entry = model_proto.metadata_props.add()
        entry.key = PREFIX + key
        entry.value = value if isinstance(value, str) else json.dumps(value)


def export_onnx(checkpoint: str | os.PathLike, out: str | os.PathLike | None = None, opset: int = DEFAULT_OPSET,
                quantize: str | None = None, on_step: Callable[[str], None] | None = None,
                tta: bool | None = None) -> dict[str, Any]:
    """Export, verify on the whole test set, then write atomically; an ExportError writes nothing.

    `tta`: put the run's test-time augmentation views in the graph (None: as the run was tested;
    False: the plain model, one pass per image, and the accuracy measured here goes in the metadata).

    Returns the figures: max_prob_diff, agreement, accuracies (torch, onnx, int8), speeds, sizes, out.
    """
    onnx = _onnx()
    if quantize not in (None, "int8"):
        raise ExportError(f"--quantize must be int8, got {quantize!r}")
    if not 7 <= opset <= 23:
        raise ExportError(f"--opset must be from 7 to 23 (17 is a safe default), got {opset}")
    say = on_step or (lambda _: None)
    ckpt = load_checkpoint(checkpoint)
    if ckpt.kind != "image":
        raise ExportError(f"{ckpt.path}: a {ckpt.kind} checkpoint; only image classifiers export to ONNX")
    cfg = ckpt.cfg
    out = Path(out) if out is not None else default_out(checkpoint, quantize)
    if not out.parent.is_dir():  # before the export's minute of work, not after it
        raise ExportError(f"--out {out}: the folder {out.parent} does not exist")
    model = exported_model(ckpt, tta)
    c, h, w = ckpt.in_shape
    # As `class_probabilities`: per-class sigmoids for bce; softmax otherwise, and for a single binary
    # logit z, whose graph output [0, z] has the softmax [1 - sigmoid(z), sigmoid(z)].
    rule = "sigmoid" if cfg.loss == "bce" and _output_width(model.model, ckpt.in_shape) > 1 else "softmax"

    say(f"exporting {cfg.model} ({sum(p.numel() for p in model.parameters()):,} parameters) with opset {opset}")
    buf = io.BytesIO()
    try:
        with quiet():
            torch.onnx.export(exported_model(ckpt, tta, for_graph=True), (torch.rand(2, c, h, w),), buf,
                              input_names=["images"], output_names=["logits"],
                              dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                              dynamo=False, do_constant_folding=True)
    except Exception as e:
        detail = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise ExportError(f"{ckpt.path}: the {cfg.model} model cannot be exported to ONNX (opset {opset}): {detail}") from None
    proto = onnx.load_from_string(buf.getvalue())

    x, y, calib = test_set(ckpt)
    say(f"checking onnxruntime against PyTorch on the {len(x):,} test images of {cfg.dataset}")
    session = open_session(proto.SerializeToString())
    ort_probs = _batched(lambda b: probabilities_from_logits(session.run(None, {"images": b})[0], rule), x)
    torch_probs = _torch_probs(model, x, rule)
    diff = float(np.abs(ort_probs - torch_probs).max()) if len(x) else 0.0
    agreement = float((ort_probs.argmax(1) == torch_probs.argmax(1)).mean()) if len(x) else 1.0
    report: dict[str, Any] = {
        "model": cfg.model, "dataset": cfg.dataset, "test_images": int(len(x)), "opset": opset,
        "max_prob_diff": diff, "agreement": agreement,
        "torch_accuracy": accuracy(torch_probs, y, cfg.threshold), "onnx_accuracy": accuracy(ort_probs, y, cfg.threshold),
    }
    if not (diff <= MAX_PROB_DIFF and agreement >= MIN_AGREEMENT):
        raise ExportError(f"{ckpt.path}: the ONNX graph does not match PyTorch (max probability difference {diff:.2e}, limit "
                          f"{MAX_PROB_DIFF:.0e}; same class for {100 * agreement:.3f}% of images, need "
                          f"{100 * MIN_AGREEMENT:.2f}%); nothing written")

    from mnistlab import __version__

    meta: dict[str, Any] = {
        "format": FORMAT, "version": __version__, "model": cfg.model, "dataset": cfg.dataset,
        "class_names": list(ckpt.class_names), "in_shape": [c, h, w],
        "input": "float32 images (N, C, H, W) in [0, 1]; the normalisation below is inside the graph",
        "output": "logits (N, K)", "probabilities": rule,
        "normalisation": {"mean": list(ckpt.norm[0]), "std": list(ckpt.norm[1])},
        "multilabel": "true" if y.ndim == 2 else "false", "threshold": str(cfg.threshold), "loss": cfg.loss,
        "test_accuracy": str(report["onnx_accuracy"]), "test_images": str(len(x)),
        "preparation": {"function": "mnistlab.data.images.prepare_image", "size": h, "channels": c,
                        "steps": "gray for the geometry; inverted when the paper is light; cropped to the ink; "
                                 f"fitted into a {round(h * 20 / 28)}x{round(h * 20 / 28)} box keeping the aspect "
                                 f"ratio; centred by centre of mass in {h}x{w}; uint8 / 255 -> [0, 1]"},
        "parameters": str(sum(p.numel() for p in ckpt.build_model().parameters())),
        "quantized": "none", "checkpoint": ckpt.path.name,
        "test_time_augmentation": (f"logits averaged over {cfg.tta_views} shifted views"
                                   f"{' and their mirror images' if cfg.aug_flip else ''}, inside the graph")
                                  if isinstance(model.model, TTAModel) else "none",
    }
    _set_metadata(proto, meta)
    data = proto.SerializeToString()
    if quantize:
        say("quantizing to int8")
        try:
            q = onnx.load_from_string(_quantize(data, calib, cfg.model in ("rnn", "lstm", "gru")))
        except MnistlabError:
            raise
        except Exception as e:
            raise ExportError(f"{ckpt.path}: int8 quantization failed for {cfg.model}: {str(e).strip()[:200]}") from None
        _set_metadata(q, {**meta, "quantized": "int8"})
        q_session = open_session(q.SerializeToString())
        q_probs = _batched(lambda b: probabilities_from_logits(q_session.run(None, {"images": b})[0], rule), x)
        report.update(int8_accuracy=accuracy(q_probs, y, cfg.threshold),
                      int8_agreement=float((q_probs.argmax(1) == ort_probs.argmax(1)).mean()),
                      fp32_images_per_s=images_per_second(session, x), int8_images_per_s=images_per_second(q_session, x),
                      fp32_bytes=len(data))
        meta["test_accuracy"] = str(report["int8_accuracy"])
        _set_metadata(q, {**meta, "quantized": "int8"})
        data = q.SerializeToString()
    try:
        atomic_write_bytes(out, data)
    except OSError as e:  # a read-only folder, a full disk: the checked graph is lost, nothing half-written stays
        raise ExportError(f"--out {out}: cannot write the file ({e.strerror or e}); nothing written") from None
    report.update(out=str(out), bytes=len(data))
    OnnxPredictor.from_file(out)  # the written file reads back
    return report


def _output_width(model: nn.Module, in_shape: tuple[int, int, int]) -> int:
    with torch.inference_mode():
        return int(model(torch.zeros(1, *in_shape)).shape[1])
