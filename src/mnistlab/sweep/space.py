"""The search space of a sweep: which Config fields vary, over what ranges, checked before any trial runs.

A space is a JSON object of Config field -> range, the same shape in a `--space` file and in
`default_space`:

    {"lr": {"low": 0.01, "high": 0.5, "log": true},     # a float range (log: sampled on a log scale)
     "epochs": {"low": 1, "high": 3, "step": 1},         # an int or float range with a step
     "batch_size": {"choices": [64, 128, 256]},          # a set of values (a bare list means the same)
     "hidden": {"choices": [[128], [256, 128]]}}         # list fields (widths) take lists as choices

Each parameter is checked like `mnistlab train`'s options: an unknown field, a value Config refuses,
or a field the model (or the rest of the fixed settings) would ignore is one ConfigError.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Collection

from mnistlab.config import Config, check_type, field_default, field_type
from mnistlab.errors import ConfigError
from mnistlab.models import list_models, model_options

# Fields that say what is trained on, where, or how a run is saved: fixed by the command line, never searched.
NOT_TUNABLE = frozenset({
    "dataset", "data_dir", "val_size", "train_size", "classes", "positive", "image_size", "channels", "test_size",
    "engine", "seed", "device", "threads", "compile", "bf16", "eval_batch_size", "log_every", "out_dir", "name",
    "save_run", "figures", "target_acc", "model",
})


@dataclass(frozen=True)
class Param:
    """One searched Config field: a range (low..high, optionally log or stepped) or a set of choices."""

    name: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple | None = None
    integer: bool = False

    def suggest(self, trial: Any) -> Any:
        """The value an Optuna trial picks for this field (as Config wants it)."""
        if self.choices is not None:
            # Optuna's choices are scalars: list-valued choices (widths) travel as "256,128" strings.
            encoded = [_encode(c) for c in self.choices]
            picked = trial.suggest_categorical(self.name, encoded)
            return self.choices[encoded.index(picked)]
        if self.integer:
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, self.low, self.high, step=self.step, log=self.log)

    def to_json(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": [list(c) if isinstance(c, tuple) else c for c in self.choices]}
        spec: dict[str, Any] = {"low": self.low, "high": self.high}
        if self.log:
            spec["log"] = True
        if self.step is not None:
            spec["step"] = self.step
        return spec


def _encode(value: Any) -> Any:
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def default_space(cfg: Config, fixed: Collection[str] = ()) -> dict[str, Any]:
    """A sensible space for `cfg.model` with `cfg.optimizer`, leaving out the fields in `fixed` (given on the command line)."""
    options = model_options(cfg.model) if cfg.model in list_models() else set()
    lr = {"sgd": (0.01, 0.5), "adam": (1e-4, 1e-2), "adamw": (1e-4, 1e-2), "adadelta": (0.1, 3.0)}[cfg.optimizer]
    space: dict[str, Any] = {
        "lr": {"low": lr[0], "high": lr[1], "log": True},
        "weight_decay": {"low": 1e-6, "high": 1e-2, "log": True},
        "batch_size": {"choices": [64, 128, 256]},
    }
    if "dropout" in options:
        space["dropout"] = {"low": 0.0, "high": 0.5}
    if "hidden" in options and cfg.model == "mlp":
        space["hidden"] = {"choices": [[128], [256], [512], [256, 128]]}
    if "hidden_size" in options:
        space["hidden_size"] = {"choices": [64, 128, 256]}
    return {k: v for k, v in space.items() if k not in fixed}


def read_space(path: str | Path) -> dict[str, Any]:
    """The JSON object in a --space file (parse_space checks it)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"--space {path}: cannot read it: {e}") from None
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"--space {path}: a space file holds one non-empty JSON object of field -> range, "
                          'e.g. {"lr": {"low": 0.01, "high": 0.5, "log": true}}')
    return data


def parse_space(space: dict[str, Any], base: Config, fixed: Collection[str] = (), where: str = "--space") -> list[Param]:
    """Check a space against the fixed settings `base` (fields in `fixed` were given on the command line)."""
    known = {f.name for f in dataclasses.fields(Config)}
    params = []
    for name, spec in space.items():
        at = f"{where}: {name!r}"
        if name not in known:
            tunable = sorted(known - NOT_TUNABLE)
            raise ConfigError(f"{at} is not a setting (searchable: {', '.join(tunable)})")
        if name in NOT_TUNABLE:
            raise ConfigError(f"{at} says what is trained or where, not how: give it as a fixed option (--{name.replace('_', '-')})")
        if name in fixed:
            raise ConfigError(f"{at} is also given as a fixed option (--{name.replace('_', '-')}): search it or fix it, not both")
        param = _param(name, spec, at)
        for value in (param.choices if param.choices is not None else (param.low, param.high)):
            _check_value(name, value, base, at)
        params.append(param)
    return params


def _param(name: str, spec: Any, at: str) -> Param:
    base_type, optional, is_tuple = field_type(name)
    if isinstance(spec, list):
        spec = {"choices": spec}
    if not isinstance(spec, dict):
        raise ConfigError(f"{at}: expected {{\"low\": A, \"high\": B}} or {{\"choices\": [...]}}, got {spec!r}")
    extra = set(spec) - {"low", "high", "log", "step", "choices"}
    if extra:
        raise ConfigError(f"{at}: unknown key(s) {', '.join(sorted(extra))} (use low, high, log, step or choices)")
    if "choices" in spec:
        if set(spec) != {"choices"}:
            raise ConfigError(f"{at}: give either choices or low/high, not both")
        choices = spec["choices"]
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{at}: choices must be a non-empty list, got {choices!r}")
        values = tuple(_typed(name, c, at) for c in choices)
        if len(set(map(_encode, values))) != len(values):
            raise ConfigError(f"{at}: choices repeat a value: {choices!r}")
        return Param(name, choices=values)
    if is_tuple or base_type in (bool, str):
        raise ConfigError(f"{at}: {name} takes a list of choices, not a range, e.g. "
                          f'{{"choices": {json.dumps(_example(name))}}}')
    if "low" not in spec or "high" not in spec:
        raise ConfigError(f"{at}: a range needs both low and high")
    low, high = (_typed(name, spec[k], at) for k in ("low", "high"))
    if low is None or high is None or not low < high:
        raise ConfigError(f"{at}: low must be below high, got low {spec['low']!r}, high {spec['high']!r}")
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise ConfigError(f"{at}: log is true or false, got {log!r}")
    if log and low <= 0:
        raise ConfigError(f"{at}: a log range needs low above 0, got {low!r}")
    step = spec.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise ConfigError(f"{at}: step must be a positive number, got {step!r}")
        if log:
            raise ConfigError(f"{at}: a range is either log or stepped, not both")
        if base_type is int and step != int(step):
            raise ConfigError(f"{at}: {name} is a whole number, so step must be one too, got {step!r}")
    return Param(name, low=low, high=high, log=log, step=step, integer=base_type is int)


def _typed(name: str, value: Any, at: str) -> Any:
    try:
        return check_type(name, value, name)
    except ConfigError as e:
        raise ConfigError(f"{at}: {e}") from None


def _example(name: str) -> list:
    default = field_default(name)
    if isinstance(default, bool):
        return [True, False]
    if isinstance(default, str):
        return [default]
    return [[128], [256, 128]]


def _check_value(name: str, value: Any, base: Config, at: str) -> None:
    """Config accepts `value` for `name` over the fixed settings, and would not ignore it."""
    from mnistlab.runs.session import ignored_settings

    try:
        cfg = Config.from_dict({name: value}, base=base)
    except ConfigError as e:
        raise ConfigError(f"{at}: {e}") from None
    if value != field_default(name):  # ignored_settings only sees values away from the default
        why = ignored_settings(cfg).get(name)
        if why:
            raise ConfigError(f"{at}: {why}")
