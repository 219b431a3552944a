"""Training checkpoints: one .npz file per step, written atomically, the last K kept.

A checkpoint holds every model variable (G, E, D and the target-label seed state), every
optimizer variable (Adam moments of both optimizers, the EMA of G and E, loss scale) and a
JSON header (step, config with domain names, variable paths). It is written to a temp file,
fsynced and renamed, so a run killed at any moment (SIGKILL included) leaves either the old
set of checkpoints or the old set plus the new one, never a half-written file under a final
name. A state holding NaN or inf is refused (NonFiniteStateError) and never replaces a good
checkpoint. Backend-neutral: arrays in Keras' variable order, so any backend can read it.
"""

from __future__ import annotations

import json
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from keras_l2mgan.atomic import fsync_path
from keras_l2mgan.errors import CorruptFileError

log = logging.getLogger(__name__)
PATTERN = re.compile(r"^ckpt-(\d{8})\.npz$")


class NonFiniteStateError(ValueError):
    """The state to checkpoint holds NaN or inf: writing it would replace a good checkpoint."""

    def __init__(self, variable_path: str, step: int):
        super().__init__(f"{variable_path} holds NaN or inf at step {step}")
        self.variable_path = variable_path


def _to_numpy(variable) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(variable.value))


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"ckpt-{step:08d}.npz"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of the finished checkpoints in a directory, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), directory / name) for name in os.listdir(directory)
             if (m := PATTERN.match(name))]
    return sorted(found)


def save_checkpoint(directory: str | Path, step: int, model, extra: dict[str, Any] | None = None,
                    keep: int = 3) -> Path:
    """Write the model and optimizer state at `step`; keep the newest `keep` checkpoints."""
    directory = Path(directory)
    model_vars, opt_vars = model.variables, model.optimizer.variables
    header = {
        "step": int(step),
        "config": model.config.to_dict(),
        "model_variables": [v.path for v in model_vars],
        "optimizer_variables": [v.path for v in opt_vars],
        **(extra or {}),
    }
    arrays = {"header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
    arrays.update({f"model/{i:05d}": _to_numpy(v) for i, v in enumerate(model_vars)})
    arrays.update({f"optimizer/{i:05d}": _to_numpy(v) for i, v in enumerate(opt_vars)})
    _require_finite(step, [*model_vars, *opt_vars], list(arrays.values())[1:])
    directory.mkdir(parents=True, exist_ok=True)
    final = checkpoint_path(directory, step)
    tmp = directory / f".{final.name}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_path(directory)
    if keep > 0:
        # Only checkpoints that open count toward `keep`: a damaged file must never push a
        # good one out. Damaged ones stay where they are (named when a resume skips them).
        healthy = [path for _, path in list_checkpoints(directory) if damage(path) is None]
        for old in healthy[:-keep]:
            old.unlink(missing_ok=True)
    return final


def _require_finite(step: int, variables, values) -> None:
    # Losses can be finite while an overflowing gradient already turned weights or Adam moments
    # into NaN/inf; such a state must never rotate a good checkpoint out.
    for variable, value in zip(variables, values, strict=True):
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise NonFiniteStateError(variable.path, step)


def check_finite(step: int, model) -> None:
    """Raise NonFiniteStateError if a model or optimizer variable holds NaN or inf."""
    variables = [*model.variables, *model.optimizer.variables]
    _require_finite(step, variables, [_to_numpy(v) for v in variables])


def read_header(path: str | Path) -> dict[str, Any]:
    with np.load(path) as data:
        return json.loads(bytes(data["header"]).decode())


def damage(path: str | Path) -> str | None:
    """None if the checkpoint's header opens and parses, else what is wrong with it."""
    try:
        header = read_header(path)
        if not isinstance(header, dict) or "step" not in header:
            return "no step in its header"
    except Exception as error:  # noqa: BLE001 - any unreadable file is damaged
        return str(error).splitlines()[0][:200] if str(error) else type(error).__name__
    return None


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest checkpoint that opens cleanly; each damaged newer one is named in a warning."""
    for _, path in reversed(list_checkpoints(directory)):
        problem = damage(path)
        if problem is None:
            return path
        log.warning("skipping damaged checkpoint %s (%s)", path, problem)
    return None


def restore_latest(directory: str | Path, model) -> dict[str, Any] | None:
    """Load the newest checkpoint that loads whole into `model`; return its header (None if
    there is none). Each damaged newer one is named in a warning and skipped."""
    for _, path in reversed(list_checkpoints(directory)):
        problem = damage(path)
        if problem is None:
            try:
                return load_checkpoint(path, model)
            except CorruptFileError as error:
                problem = str(error)
        log.warning("skipping damaged checkpoint %s (%s)", path, problem)
    return None


def load_checkpoint(path: str | Path, model) -> dict[str, Any]:
    """Assign a checkpoint's arrays to a compiled model; return its header."""
    path = Path(path)
    try:
        return _assign(path, model)
    except (OSError, EOFError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as error:
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise CorruptFileError(f"checkpoint {path} is damaged ({reason})") from None


def _assign(path: Path, model) -> dict[str, Any]:
    with np.load(path) as data:
        header = json.loads(bytes(data["header"]).decode())
        for prefix, variables in (("model", model.variables),
                                  ("optimizer", model.optimizer.variables)):
            keys = sorted(k for k in data.files if k.startswith(prefix + "/"))
            if len(keys) != len(variables):
                raise ValueError(
                    f"checkpoint {path} holds {len(keys)} {prefix} variables but this model has "
                    f"{len(variables)}: it was written for a different config or precision"
                )
            for key, variable in zip(keys, variables, strict=True):
                value = data[key]
                if tuple(value.shape) != tuple(variable.shape):
                    raise ValueError(
                        f"checkpoint {path}: {variable.path} has shape {value.shape}, the model "
                        f"expects {tuple(variable.shape)}; resume with the run's own config"
                    )
                variable.assign(value)
    return header
