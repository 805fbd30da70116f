"""Hyperparameter sweeps on Optuna (the optional `sweep` extra): `mnistlab sweep`.

space.py: the search space (a JSON object of Config field -> range), checked like train's options,
and a default space per model. study.py: the study in a shared storage, the worker that runs trials
(scored on validation accuracy, pruned per epoch), the results (table, figure, best.json) and the
retrain of the best trial. Importing this package does not import optuna.
"""

from mnistlab.sweep.space import Param, default_space, parse_space, read_space
from mnistlab.sweep.study import SweepSpec, best_config, retrain, run_worker

__all__ = ["Param", "SweepSpec", "best_config", "default_space", "parse_space", "read_space", "retrain", "run_worker"]
