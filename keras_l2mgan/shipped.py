"""Where the shipped demo models and attribute classifier are.

An installed wheel holds them as package data (pyproject maps the repository's saved_models/
and classifiers/ to keras_l2mgan/shipped_models and keras_l2mgan/shipped_classifiers); a
source checkout or editable install has them beside the package. Both are found relative to
this file, never the current folder: a model is a program, and one planted in the folder a
command starts in must not run.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
_KINDS = {"models": ("shipped_models", "saved_models"),
          "classifiers": ("shipped_classifiers", "classifiers")}


def shipped_dir(kind: str) -> Path:
    """The shipped `models` (TF Serving layout) or `classifiers` folder."""
    installed, checkout = _KINDS[kind]
    if (_PACKAGE / installed).is_dir():
        return _PACKAGE / installed
    # A source checkout: the folder beside the package, only when that really is a checkout of
    # this project (its pyproject.toml is there), never a folder of site-packages.
    if (_PACKAGE.parent / "pyproject.toml").is_file():
        return _PACKAGE.parent / checkout
    return _PACKAGE / installed  # missing: the caller's error names where it looked
