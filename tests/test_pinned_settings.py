"""The lessons and presets name all their own settings: a change of `Config`'s defaults changes none of them.

The fixture holds the settings of every training that each lesson starts (in --quick mode and in
full mode) and of every preset, recorded by running this file at commit 63be84b, before the
defaults of default `mnistlab train` changed:

    git archive 63be84b src | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old/src python tests/test_pinned_settings.py tests/fixtures/pinned-settings-63be84b.json

Issue 16 then moved five lessons to the lectures' own settings, deliberately: LECTURE_CHANGES lists
each setting that changed and its new value, and the test checks that exactly those changed (every
listed key must differ from the fixture, and equal the new value).

Each lesson runs for real but every training is cut to two optimiser steps, so the test takes
seconds and compares the settings the lessons chose, not their numbers (those are the lessons' own
tests). The test records them with conftest's `lesson_configs` (shared with tests/test_lecture_lessons.py,
which also evaluates only a few hundred images per training); `lesson_settings` below is the
recorder that runs at the old commit.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from cores import THREADS

FIXTURE = Path(__file__).parent / "fixtures" / "pinned-settings-63be84b.json"
LESSONS = ("depth", "activations", "overfit", "losses", "ova", "multilabel", "softmax", "templates", "rnn", "shapes")
# Keys whose spelling item 1 of issue 11 changes (the split sizes, checked by the loader's tests);
# every other key the fixture holds must be equal, but for the thread count: the test's own option (its
# worker's share of the cores, tests/cores.py), which each training must use instead.
NOT_COMPARED = ("val_size", "test_size", "threads")

# Issue 16: the lessons' defaults are the lectures' own settings. Lesson key -> one dict of new values per
# training (the same dict for every training when a single dict is given).
_OVERFIT = {"hidden": [50, 20], "momentum": 0.9, "batch_size": 20}  # 784-50-20-10, SGD lr 0.01 momentum 0.9, batch 20
_SOFTMAX = {"lr": 0.001, "peak_lr": 0.001, "momentum": 0.0, "batch_size": 100, "normalize": "unit", "epochs": 2.0}  # lr 0.001, batch 100, ToTensor
LECTURE_CHANGES: dict[str, Any] = {
    "depth": [{"epochs": 9.0}] * 3 + [{"epochs": 3.0}] * 3,  # the lectures' 9 epochs; the three fixes 3
    "overfit --quick": _OVERFIT,
    "overfit": {**_OVERFIT, "steps": 500},  # the lecture's 500 iterations
    "softmax --quick": {**_SOFTMAX, "steps": 300},
    "softmax": {**_SOFTMAX, "steps": 3000},  # the lecture's 3,000 iterations
    "rnn --quick": {"batch_size": 128, "epochs": 3.0},
    "rnn": [{"batch_size": 128, "epochs": 10.0}] + [{"batch_size": 128, "epochs": 3.0}] * 2,  # RNN 10 epochs, LSTM/GRU 3
}


# Issue 17: the speedrun preset deliberately became one epoch, a longer warmup and 3-view test-time augmentation.
PRESET_CHANGES: dict[str, dict[str, Any]] = {"speedrun": {"epochs": 1.0, "warmup": 0.45, "tta": True}}


def with_lecture_changes(key: str, old: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fixture's trainings of lesson `key` with issue 16's deliberate changes applied."""
    changes = LECTURE_CHANGES.get(key, {})
    per_training = changes if isinstance(changes, list) else [changes] * len(old)
    assert len(per_training) == len(old), f"{key}: LECTURE_CHANGES lists {len(per_training)} trainings, the fixture {len(old)}"
    for before, change in zip(old, per_training):
        stale = [k for k in change if before.get(k) == change[k]]
        assert not stale, f"{key}: LECTURE_CHANGES lists {stale}, which the fixture already had"
    return [{**before, **change} for before, change in zip(old, per_training)]


def settings(cfg: Any) -> dict[str, Any]:
    """Every field of a Config, with the learning rate and the label smoothing it trains with."""
    smoothing = getattr(cfg, "effective_label_smoothing", cfg.label_smoothing)  # a plain field at 63be84b
    tta = getattr(cfg, "effective_tta", cfg.tta)  # a plain field until issue 17
    return {**cfg.to_dict(), "peak_lr": cfg.peak_lr, "label_smoothing": smoothing, "tta": tta}


def lesson_settings(name: str, quick: bool, out_dir: Path) -> list[dict[str, Any]]:
    """The settings of each training that lesson `name` starts, in order; every training is cut to 2 steps."""
    from mnistlab.lessons.experiments import Options, run_experiment
    from mnistlab.runs.session import TrainSession

    recorded: list[dict[str, Any]] = []
    original = TrainSession.__dict__["start"]

    def start(cls: type, cfg: Any, data: Any = None) -> Any:
        recorded.append(settings(cfg))
        return original.__func__(cls, dataclasses.replace(cfg, steps=2, epochs=type(cfg)().epochs, target_acc=None), data)

    TrainSession.start = classmethod(start)
    try:
        run_experiment(name, Options(out_dir=out_dir, quick=quick, seed=0, device="cpu", threads=THREADS))
    finally:
        TrainSession.start = original
    return recorded


def preset_settings() -> dict[str, dict[str, Any]]:
    """The settings of every preset, and of each preset's per-data-set variant (key 'preset@dataset')."""
    from mnistlab.config import PRESET_DATASET_OVERRIDES, PRESETS, Config, preset_values

    out = {name: settings(Config.from_dict(preset_values(name))) for name in PRESETS}
    for name, datasets in PRESET_DATASET_OVERRIDES.items():
        for dataset in datasets:
            out[f"{name}@{dataset}"] = settings(Config.from_dict({**preset_values(name, dataset), "dataset": dataset}))
    return out


def _record(path: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lessons = {f"{name}{' --quick' if quick else ''}": lesson_settings(name, quick, Path(tmp) / f"{name}-{quick}")
                   for name in LESSONS for quick in (True, False)}
    path.write_text(json.dumps({"lessons": lessons, "presets": preset_settings()}, indent=1, sort_keys=True) + "\n",
                    encoding="utf-8")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    # SGD's momentum means nothing to another optimiser (and is refused there now): not a difference.
    unused = ("momentum", "nesterov") if old.get("optimizer") != "sgd" else ()
    # --steps sets the length: the epochs field means nothing then (and giving both is refused now).
    unused += ("epochs",) if old.get("steps") else ()
    return [f"{key}: {old[key]!r} -> {new.get(key, '(missing)')!r}"
            for key in old if key not in NOT_COMPARED and key not in unused and new.get(key, object()) != old[key]]


@pytest.fixture(scope="module")
def recorded() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.mark.parametrize("quick", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["quick", "full"])
@pytest.mark.parametrize("name", LESSONS)
def test_lesson_trains_with_the_settings_it_had_before_the_defaults_changed(name, quick, recorded, lesson_configs):
    key = f"{name}{' --quick' if quick else ''}"
    old = with_lecture_changes(key, recorded["lessons"][key])
    new = [settings(cfg) for cfg in lesson_configs(name, quick)]
    assert len(new) == len(old), f"{name}: {len(old)} trainings before, {len(new)} now"
    for i, (before, now) in enumerate(zip(old, new)):
        assert not _differences(before, now), f"{name} training {i}: " + "; ".join(_differences(before, now))
        assert now["threads"] == THREADS, f"{name} training {i}: trains on {now['threads']} threads, not the {THREADS} asked for"


def test_presets_keep_their_settings(recorded):
    old, new = recorded["presets"], preset_settings()
    assert set(old) <= set(new)
    for name in old:
        change = PRESET_CHANGES.get(name, {})
        assert all(old[name].get(k) != v for k, v in change.items()), f"preset {name}: PRESET_CHANGES lists what it had"
        assert all(new[name].get(k) == v for k, v in change.items()), f"preset {name}: not the changes PRESET_CHANGES lists"
        expected = {**old[name], **change}
        assert not _differences(expected, new[name]), f"preset {name}: " + "; ".join(_differences(expected, new[name]))


if __name__ == "__main__":
    _record(Path(sys.argv[1]))
