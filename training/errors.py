"""Errors the command line turns into a clear message and a non-zero exit, never a traceback."""


class PKDOTError(Exception):
    """Base class: a problem the user can fix (bad input, missing file, wrong layout)."""

    exit_code = 2


class DatasetError(PKDOTError):
    """A dataset root, file or sample that does not match its release layout."""


class ConfigError(PKDOTError):
    """An invalid option or configuration value."""
