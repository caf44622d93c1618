"""Errors that library code raises; only cli.py turns them into messages and exit codes."""


class BcParetoError(Exception):
    """Base class: something the user can fix (a file, an option, a cell)."""


class GridSpecError(BcParetoError):
    """The hyperparameter sheet is malformed (exit code 2: bad input)."""


class ConfigError(BcParetoError):
    """A preset or an override is invalid (exit code 2: bad input)."""


class DataError(BcParetoError):
    """The data directory is missing or not laid out as a data set."""


class StorageError(BcParetoError):
    """The storage URL is malformed, its driver is missing, or the storage cannot be opened
    (exit code 2: the user fixes --storage / BCPARETO_STORAGE)."""


class ColumnError(BcParetoError):
    """A metrics CSV lacks a usable column (exit code 2: bad input)."""


class TrialFailed(BcParetoError):
    """One grid point could not be trained (collapsed feature map, NaN loss, ...)."""


class ExportError(BcParetoError):
    """A model cannot be converted, measured or written as asked (bad precision, format, images)."""


class StrategyError(BcParetoError):
    """Search options that cannot work together (sampler, budget, halving, limits): exit code 2."""


class ArtefactError(BcParetoError):
    """A trained model's file in runs/<study>/ is missing, changed since it was written, or
    unreadable (exit code 2: the user restores it or trains the model again)."""
