"""mnistlab: train, evaluate, explain and serve classifiers on MNIST-family images, fast.

Public API::

    from mnistlab import Config, load_dataset, create_model, fit
    data = load_dataset("mnist")
    model = create_model("fastcnn", data.num_classes, data.in_shape)
    history = fit(model, data, Config(epochs=1))
"""

from __future__ import annotations

__version__ = "0.1.0"

from mnistlab.config import Config
from mnistlab.data.loader import ImageDataset, load_dataset
from mnistlab.models import create_model, list_models, register_model
from mnistlab.training.trainer import evaluate, fit
from mnistlab.estimator import Classifier

__all__ = [
    "Config", "load_dataset", "ImageDataset", "create_model", "list_models", "register_model", "fit", "evaluate",
    "__version__",
]
