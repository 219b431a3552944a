"""Error types the CLI reports as one line. CorruptFileError describes the user's input (exit
2); a RunFailure is work that started and could not finish (exit 1). Neither is a bug."""

from __future__ import annotations


class CorruptFileError(ValueError):
    """A file we read is damaged, tampered with, or not the kind of file expected."""


class RunFailure(Exception):
    """A run that started and failed: training diverged, a server did not answer, photos of a
    batch could not be edited."""


class ServerUnavailableError(RunFailure):
    """A TF Serving server that does not answer (nothing listening, unreachable, too slow)."""
