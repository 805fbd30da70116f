"""mnistlab: train, evaluate, explain and serve classifiers on MNIST-family images, fast.

Public API::

    from mnistlab import Classifier                    # scikit-learn style
    clf = Classifier("fastcnn", epochs=2).fit(x_train, y_train)
    clf.score(x_test, y_test)

    from mnistlab import Config, load_dataset, create_model, fit    # the pieces underneath
    data = load_dataset("mnist")
    model = create_model("fastcnn", data.num_classes, data.in_shape)
    history = fit(model, data, Config(epochs=1))

Names are imported on first use, so `import mnistlab` stays cheap (no torch until it is needed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "Config": "mnistlab.config",
    "Classifier": "mnistlab.estimator",
    "load_dataset": "mnistlab.data.loader",
    "ImageDataset": "mnistlab.data.loader",
    "DataBundle": "mnistlab.data.loader",
    "create_model": "mnistlab.models",
    "list_models": "mnistlab.models",
    "register_model": "mnistlab.models",
    "fit": "mnistlab.training.trainer",
    "evaluate": "mnistlab.training.trainer",
    "Trainer": "mnistlab.training.trainer",
    "Hooks": "mnistlab.training.trainer",
    "load_checkpoint": "mnistlab.runs.checkpoint",
    "read_checkpoint": "mnistlab.runs.checkpoint",
    "TrainSession": "mnistlab.runs.session",
    "Predictor": "mnistlab.evaluation.predict",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'mnistlab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
