"""Running a lesson for real to read the training settings it chooses (the pinned-settings and lecture tests)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from cores import THREADS

RECORD_EVAL_IMAGES = 256  # validation and test images each recorded training evaluates


def record_lesson_configs(name: str, out_dir: Path, **options: Any) -> list[Any]:
    """Run lesson `name` for real (`Options(**options)`, CPU, seed 0, THREADS unless given) and return the
    Config of every training it starts, in order, as the lesson built it.

    Only what comes after the recording is cut, to keep it fast: each training runs two optimiser steps, and
    the data the lesson loads keeps only its first RECORD_EVAL_IMAGES validation and test images (the
    lesson's own code, its tables and figures, still runs on what those trainings return).
    """
    from mnistlab.lessons.experiments import Options, run_experiment
    from mnistlab.runs import session
    from mnistlab.runs.session import TrainSession

    recorded: list[Any] = []
    original_start, original_load = TrainSession.__dict__["start"], session.load_data

    def start(cls: type, cfg: Any, data: Any = None) -> Any:
        recorded.append(cfg)
        return original_start.__func__(cls, dataclasses.replace(cfg, steps=2, epochs=None, target_acc=None), data)

    def load_data(cfg: Any, device: Any) -> Any:  # what the lessons load (common.load): fewer images to evaluate
        data, n = original_load(cfg, device), RECORD_EVAL_IMAGES
        images = None if data.test_images is None else data.test_images[:n]
        return dataclasses.replace(data, val=None if data.val is None else data.val.part(0, n),
                                   test=data.test.part(0, n), test_images=images)

    TrainSession.start, session.load_data = classmethod(start), load_data
    try:
        run_experiment(name, Options(**{"out_dir": out_dir, "seed": 0, "device": "cpu", "threads": THREADS, **options}))
    finally:
        TrainSession.start, session.load_data = original_start, original_load
    return recorded
