"""Exceptions for errors a user can cause; each message names the cause and the fix."""


class ColorjaxError(Exception):
    """Base class of every error a user can cause and fix."""


class InputShapeError(ColorjaxError, ValueError):
    """An array has the wrong rank, channel count or spatial size."""


class ImageDecodeError(ColorjaxError, ValueError):
    """A file or buffer is not a readable image."""


class DataSourceError(ColorjaxError, ValueError):
    """A data source spec is unknown, missing, unprepared or empty."""


class ConfigError(ColorjaxError, ValueError):
    """A configuration value, override or model name is invalid."""


class ShardingError(ColorjaxError, ValueError):
    """A batch cannot be split evenly over the devices or processes."""


class WeightsError(ColorjaxError, ValueError):
    """A weights file is corrupt, tampered with, or for another architecture."""


class DownloadError(ColorjaxError, RuntimeError):
    """A weights download failed."""


class OfflineError(DownloadError):
    """Offline mode is on and the requested file is not in the cache."""


class TrainingDivergedError(ColorjaxError, RuntimeError):
    """Training produced a non-finite loss."""


class MissingDependencyError(ColorjaxError, ImportError):
    """An optional package a feature needs (e.g. grain for the loader) is not installed."""


class PredictionError(ColorjaxError, RuntimeError):
    """A model produced non-finite output: its weights are damaged or unsuited to the input."""


class CheckpointWriteError(ColorjaxError, RuntimeError):
    """A checkpoint could not be written (disk full, permissions); earlier ones are intact."""


class OutputPathError(ColorjaxError, ValueError):
    """An output folder is a file, cannot be created, or is not writable."""


class TrainingStopped(ColorjaxError, RuntimeError):  # noqa: N818 - a stop, not an error
    """Training was stopped by SIGTERM or SIGINT after a checkpoint; the same command resumes."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
