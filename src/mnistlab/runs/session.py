"""One training run end to end: config -> data -> model -> trainer -> run directory -> figures.

The CLI drives it; notebooks and experiments can too. `fit()` wires the trainer's hooks to the run
directory (metrics.jsonl, checkpoints) and, at the end, writes evaluation.json and the figures.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from mnistlab.config import MODEL_FIELDS, Config, changed_fields, ignored_options, show_setting
from mnistlab.cpus import usable_cpus
from mnistlab.data.loader import DataBundle, load_dataset
from mnistlab.errors import ConfigError
from mnistlab.models import create_model, list_models, model_options, models_using
from mnistlab.runs.rundir import TB_FOLDER, RunDir, check_resumable, default_run_name, restore_trainer, save_trainer
from mnistlab.training.distributed import Dist, init_from_env
from mnistlab.training.trainer import History, Hooks, Trainer, TrainingInterrupted, resolve_device

if TYPE_CHECKING:
    from mnistlab.reporting.tensorboard import TensorBoardLog


def check_names(cfg: Config, options: bool = True) -> None:
    """Unknown model or data set names, and (with `options`) any given setting that this config
    would silently ignore, fail before any data is loaded."""
    from mnistlab.data.sources import get_dataset_spec

    if cfg.model not in list_models():
        raise ConfigError(f"--model: invalid choice {cfg.model!r} (choose from {', '.join(list_models())})")
    if ":" not in cfg.dataset:  # "folder:PATH" and "csv:PATH" are resolved by the loader
        spec = get_dataset_spec(cfg.dataset)
        if spec.multilabel:
            check_multilabel(cfg)
        if cfg.aug_flip and not spec.mirror_safe:
            raise ConfigError(
                f"--aug-flip: a mirrored image of {spec.name} is a different character (or none), so its class "
                "would be wrong; flips are only for data sets like fashion-mnist"
            )
        bad = [c for c in cfg.classes or () if not 0 <= c < spec.num_classes]
        if bad or (cfg.positive is not None and not 0 <= cfg.positive < spec.num_classes):
            flag = f"--classes {bad}" if bad else f"--positive {cfg.positive}"
            raise ConfigError(f"{flag} out of range: {spec.name} has classes 0-{spec.num_classes - 1}")
    if options:
        why = ignored_settings(cfg)
        if why:
            raise ConfigError(next(iter(why.values())))


def ignored_settings(cfg: Config) -> dict[str, str]:
    """Every setting given a value (not the default) that `cfg` would silently ignore: field -> why.

    The model's declared options (`model_options`), the data set's kind, and the config's own
    rules (`config.ignored_options`). Unknown names are check_names' to report, so they are skipped.
    """
    from mnistlab.data.sources import get_dataset_spec, list_datasets

    given = set(changed_fields(cfg))
    why: dict[str, str] = {}
    if cfg.engine == "torch" and cfg.model in list_models():
        used = model_options(cfg.model)
        for name, keyword in MODEL_FIELDS.items():
            if name in given and keyword not in used:
                users = ", ".join(models_using(keyword)) or "none"
                why[name] = f"{show_setting(name, getattr(cfg, name))}: {cfg.model} does not use it (models that do: {users})"
    if "threshold" in given:
        try:
            multilabel = ":" not in cfg.dataset and get_dataset_spec(cfg.dataset).multilabel
        except ConfigError:
            multilabel = True  # an unknown data set: check_names says so
        if not multilabel:
            sets = ", ".join(n for n in list_datasets() if get_dataset_spec(n).multilabel)
            why["threshold"] = (f"{show_setting('threshold', cfg.threshold)}: only multi-label data sets ({sets}) use it; "
                                f"{cfg.dataset} has one class per image")
    for name, reason in ignored_options(cfg).items():
        why.setdefault(name, reason)
    return why


def check_multilabel(cfg: Config) -> None:
    """A multi-label data set (a set of labels per image) needs a loss that accepts multi-hot targets."""
    if cfg.loss not in ("bce", "ce"):
        raise ConfigError(
            f"--loss {cfg.loss} needs one class per image, but {cfg.dataset} is multi-label (a set of labels per "
            "image): use --loss bce (a sigmoid per class), or --loss ce (softmax against the normalised label set, "
            "for comparison)"
        )
    if cfg.classes or cfg.positive is not None:
        raise ConfigError(f"--classes and --positive select classes of single-label data; {cfg.dataset} is multi-label")


def load_data(cfg: Config, device: torch.device) -> DataBundle:
    """The data set a config names, on `device`."""
    return load_dataset(
        cfg.dataset, data_dir=cfg.data_dir, val_size=cfg.val_size, normalize=cfg.normalize, device=device,
        seed=cfg.seed, classes=cfg.classes, positive=cfg.positive, train_size=cfg.train_size,
        image_size=cfg.image_size, channels=cfg.channels, test_size=cfg.test_size,
    )


def build_model(cfg: Config, data: DataBundle) -> torch.nn.Module:
    """The model a config names, initialised from `cfg.seed`."""
    torch.manual_seed(cfg.seed)
    try:
        # Only the model's own options: new runs were checked (check_names), and a run saved before
        # models declared their options may hold knobs that its model never used.
        overrides = cfg.model_overrides(model_options(cfg.model))
        return create_model(cfg.model, data.num_classes, data.in_shape, **overrides)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def _join(device: torch.device) -> tuple[Dist, torch.device]:
    """Under torchrun: join the process group; on CUDA this rank's GPU is cuda:LOCAL_RANK."""
    dist = init_from_env(device)
    if dist.active and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    return dist, device


@dataclass
class TrainSession:
    """A config, its data, model, trainer and (optionally) run directory."""

    cfg: Config
    data: DataBundle
    model: torch.nn.Module
    trainer: Trainer
    run: RunDir | None
    # Seconds spent loading the data, building the model and writing the run's files and figures
    # (keys "data", "model", "artifacts"): where a run's time goes, beside History's training and test.
    timings: dict[str, float] = field(default_factory=dict)

    Interrupted = TrainingInterrupted

    @classmethod
    def start(cls, cfg: Config, data: DataBundle | None = None) -> "TrainSession":
        """A new run: validate names, load data, build the model, create the run folder."""
        check_names(cfg)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        device = resolve_device(cfg.device)
        if cfg.bf16 and device.type != "cuda":  # the trainer would quietly train in float32
            raise ConfigError(f"--bf16: bfloat16 autocast runs on CUDA only; this run trains on {device.type}")
        dist, device = _join(device)
        taken = None
        if cfg.save_run and dist.is_main:  # only rank 0 writes the run folder
            try:
                RunDir.check_free(cfg)  # a taken --name fails before the data is loaded
            except ConfigError as e:
                taken = str(e)
        taken = dist.agree(taken)  # every rank stops on rank 0's refusal
        if taken:
            raise ConfigError(taken)
        t0 = time.perf_counter()
        data = data or load_data(cfg, device)
        t1 = time.perf_counter()
        model = build_model(cfg, data).to(device)
        trainer = Trainer(model, data, cfg)
        run = RunDir.create(cfg) if cfg.save_run and dist.is_main else None
        return cls(cfg, data, model, trainer, run, {"data": t1 - t0, "model": time.perf_counter() - t1})

    @classmethod
    def resume(cls, run_path: str | Path, device: str | None = None, threads: int | None = None) -> "TrainSession":
        """Continue a run from its `last` checkpoint with the config it was started with.

        Only where it runs may change (`device`, `threads`): every other setting is the stored one.
        """
        run = RunDir(Path(run_path))
        cfg = check_resumable(run)
        if device:
            cfg.device = device
        if threads:
            cfg.threads = threads
        check_names(cfg, options=False)  # the stored config was checked when the run started
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        dist, device = _join(resolve_device(cfg.device))
        data = load_data(cfg, device)
        model = build_model(cfg, data).to(data.train.device)
        trainer = Trainer(model, data, cfg)
        state = restore_trainer(run, trainer)  # every rank reads the checkpoint; only rank 0 writes
        if state.finished:
            raise ConfigError(f"{run.path}: this run already finished (step {state.step}); nothing to resume")
        if not dist.is_main:
            return cls(cfg, data, model, trainer, None)
        run.truncate_records(state.step)
        return cls(cfg, data, model, trainer, run)

    def tensorboard_dir(self, root: str | Path | None = None) -> Path:
        """Where this run's TensorBoard log goes: the run folder's tb/ (`root` None), else root/<run name>.

        A new run never writes into a folder that holds files: root/<name>-2 and so on instead. A
        resumed run appends to its log (fit() hides the steps after its checkpoint).
        """
        from mnistlab.reporting.tensorboard import check_log_root, fresh_log_dir, safe_run_name

        if root is None:
            if self.run is None:
                raise ConfigError("--tensorboard without a DIR logs into the run folder's tb/, and this run writes "
                                  "no run folder (--no-save-run): give a DIR, e.g. --tensorboard tb")
            return self.run.path / TB_FOLDER
        path = check_log_root(root) / safe_run_name(self.run.path.name if self.run else default_run_name(self.cfg))
        return path if self.trainer.state.step else fresh_log_dir(path)

    def fit(self, on_epoch_start: Callable | None = None, on_step: Callable | None = None,
            on_epoch_end: Callable | None = None, should_stop: Callable[[], bool] | None = None,
            on_log: Callable[[dict], None] | None = None, on_test: Callable[[History], None] | None = None,
            tensorboard: str | Path | None = None) -> History:
        """Train to the end, logging to the run directory; then evaluate and draw the figures.

        `on_test(history)` is called with the test result before the run's files and figures are
        written, so that a caller can show the result without waiting for them. `tensorboard`: a
        folder for this run's TensorBoard log (tensorboard_dir()): the logged steps and epochs, then
        the test result, the options as hparams, the confusion matrix and the mistakes; the event
        file is flushed and closed however training ends.
        """
        run = self.run
        tb = None
        if tensorboard is not None:
            from mnistlab.reporting.tensorboard import TensorBoardLog

            step = self.trainer.state.step  # resumed: what an earlier process logged after this step is hidden
            tb = TensorBoardLog(tensorboard, purge_step=step + 1 if step else None)
        try:
            return self._fit(run, tb, on_epoch_start, on_step, on_epoch_end, should_stop, on_log, on_test)
        finally:
            if tb is not None:
                tb.close()

    def _fit(self, run: RunDir | None, tb: "TensorBoardLog | None", on_epoch_start: Callable | None,
             on_step: Callable | None, on_epoch_end: Callable | None, should_stop: Callable[[], bool] | None,
             on_log: Callable[[dict], None] | None, on_test: Callable[[History], None] | None) -> History:
        def log_epoch(record: dict) -> None:
            if run:
                run.log(record)
            if tb:
                tb.log_epoch(record)
            if on_epoch_end:
                on_epoch_end(record)

        def log_step(record: dict) -> None:
            if run:
                run.log(record)
            if tb:
                tb.log_step(record)
            if on_log:
                on_log(record)

        hooks = Hooks(
            on_step=on_step,
            on_log=log_step,
            on_epoch_end=log_epoch,
            on_epoch_start=on_epoch_start,
            save_checkpoint=(lambda kind, st: save_trainer(run, kind, self.trainer, st)) if run else None,
            should_stop=should_stop,
        )
        try:
            history = self.trainer.fit(hooks)
        except BaseException:
            # A run that fails (diverges, errors, a second Ctrl-C) before its first checkpoint and first record
            # leaves nothing worth keeping: remove it. (Any folder without a checkpoint is reused by the same --name.)
            if tb:
                tb.close()  # the steps logged so far, complete, before the folder is judged
            if run:
                run.remove_if_failed_start()
            raise
        if on_test:
            on_test(history)
        if run:
            start = time.perf_counter()
            test = history.test
            run.log({"kind": "test", "step": self.trainer.state.step, "test_loss": test.loss, "test_acc": test.acc,
                     "train_time_s": history.train_seconds, "test_time_s": history.test_seconds})
            write_artifacts(run, self.cfg, self.data, test.logits)
            if tb:
                log_summary(tb, self.cfg, self.data, history)
            run.release()
            self.timings["artifacts"] = time.perf_counter() - start
        elif tb:
            log_summary(tb, self.cfg, self.data, history)
        return history


# Settings that say where a run is kept or how many threads it used: not hparams of its result.
NOT_HPARAMS = ("out_dir", "name", "save_run", "figures", "threads", "data_dir")


def log_summary(tb: "TensorBoardLog", cfg: Config, data: DataBundle, history: History) -> None:
    """The end of a run in its TensorBoard log: test loss and accuracy (and the best validation accuracy)
    as the hparams' metrics beside the options, the confusion matrix and the most confident mistakes."""
    import io

    from mnistlab.evaluation.metrics import confusion_matrix
    from mnistlab.training.losses import as_class_logits, class_probabilities

    state, test = history.state, history.test
    step = state.step if state else 0
    metrics = {"accuracy/test": test.acc, "loss/test": test.loss}
    if state and state.best_val_acc >= 0:
        metrics["accuracy/val_best"] = state.best_val_acc
    hparams = {k: v for k, v in cfg.to_dict().items() if k not in NOT_HPARAMS}
    # Unset means "the default for this model and optimiser": the value it took, which runs compare on.
    hparams.update(lr=cfg.peak_lr, label_smoothing=cfg.effective_label_smoothing, tta=cfg.effective_tta,
                   total_steps=history.state.step if history.state else None)
    tb.log_hparams(hparams, metrics, step)
    y = data.test.y.cpu()
    if y.dim() != 1 or data.test_images is None:  # multi-hot label sets: no confusion matrix
        return
    from mnistlab.reporting.plots import plot_confident_mistakes, plot_confusion_matrix

    logits = as_class_logits(test.logits)
    probs = class_probabilities(logits, cfg.loss)
    preds = probs.argmax(1)
    names = list(data.class_names)
    for tag, draw in (
        ("test/confusion_matrix", lambda buf: plot_confusion_matrix(confusion_matrix(preds, y, logits.shape[1]).numpy(),
                                                                    names, buf)),
        ("test/mistakes", lambda buf: plot_confident_mistakes(data.test_images, y.numpy(), preds.numpy(),
                                                              probs.max(1).values.numpy(), buf, class_names=names)),
    ):
        buf = io.BytesIO()
        draw(buf)
        tb.log_png(tag, buf.getvalue(), step)


FIGURE_WORKERS = 2  # processes drawing a run's figures at its end (reporting.parallel; 1: in this process)


def write_artifacts(run: RunDir, cfg: Config, data: DataBundle, test_logits: torch.Tensor) -> None:
    """evaluation.json (the full test report) and, unless --no-figures, the run's figures."""
    from mnistlab.fileio import atomic_write_json
    from mnistlab.training.losses import as_class_logits, class_probabilities
    from mnistlab.evaluation.metrics import classification_report

    y = data.test.y.cpu()
    if y.dim() == 2:  # multi-hot label sets: no confusion matrix, the set metrics instead
        _write_multilabel_artifacts(run, cfg, data, test_logits)
        return
    test_logits = as_class_logits(test_logits)
    report = classification_report(test_logits, y, list(data.class_names), loss=None)
    atomic_write_json(run.path / "evaluation.json", report)
    if not cfg.figures or data.test_images is None:
        return
    # Everything the figures need, as numpy, before forking: the drawing processes must not call torch.
    probs = class_probabilities(test_logits, cfg.loss)
    preds = probs.argmax(1).cpu().numpy()
    conf = probs.max(1).values.cpu().numpy()
    y = y.numpy()
    images, names = data.test_images, data.class_names
    from mnistlab.reporting import parallel

    # The plots by name: they are imported where they are drawn (drawers started by the CLI, or here).
    parallel.render_all([
        ("plot_training_curves", (run.records(), run.path / "curves.png"), {}),
        ("plot_confusion_matrix", (np.asarray(report["confusion_matrix"]), names, run.path / "confusion.png"), {}),
        ("plot_prediction_grid", (images[:25], preds[:25], conf[:25], run.path / "predictions.png"),
         {"labels": y[:25], "class_names": names, "title": "test images: predicted class"}),
        ("plot_confident_mistakes", (images, y, preds, conf, run.path / "mistakes.png"), {"class_names": names}),
    ], workers=min(FIGURE_WORKERS, usable_cpus()))


def _write_multilabel_artifacts(run: RunDir, cfg: Config, data: DataBundle, test_logits: torch.Tensor) -> None:
    """evaluation.json (subset accuracy, Hamming loss, per-label P/R/F1), curves and a grid of predicted sets."""
    from mnistlab.fileio import atomic_write_json
    from mnistlab.training.losses import class_probabilities
    from mnistlab.evaluation.metrics import multilabel_report

    y = data.test.y.cpu()
    probs = class_probabilities(test_logits, cfg.loss)
    decision = f"{'sigmoid' if cfg.loss == 'bce' else 'softmax'} >= {cfg.threshold:g}"
    report = multilabel_report(probs, y, list(data.class_names), cfg.threshold, decision=decision)
    atomic_write_json(run.path / "evaluation.json", report)
    if not cfg.figures or data.test_images is None:
        return
    decided = (probs[:24] >= cfg.threshold).cpu().numpy()
    from mnistlab.reporting import parallel

    parallel.render_all([
        ("plot_training_curves", (run.records(), run.path / "curves.png"), {}),
        ("plot_label_set_grid", (data.test_images[:24], decided, run.path / "predictions.png", y[:24].numpy()),
         {"class_names": data.class_names, "title": f"test images: predicted label sets ({decision})"}),
        ("plot_bars", (data.class_names, [row["f1"] for row in report["per_class"]], run.path / "per_label_f1.png"),
         {"title": "per-label F1 on the test set", "ylabel": "F1"}),
    ], workers=min(FIGURE_WORKERS, usable_cpus()))
