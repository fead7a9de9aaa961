"""The exceptions ijseg raises for problems a user can fix.

Everything a user can cause (a bad file, a wrong option, an incomplete model folder) raises a
subclass of :class:`IjsegError` with a message that names the file or value and says what was
expected. The command line prints these messages without a traceback.
"""

from __future__ import annotations

__all__ = ["IjsegError", "DataError", "ConfigError", "ModelError", "Interrupted"]


class IjsegError(Exception):
    """Base class of all errors a user can act on.

    Parameters
    ----------
    message
        What is wrong, naming the file or value, and what was expected.
    options
        The parameters a user changes to fix it (``"sample"``, ``"name"``): library messages do
        not name command-line flags; the command line adds its flags for these.
    """

    def __init__(self, message: str = "", *, options: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.options = tuple(options)


class DataError(IjsegError):
    """An image, mask or dataset folder cannot be used (missing, unreadable, inconsistent)."""


class ConfigError(IjsegError, ValueError):
    """A configuration value or combination of values is invalid."""


class ModelError(IjsegError):
    """A model folder or bundle is missing, incomplete or incompatible with the input."""


class Interrupted(KeyboardInterrupt):
    """Work stopped by Ctrl-C or SIGTERM after its partial results were saved; the message says
    what was kept (the command line prints it and exits with 130, or 143 after SIGTERM)."""
