"""A loaded model that classifies user images: checkpoint + image files -> labels and probabilities.

An image with no ink after preparation (`mnistlab.data.images.is_blank`) gets no label: any class the
model gave it would be a guess, so it is reported as blank instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from mnistlab.data.images import prepare_image, prepared_blanks
from mnistlab.errors import ConfigError, ImageError, without_name

if TYPE_CHECKING:
    import torch

    from mnistlab.runs.checkpoint import Checkpoint


class ImagePredictor:
    """The predictor interface: prepared uint8 images -> class probabilities, and everything built on that.

    Two backends implement `probabilities`: `Predictor` (a PyTorch checkpoint) here and
    `mnistlab.export.runtime.OnnxPredictor` (an exported .onnx file through onnxruntime, no torch).
    Preparation, blanks, top-k and the answer format are shared, so both give the same answers.
    """

    class_names: tuple[str, ...]
    in_shape: tuple[int, int, int]

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W[, C]) -> float32 class probabilities (N, K)."""
        raise NotImplementedError

    def assumptions(self) -> str | None:
        """One line saying what this model's file lacked and what is assumed in its place (a command
        prints it as a warning); None when nothing is assumed, as for every mnistlab checkpoint."""
        return None

    def prepare(self, sources: Sequence) -> np.ndarray:
        """Images (paths, bytes, PIL images or arrays) -> uint8 (N, H, W[, C]) prepared like MNIST."""
        c, h, _ = self.in_shape
        return np.stack([prepare_image(s, size=h, channels=c) for s in sources])

    def classify(self, images: np.ndarray, batch_size: int = 1000) -> np.ndarray:
        """Already-prepared uint8 images (N, H, W[, C]), e.g. CSV rows, -> class indices (N,); no re-centring.

        Every row gets a class, blank ones too (`find_blanks` tells which those are).
        """
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        preds = [self.probabilities(images[i : i + batch_size]).argmax(1) for i in range(0, len(images), batch_size)]
        return np.concatenate(preds).astype(np.int64) if preds else np.zeros(0, dtype=np.int64)

    def predict_files(self, sources: Sequence, top_k: int = 3, errors: str = "raise") -> list[dict]:
        """One dict per image, in order: file and blank, then (when not blank) label, class index, probability, top-k.

        Every readable image is classified in one batch. `errors`: "raise" (the first unreadable
        image's ImageError) or "report": that image's dict is {"file", "error"}, the reason without
        the file's name, and the others are classified all the same.
        `top_k` is clamped to the number of classes; below 1 it is a ConfigError.
        """
        if not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ConfigError(f"--top-k must be a positive integer, got {top_k!r}")
        if errors not in ("raise", "report"):
            raise ConfigError(f"errors must be 'raise' or 'report', got {errors!r}")
        names = [str(s) if isinstance(s, (str, os.PathLike)) else "<image>" for s in sources]
        c, h, _ = self.in_shape
        prepared, failed = [], {}
        for i, src in enumerate(sources):
            try:
                prepared.append(prepare_image(src, size=h, channels=c))
            except ImageError as e:
                if errors == "raise":
                    raise
                # The message names the file already (load_image's "bad.png: ..."), or not (an array).
                failed[i] = without_name(names[i], str(e))
        read = iter(())
        if prepared:
            images = np.stack(prepared)
            blanks = prepared_blanks(images)
            probs = np.asarray(self.probabilities(images), dtype=np.float32)
            k = min(top_k, probs.shape[1])
            indices = np.argsort(-probs, axis=1, kind="stable")[:, :k]  # ties: the lower class first, as topk
            values = np.take_along_axis(probs, indices, axis=1)
            read = iter(zip(blanks.tolist(), values.tolist(), indices.tolist()))
        out = []
        for n, name in enumerate(names):
            if n in failed:
                out.append({"file": name, "error": failed[n]})
                continue
            blank, v, i = next(read)
            entry: dict = {"file": name, "blank": blank}
            if not blank:
                entry.update({
                    "label": self.class_names[i[0]], "class": i[0], "prob": v[0],
                    "top": [{"label": self.class_names[j], "class": j, "prob": p} for j, p in zip(i, v)],
                })
            out.append(entry)
        return out


@dataclass
class Predictor(ImagePredictor):
    """A PyTorch model in eval mode with the normalisation it was trained with."""

    model: torch.nn.Module
    class_names: tuple[str, ...]
    mean: torch.Tensor
    std: torch.Tensor
    in_shape: tuple[int, int, int]
    loss: str
    device: torch.device

    @classmethod
    def from_checkpoint(cls, path: str | os.PathLike | Checkpoint, device: str = "cpu", tta: bool | None = None) -> "Predictor":
        """The checkpoint's model (a path, or a Checkpoint already read); `tta` turns its test-time
        augmentation views on or off (None: as the run was tested)."""
        import torch

        from mnistlab.device import resolve_device, uses_convolutions
        from mnistlab.runs.checkpoint import Checkpoint, load_checkpoint

        ckpt = path if isinstance(path, Checkpoint) else load_checkpoint(path)
        dev = resolve_device(device)
        model = ckpt.build_model().to(dev).eval()
        if uses_convolutions(model) and dev.type == "cpu":
            model.to(memory_format=torch.channels_last)
        from mnistlab.models.tta import as_tested

        model = as_tested(model, ckpt.cfg, tta)  # the views the run's test accuracy was measured with
        channels = ckpt.in_shape[0]
        mean = torch.tensor(ckpt.norm[0], device=dev).view(1, channels, 1, 1)
        std = torch.tensor(ckpt.norm[1], device=dev).view(1, channels, 1, 1)
        return cls(model, ckpt.class_names, mean, std, ckpt.in_shape, ckpt.cfg.loss, dev)

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """uint8 images (N, H, W[, C]) -> class probabilities (N, K), float32 on the CPU."""
        import torch

        from mnistlab.training.losses import as_class_logits, class_probabilities

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
            x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)  # -> (N, C, H, W)
            x = (x.float() / 255.0 - self.mean) / self.std
            logits = as_class_logits(self.model(x).float())
            return class_probabilities(logits, self.loss).cpu().numpy()
