"""An exported .onnx model through onnxruntime: the `ImagePredictor` backend that needs no torch.

The file's metadata (keys under `mnistlab.`, written by `onnx_export`) says everything a consumer
needs: class names, input shape, how to prepare a user image, whether the logits are read with a
softmax or per-class sigmoids (multi-label) and the label threshold. A file from elsewhere, without
that metadata, still runs when its input is one image tensor (N, C, H, W) and its output (N, K):
it gets plain [0, 1] input and class names 0..K-1, and `missing` lists what it lacked.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from mnistlab.errors import CheckpointError, ConfigError, MnistlabError
from mnistlab.evaluation.predict import ImagePredictor
from mnistlab.export import INSTALL_HINT

PREFIX = "mnistlab."
FORMAT = "1"
# The metadata a file needs to be used as mnistlab wrote it (the rest is informational).
REQUIRED = ("class_names", "in_shape", "probabilities")


def is_onnx_path(path: str | os.PathLike) -> bool:
    """True for a path that names an .onnx file (the CLI picks the onnxruntime backend for it)."""
    return str(path).lower().endswith(".onnx")


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError:
        raise MnistlabError(INSTALL_HINT) from None
    return onnxruntime


def open_session(path: str | os.PathLike | bytes, threads: int = 1) -> Any:
    """An onnxruntime session on the CPU; a missing, corrupt or truncated file is one CheckpointError."""
    ort = _ort()
    name = "<bytes>" if isinstance(path, bytes) else str(path)
    if not isinstance(path, bytes):
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"{p}: no such ONNX file")
        if p.stat().st_size == 0:
            raise CheckpointError(f"{p}: the file is empty, not an ONNX model")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # errors only: onnxruntime's own warnings do not reach the user
    try:
        return ort.InferenceSession(path if isinstance(path, bytes) else str(path), sess_options=opts,
                                    providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for every kind of bad file
        detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{name}: not a readable ONNX model (corrupt or truncated?): {detail[:200]}") from None


def read_metadata(session: Any) -> dict[str, str]:
    """The mnistlab.* metadata of a session's model, keys without the prefix."""
    props = session.get_modelmeta().custom_metadata_map
    return {k[len(PREFIX):]: v for k, v in props.items() if k.startswith(PREFIX)}


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def probabilities_from_logits(logits: np.ndarray, rule: str) -> np.ndarray:
    """(N, K) logits -> probabilities by the file's rule: "softmax", or "sigmoid" per class (multi-label)."""
    logits = logits.astype(np.float32, copy=False)
    if rule == "sigmoid":
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    return _softmax(logits).astype(np.float32)


class OnnxPredictor(ImagePredictor):
    """A .onnx file as an `ImagePredictor`: the same answers as the PyTorch `Predictor`, through onnxruntime."""

    def __init__(self, session: Any, path: str = "<onnx>") -> None:
        self.session = session
        self.path = path
        self.metadata = read_metadata(session)
        inputs, outputs = session.get_inputs(), session.get_outputs()
        self.missing = [k for k in REQUIRED if k not in self.metadata]
        if len(inputs) != 1 or len(outputs) < 1:
            raise CheckpointError(f"{path}: expected one image input, the model has {len(inputs)} inputs "
                                  f"and {len(outputs)} outputs")
        self.input_name = inputs[0].name
        shape = inputs[0].shape  # dims are ints or names (a dynamic batch axis)
        try:
            self.in_shape = tuple(int(v) for v in json.loads(self.metadata["in_shape"]))
        except (KeyError, ValueError, TypeError):
            if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
                raise CheckpointError(f"{path}: not an mnistlab export (no mnistlab metadata: "
                                      f"{', '.join(self.missing)}) and its input {shape} is not one image "
                                      "tensor (N, C, H, W) to run with plain [0, 1] input") from None
            self.in_shape = tuple(int(d) for d in shape[1:])
        if "class_names" in self.metadata:
            self.class_names = tuple(str(c) for c in json.loads(self.metadata["class_names"]))
        else:
            k = outputs[0].shape[-1] if outputs[0].shape and isinstance(outputs[0].shape[-1], int) else None
            if k is None:
                k = self._run(np.zeros((1, *self.in_shape), dtype=np.float32)).shape[1]
            self.class_names = tuple(str(i) for i in range(k))
        self.rule = self.metadata.get("probabilities", "softmax")
        self.multilabel = self.metadata.get("multilabel", "false") == "true"
        self.threshold = float(self.metadata.get("threshold", 0.5))

    def assumptions(self) -> str | None:
        """For a file without (all of) mnistlab's metadata: what is missing and what is assumed instead."""
        if not self.missing:
            return None
        c, h, w = self.in_shape
        assumed = {"class_names": f"classes named 0..{len(self.class_names) - 1}",
                   "in_shape": f"plain [0, 1] images of {c}x{h}x{w} (the graph's input shape)",
                   "probabilities": "a softmax over its outputs"}
        return (f"{self.path}: not an mnistlab export (no {', '.join(self.missing)} in its metadata); running "
                f"it with {', '.join(assumed[k] for k in self.missing)}")

    @classmethod
    def from_file(cls, path: str | os.PathLike, threads: int = 1) -> "OnnxPredictor":
        return cls(open_session(path, threads=threads), str(path))

    def _run(self, x: np.ndarray) -> np.ndarray:
        try:
            out = self.session.run(None, {self.input_name: x})[0]
        except Exception as e:
            raise CheckpointError(f"{self.path}: onnxruntime could not run the model on input {x.shape}: "
                                  f"{str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__}") from None
        out = np.asarray(out)
        if out.ndim != 2 or out.shape[0] != x.shape[0]:
            raise CheckpointError(f"{self.path}: expected logits (N, K) from the model, got shape {out.shape}")
        return out

    def logits(self, x01: np.ndarray) -> np.ndarray:
        """float32 images (N, C, H, W) in [0, 1] -> logits (N, K), as the graph gives them."""
        return self._run(np.ascontiguousarray(x01, dtype=np.float32))

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W[, C]) -> float32 class probabilities (N, K)."""
        x = np.asarray(images)
        x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)  # -> (N, C, H, W)
        x = x.astype(np.float32) * np.float32(1 / 255)
        return probabilities_from_logits(self.logits(x), self.rule)

    def card(self) -> dict[str, Any]:
        """What a server shows about the model (the same keys as `mnistlab.serve.app.model_card`)."""
        m = self.metadata
        c, h, w = self.in_shape
        accuracy = m.get("test_accuracy")
        return {
            "model": m.get("model", "onnx"), "dataset": m.get("dataset", "unknown"),
            "test_accuracy": float(accuracy) if accuracy not in (None, "") else None,
            "parameters": int(m.get("parameters", 0)),
            "class_names": list(self.class_names),
            "input": {"channels": c, "height": h, "width": w},
            "checkpoint": Path(self.path).name, "run": Path(self.path).parent.name,
        }


def load_predictor(path: str | os.PathLike, device: str = "cpu", tta: bool | None = None) -> ImagePredictor:
    """The predictor for a run folder, a checkpoint or an .onnx file (onnxruntime; torch is not imported).

    `tta`: a checkpoint's test-time augmentation views on or off (None: as the run was tested); an
    .onnx file holds its own (choose them when exporting), so asking is an error there.
    """
    if is_onnx_path(path):
        if tta is not None:
            raise ConfigError(f"--{'' if tta else 'no-'}tta: {path} is an ONNX graph, which holds its own test-time "
                              "augmentation (see its test_time_augmentation metadata); export again with "
                              "`mnistlab export RUN --tta` or `--no-tta` to change it")
        return OnnxPredictor.from_file(path)
    from mnistlab.evaluation.predict import Predictor

    return Predictor.from_checkpoint(path, device=device, tta=tta)
