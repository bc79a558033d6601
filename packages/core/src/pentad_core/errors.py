"""User-facing errors.

Every mistake a user can make (a missing file, an unknown name, a bad value) raises a
:class:`PentadError`. The CLI turns it into one line on stderr and exit code 2; library users
catch it like any other exception. Bugs stay ordinary exceptions.
"""

from __future__ import annotations

from pathlib import Path

#: Exit code of the CLI for bad input (argparse uses the same code for usage errors).
EXIT_USAGE = 2


class PentadError(Exception):
    """An error caused by the user's input, with a message that says what to do.

    Args:
        message: One sentence naming the file or option at fault and how to fix it.
        hint: Optional second sentence appended after the message.
    """

    exit_code = EXIT_USAGE

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message if hint is None else f"{message} {hint}"
        super().__init__(self.message)


class ConfigError(PentadError):
    """A configuration file, key or value is wrong."""


class DataError(PentadError):
    """A dataset is missing, corrupt or malformed."""


class DownloadError(DataError):
    """A download failed, was offline, or its checksum did not match."""


class CheckpointError(PentadError):
    """A checkpoint is missing, unreadable or does not fit the model."""


def missing_file(path: str | Path, what: str, hint: str = "") -> DataError:
    """Build the standard error for a file or folder that should exist.

    Args:
        path: The path that was looked for.
        what: What the path should hold, e.g. ``"MovieLens ratings file"``.
        hint: What the user can do about it.

    Returns:
        A :class:`DataError` ready to raise.
    """
    message = f"{what} not found: {path}."
    return DataError(message, hint or None)
