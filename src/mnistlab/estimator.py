"""`Classifier`: a scikit-learn-style estimator over mnistlab's one trainer.

    clf = Classifier("fastcnn", epochs=2).fit(x_train, y_train)   # uint8 (N, 28, 28), labels of any type
    clf.score(x_test, y_test); clf.predict_proba(x_test[:5]); clf.save("digits.safetensors")

It takes every `Config` field as a keyword, follows scikit-learn's conventions (constructor
arguments stored as given, `get_params`/`set_params`, `fit` returns self, fitted attributes end in
`_`), and so works with `sklearn.base.clone` and `cross_val_score`. Fitting learns the normalisation
from the data it is given and uses all of it for training unless `val_size` asks for a split.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mnistlab.config import Config
from mnistlab.errors import ConfigError, DataError

# What an estimator does differently from `mnistlab train`: no run folder or figures, and the
# data given to `fit` is all training data (cross-validation does the holding out).
ESTIMATOR_DEFAULTS: dict[str, Any] = {"save_run": False, "figures": False, "val_size": 0}
_CONFIG_FIELDS = {f.name for f in dataclasses.fields(Config)}


def _as_images(x: Any) -> np.ndarray:
    """Arrays (N,H,W), (N,H*W) square, (N,C,H,W), or a torch Dataset of (image, label) -> float32 (N,C,H,W)."""
    if isinstance(x, torch.utils.data.Dataset):
        raise TypeError("internal: datasets are unpacked by _unpack")
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise DataError(f"images must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim == 2:  # (N, H*W) flat rows, e.g. from a CSV or sklearn's fetch_openml
        side = int(round(np.sqrt(arr.shape[1])))
        if side * side != arr.shape[1]:
            raise DataError(f"flat images of {arr.shape[1]} values are not square; pass (N, C, H, W) instead")
        arr = arr.reshape(len(arr), 1, side, side)
    elif arr.ndim == 3:
        arr = arr[:, None]
    elif arr.ndim != 4:
        raise DataError(f"images must have shape (N, H, W), (N, H*W) or (N, C, H, W), got {arr.shape}")
    if arr.shape[0] == 0:
        raise DataError("no images given")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255.0  # the usual ToTensor range, as `mnistlab predict` sees images
    out = arr.astype(np.float32)
    if not np.isfinite(out).all():
        raise DataError("images contain NaN or infinite values")
    return out


def _unpack(x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) from arrays or a torch Dataset of (image, label) pairs."""
    if isinstance(x, torch.utils.data.Dataset):
        if y is not None:
            raise ConfigError("a Dataset carries its own labels: call fit(dataset) without y")
        pairs = [x[i] for i in range(len(x))]  # type: ignore[arg-type]
        images = np.stack([np.asarray(p[0].numpy() if isinstance(p[0], torch.Tensor) else p[0]) for p in pairs])
        labels = np.asarray([int(p[1]) for p in pairs])
        return _as_images(images), labels
    if y is None:
        raise ConfigError("fit(X, y) needs labels y (or a torch Dataset, or a registered data-set name)")
    images = _as_images(x)
    labels = np.asarray(y.detach().cpu().numpy() if isinstance(y, torch.Tensor) else y)
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(f"y must be one label per image: {len(images)} images, labels of shape {labels.shape}")
    return images, labels


class Classifier:
    """An MNIST-family image classifier with scikit-learn's fit / predict / score interface.

    Args:
        model: a registered model name (`mnistlab models`).
        **config: any `Config` field (epochs, lr, batch_size, device, seed, threads, ...).
    """

    def __init__(self, model: str = "fastcnn", **config: Any):
        unknown = sorted(set(config) - _CONFIG_FIELDS)
        if unknown:
            raise ConfigError(f"unknown Classifier option(s): {', '.join(unknown)} (any Config field is allowed)")
        self.model = model
        self._config_keys = tuple(sorted(config))
        for key, value in config.items():
            setattr(self, key, value)

    # --- scikit-learn protocol ---------------------------------------------------------------

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor arguments, as given (scikit-learn's clone relies on them being the same objects)."""
        return {"model": self.model, **{k: getattr(self, k) for k in self._config_keys}}

    def set_params(self, **params: Any) -> "Classifier":
        """Change constructor arguments; returns self."""
        unknown = sorted(set(params) - _CONFIG_FIELDS - {"model"})
        if unknown:
            raise ConfigError(f"unknown Classifier option(s): {', '.join(unknown)}")
        for key, value in params.items():
            setattr(self, key, value)
            if key != "model" and key not in self._config_keys:
                self._config_keys = tuple(sorted((*self._config_keys, key)))
        return self

    def __repr__(self) -> str:
        args = ", ".join([repr(self.model)] + [f"{k}={getattr(self, k)!r}" for k in self._config_keys])
        return f"Classifier({args})"

    def __sklearn_tags__(self):  # scikit-learn >= 1.6 asks estimators for their tags
        from sklearn.utils import ClassifierTags, Tags, TargetTags

        return Tags(estimator_type="classifier", target_tags=TargetTags(required=True),
                    classifier_tags=ClassifierTags())

    _estimator_type = "classifier"  # scikit-learn < 1.6

    def config(self) -> Config:
        """The validated Config these parameters describe."""
        values = {**ESTIMATOR_DEFAULTS, **{k: getattr(self, k) for k in self._config_keys}, "model": self.model}
        return Config.from_dict(values)

    # --- fitting --------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> "Classifier":
        """Train on images X with labels y (or a torch Dataset, or a registered data-set name); returns self."""
        from mnistlab.data.loader import DataBundle, Split, load_dataset, normalization_stats
        from mnistlab.runs.session import build_model, check_names
        from mnistlab.training.trainer import Trainer, resolve_device

        cfg = self.config()
        check_names(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = resolve_device(cfg.device)
        if isinstance(X, str):
            if y is not None:
                raise ConfigError(f"fit({X!r}) loads its own labels: call it without y")
            data = load_dataset(X, data_dir=cfg.data_dir, val_size=cfg.val_size, normalize=cfg.normalize,
                                device=device, seed=cfg.seed, classes=cfg.classes, positive=cfg.positive,
                                train_size=cfg.train_size)
            self.classes_ = np.asarray(data.class_names)
        else:
            images, labels = _unpack(X, y)
            self.classes_, index = np.unique(labels, return_inverse=True)
            if len(self.classes_) < 2:
                raise DataError(f"y holds one class only ({self.classes_[0]!r}); a classifier needs two or more")
            mean, std = normalization_stats(images, cfg.normalize)
            x = torch.from_numpy(images)
            x = ((x - torch.tensor(mean).view(1, -1, 1, 1)) / torch.tensor(std).view(1, -1, 1, 1)).to(device)
            train = Split(x, torch.from_numpy(index.astype(np.int64)).to(device))
            empty = Split(x[:0], train.y[:0])
            data = DataBundle(train, None, empty, tuple(str(c) for c in self.classes_), tuple(x.shape[1:]),
                              mean, std, name="arrays")
        torch.manual_seed(cfg.seed)
        self.model_ = build_model(cfg, data).to(device)
        Trainer(self.model_, data, cfg).fit()
        self.model_.eval()
        self.config_ = cfg
        self.norm_ = (tuple(data.mean), tuple(data.std))
        self.in_shape_ = tuple(data.in_shape)
        self.n_features_in_ = int(np.prod(self.in_shape_))
        return self

    # --- prediction -----------------------------------------------------------------------------

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            from sklearn.exceptions import NotFittedError

            raise NotFittedError("this Classifier is not fitted yet: call fit(X, y) first")

    @torch.inference_mode()
    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (N, n_classes), columns in the order of `classes_`."""
        from mnistlab.training.losses import as_class_logits, class_probabilities

        self._check_fitted()
        images = _as_images(X)
        if tuple(images.shape[1:]) != self.in_shape_:
            raise DataError(f"images are {tuple(images.shape[1:])}, the model was fitted on {self.in_shape_}")
        from mnistlab.models.tta import as_tested

        device = next(self.model_.parameters()).device
        c = self.in_shape_[0]
        mean = torch.tensor(self.norm_[0], device=device).view(1, c, 1, 1)
        std = torch.tensor(self.norm_[1], device=device).view(1, c, 1, 1)
        cfg = self.config_
        # The views a saved checkpoint's `mnistlab predict` would use (fastcnn's default; tta=False: none).
        model = as_tested(self.model_, cfg)
        out = []
        for i in range(0, len(images), cfg.eval_batch_size):
            x = (torch.from_numpy(images[i : i + cfg.eval_batch_size]).to(device) - mean) / std
            logits = as_class_logits(model(x).float())
            out.append(class_probabilities(logits, cfg.loss).cpu())
        return torch.cat(out).numpy()

    def predict(self, X: Any) -> np.ndarray:
        """The likeliest class of each image, as one of the labels given to `fit`."""
        self._check_fitted()
        return self.classes_[self.predict_proba(X).argmax(1)]

    def score(self, X: Any, y: Any) -> float:
        """Mean accuracy on (X, y), as scikit-learn classifiers define it."""
        return float(np.mean(self.predict(X) == np.asarray(y)))

    # --- persistence ----------------------------------------------------------------------------

    def save(self, path: str | os.PathLike) -> Path:
        """Write an mnistlab checkpoint (also readable by `mnistlab predict` and `evaluate`)."""
        from mnistlab.runs.checkpoint import save_checkpoint

        self._check_fitted()
        classes = {"labels": self.classes_.tolist(), "dtype": self.classes_.dtype.str}
        cfg = dataclasses.replace(self.config_)
        return save_checkpoint(path, self.model_, cfg, tuple(str(c) for c in self.classes_), self.in_shape_,
                               self.norm_, extra={"estimator_classes": classes})

    @classmethod
    def load(cls, path: str | os.PathLike, device: str = "cpu") -> "Classifier":
        """A fitted Classifier from a checkpoint written by `save` (or by `mnistlab train`)."""
        from mnistlab.runs.checkpoint import load_checkpoint
        from mnistlab.training.trainer import resolve_device

        ckpt = load_checkpoint(path)
        cfg = ckpt.cfg
        defaults = Config()
        given = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(Config)
                 if f.name != "model" and getattr(cfg, f.name) != getattr(defaults, f.name)}
        clf = cls(cfg.model, **given)
        clf.model_ = ckpt.build_model().to(resolve_device(device)).eval()
        clf.config_ = cfg
        clf.norm_ = ckpt.norm
        clf.in_shape_ = ckpt.in_shape
        clf.n_features_in_ = int(np.prod(clf.in_shape_))
        stored = ckpt.meta.get("extra", {}).get("estimator_classes")
        if stored:
            info = stored
            clf.classes_ = np.asarray(info["labels"], dtype=np.dtype(info["dtype"]))
        else:
            clf.classes_ = np.asarray(ckpt.class_names)
        return clf
