"""The project's own exceptions: every user-facing failure is one of these, with a one-line message."""

from __future__ import annotations


class MnistlabError(Exception):
    """Base class: the CLI prints `error: <message>` and exits non-zero for any of these."""


class ConfigError(MnistlabError, ValueError):
    """An impossible or unknown configuration value."""


class DataError(MnistlabError, ValueError):
    """A data file that is missing, corrupt, truncated or inconsistent. The message names the file."""


class DownloadError(DataError):
    """No mirror delivered a verified file (or we are offline)."""


class CheckpointError(MnistlabError, ValueError):
    """A checkpoint that is missing, unreadable, not ours, or inconsistent with its config."""


class ImageError(MnistlabError, ValueError):
    """A user image that cannot be decoded or prepared."""


class TrainingDiverged(MnistlabError, RuntimeError):
    """The loss became NaN or infinite."""


class MnistlabWarning(UserWarning):
    """Something the user should know that does not stop the run; the CLI prints it as one line."""


class ExportError(MnistlabError, RuntimeError):
    """A model that cannot be exported, or whose export does not match PyTorch (nothing is written)."""


class DistributedError(MnistlabError, RuntimeError):
    """A data-parallel job that cannot go on: another rank failed, vanished or hung past the timeout."""


class FigureError(MnistlabError, RuntimeError):
    """A figure could not be drawn; the message names it (the run's other files are already written)."""


def with_name(name: str, message: str) -> str:
    """`name: message`, the way every error about a user's file reads; not doubled when it already is."""
    return message if message.startswith(f"{name}: ") else f"{name}: {message}"


def without_name(name: str, message: str) -> str:
    """The reason alone: `message` without a leading `name: ` (for output that shows the name beside it)."""
    return message[len(name) + 2 :] if message.startswith(f"{name}: ") else message
