"""Why a training run stopped. Every message names what to look at; nothing is published."""
from __future__ import annotations


class TrainingError(RuntimeError):
    """A training run failed before anything was published."""


class MissingSamplesError(TrainingError):
    """Sample partitions of the training window are missing (and were not, or could not be, built)."""


class EmptyWindowError(TrainingError):
    """The training window (or its validation split) holds no samples."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""


class ModelMismatchError(TrainingError):
    """The model settings do not fit the fields table, the tag or the category vocabulary."""


class VocabularyMismatchError(TrainingError):
    """Ids in the data do not fit the vocabulary sizes the model is built with."""


class TrainingInProgressError(TrainingError):
    """Another run is training the same model version (it holds the version's lock)."""


class WorkerFailedError(TrainingError):
    """A Horovod worker process died or failed; a rerun resumes from the last checkpoint."""
