"""Error types the CLI reports as one line (exit 2): they describe the user's input, not a bug."""

from __future__ import annotations


class CorruptFileError(ValueError):
    """A file we read is damaged, tampered with, or not the kind of file expected."""
