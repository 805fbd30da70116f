"""TensorBoard event files for a run (the optional `tensorboard` extra, through torch.utils.tensorboard).

`TensorBoardLog` takes the records the trainer already makes for metrics.jsonl (the same values, at
the same logged steps: no extra device sync) and the run's final figures as PNG bytes. The event
file is opened at the first write, so a run that fails before logging anything leaves no log
behind. Tags, by section: `loss/` and `accuracy/` (`train` every logged step, `train_epoch`, `val`
per epoch, `test` at the end), `lr`, `test/` images, and the run's options as hparams.
"""

from __future__ import annotations

import io
import os
import re
from pathlib import Path
from typing import Any

from mnistlab.errors import MnistlabError

INSTALL = ("--tensorboard needs the tensorboard extra: pip install 'mnistlab[tensorboard]' "
           "(or pip install -e '.[tensorboard]')")
EVENT_PREFIX = "events.out.tfevents."  # every event file's name starts so (TensorBoard looks for it)


def require_tensorboard(package_only: bool = False) -> None:
    """Raise MnistlabError with the install line unless torch.utils.tensorboard can be imported.

    `package_only`: only the tensorboard package, not torch (the `--nproc` launcher, which imports
    no torch: each rank then checks torch.utils.tensorboard itself before anything is written).
    """
    try:
        if package_only:
            import tensorboard  # noqa: F401
        else:
            import torch.utils.tensorboard  # noqa: F401  (it imports the tensorboard package)
    except ImportError:
        raise MnistlabError(INSTALL) from None


def check_log_root(path: str | os.PathLike, flag: str = "--tensorboard") -> Path:
    """`path` as a Path if a log folder can be made in it; a MnistlabError naming the problem if not.

    Nothing is created: the folder is made at the first write.
    """
    path = Path(path)
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        raise MnistlabError(f"{flag} {path}: {probe} is a file, not a folder")
    if probe.exists() and not os.access(probe, os.W_OK | os.X_OK):
        raise MnistlabError(f"{flag} {path}: cannot write in {probe} (permission denied)")
    return path


def holds_log(path: Path) -> bool:
    """True if `path` is a folder with any entry in it (a log to keep, or someone's files)."""
    try:
        return any(True for _ in path.iterdir())
    except OSError:
        return path.exists()


def fresh_log_dir(path: Path) -> Path:
    """`path` if it is absent or empty, else the first free `path-2`, `path-3`, ... (nothing is merged or deleted)."""
    if not holds_log(path):
        return path
    i = 2
    while holds_log(path.with_name(f"{path.name}-{i}")):
        i += 1
    return path.with_name(f"{path.name}-{i}")


def safe_run_name(name: str) -> str:
    """A folder name for a run of TensorBoard's run selector: no path separators or control characters."""
    cleaned = re.sub(r"[^\w.,=+() -]+", "_", name).strip(" ._")
    return cleaned or "run"


def _hparam_value(value: Any) -> bool | int | float | str:
    if isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return str(value)  # None and anything else: its text, which the hparams table can filter on


class TensorBoardLog:
    """One run's event file in `log_dir`, opened at the first write; `close()` flushes it.

    Args:
        purge_step: on resume, the first step written again: TensorBoard hides what an earlier
            process logged from that step on (the steps after the checkpoint that resume starts from).
    """

    def __init__(self, log_dir: str | os.PathLike, purge_step: int | None = None):
        self.log_dir = Path(log_dir)
        self.purge_step = purge_step
        self._writer: Any = None

    @property
    def opened(self) -> bool:
        return self._writer is not None

    def _open(self) -> Any:
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            try:
                self.log_dir.mkdir(parents=True, exist_ok=True)
                # flush_secs: a running job shows in TensorBoard within half a minute; writes are
                # queued to the writer's own thread, so the training loop does not wait on them.
                self._writer = SummaryWriter(str(self.log_dir), purge_step=self.purge_step, flush_secs=30)
            except OSError as e:
                raise MnistlabError(f"cannot write the TensorBoard log {self.log_dir}: {e.strerror or e}") from None
        return self._writer

    def scalars(self, values: dict[str, float | None], step: int) -> None:
        """Add each value that is not None under its tag at `step`."""
        writer = self._open()
        for tag, value in values.items():
            if value is not None:
                writer.add_scalar(tag, value, step)

    def log_step(self, record: dict) -> None:
        """A metrics.jsonl "step" record: the training loss and accuracy since the last one, and the lr."""
        self.scalars({"loss/train": record.get("loss"), "accuracy/train": record.get("acc"), "lr": record.get("lr")},
                     record["step"])

    def log_epoch(self, record: dict) -> None:
        """A metrics.jsonl "epoch" record, at the optimiser step the epoch ended on."""
        self.scalars({"loss/train_epoch": record.get("train_loss"), "accuracy/train_epoch": record.get("train_acc"),
                      "loss/val": record.get("val_loss"), "accuracy/val": record.get("val_acc"),
                      "epoch": record.get("epoch")}, record["step"])

    def log_png(self, tag: str, png: bytes, step: int) -> None:
        """An image summary from PNG bytes as drawn (TensorBoard stores PNG: nothing is decoded or re-encoded)."""
        from PIL import Image
        from tensorboard.compat.proto.summary_pb2 import Summary

        with Image.open(io.BytesIO(png)) as picture:
            width, height = picture.size
            channels = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}.get(picture.mode, 3)
        image = Summary.Image(height=height, width=width, colorspace=channels, encoded_image_string=png)
        self._open().file_writer.add_summary(Summary(value=[Summary.Value(tag=tag, image=image)]), step)

    def log_hparams(self, hparams: dict[str, Any], metrics: dict[str, float], step: int) -> None:
        """The run's options as hparams, with `metrics` (scalar tags, written here too) as its results."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        values = {k: _hparam_value(v) for k, v in hparams.items()}
        writer = self._open()
        # The three summaries SummaryWriter.add_hparams writes, but into this run's own event file
        # (add_hparams opens a second writer in a subfolder, which the run selector shows as another run).
        for summary in hparams_summaries(values, metrics):
            writer.file_writer.add_summary(summary, step)
        self.scalars(metrics, step)

    def close(self) -> None:
        """Flush and close the event file (a no-op if nothing was written, and the second time)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
