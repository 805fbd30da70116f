"""Models: one module per family, each registering its builders with `@register_model`.

Importing this package imports every module in it, so a new model is one new file here with one
decorated builder and no edit anywhere else (the registry lives in `models/registry.py`).
"""

from __future__ import annotations

import importlib
import pkgutil

from mnistlab.models.registry import (count_parameters, create_model, list_models, model_description,  # noqa: F401
                                      model_options, models_using, register_model)

# Register every model family in this folder (registry and summary are helpers, not families).
for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    if _module not in ("registry", "summary"):
        importlib.import_module(f"{__name__}.{_module}")
