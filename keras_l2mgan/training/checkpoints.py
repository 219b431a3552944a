"""Training checkpoints: one .npz file per step, written atomically, the last K kept.

A checkpoint holds every model variable (G, E, D and the target-label seed state), every
optimizer variable (Adam moments of both optimizers, the EMA of G and E, loss scale) and a
JSON header (step, config with domain names, variable paths). It is written to a uniquely
named temp file, fsynced and renamed (keras_l2mgan.atomic), so a run killed at any moment
(SIGKILL included) leaves either the old set of checkpoints or the old set plus the new one,
never a half-written file under a final name. A state holding NaN or inf is refused
(NonFiniteStateError) and never replaces a good checkpoint. Backend-neutral: any backend can
read it. On restore each array goes to the variable whose path it was saved with (a model whose
variables differ is refused, naming the first differing path); checkpoints written before the
header listed paths load by position.
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

from keras_l2mgan.atomic import write_file_atomic
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
    write_file_atomic(final, lambda handle: np.savez(handle, **arrays))
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
    """Check every array against the model, then assign them all (none if one is wrong)."""
    with np.load(path) as data:
        header = json.loads(bytes(data["header"]).decode())
        pairs = []
        for prefix, variables in (("model", model.variables),
                                  ("optimizer", model.optimizer.variables)):
            keys = sorted(k for k in data.files if k.startswith(prefix + "/"))
            saved_paths = header.get(f"{prefix}_variables") if isinstance(header, dict) else None
            if saved_paths is None:  # written before paths were compared: by position
                if len(keys) != len(variables):
                    raise ValueError(
                        f"checkpoint {path} holds {len(keys)} {prefix} variables but this model "
                        f"has {len(variables)}: it was written for a different config or "
                        "precision")
                pairs += zip(keys, variables, strict=True)
            else:
                pairs += _match_paths(path, prefix, keys, saved_paths, variables)
        values = []
        for key, variable in pairs:
            value = data[key]
            if tuple(value.shape) != tuple(variable.shape):
                raise ValueError(
                    f"checkpoint {path}: {variable.path} has shape {value.shape}, the model "
                    f"expects {tuple(variable.shape)}; resume with the run's own config"
                )
            values.append(value)
    for (_, variable), value in zip(pairs, values, strict=True):
        variable.assign(value)
    return header


def path_keys(prefix: str, paths: list[str]) -> list[tuple[str, int]]:
    """Variable paths as checkpoints compare them, each with its occurrence number (the same
    key twice is told apart by order). An optimizer's name is not kept: Keras numbers them per
    process (warmup_ema_adam_2/... for the second one built) and older runs used Adam, so an
    optimizer variable is its optimizer's rank in the list and its own name."""
    owners: dict[str, int] = {}
    seen: dict[str, int] = {}
    keys = []
    for path in paths:
        key = path
        if prefix == "optimizer":
            owner, _, rest = path.partition("/")
            key = f"#{owners.setdefault(owner, len(owners))}/{rest}"
        keys.append((key, seen.get(key, 0)))
        seen[key] = seen.get(key, 0) + 1
    return keys


def _match_paths(path: Path, prefix: str, keys: list[str], saved_paths,
                 variables) -> list[tuple[str, Any]]:
    """(array key, variable) pairs matched by variable path; ValueError naming the first path
    that differs when the checkpoint and the model do not hold the same variables."""
    if (not isinstance(saved_paths, list) or len(saved_paths) != len(keys)
            or not all(isinstance(p, str) for p in saved_paths)):
        raise CorruptFileError(f"checkpoint {path} is damaged (its header lists other "
                               f"{prefix} variables than it holds)")
    saved = path_keys(prefix, saved_paths)
    model_paths = [v.path for v in variables]
    wanted = path_keys(prefix, model_paths)
    by_key = dict(zip(saved, keys, strict=True))
    missing = [i for i, k in enumerate(wanted) if k not in by_key]
    known = set(wanted)
    extra = [i for i, k in enumerate(saved) if k not in known]
    if missing or extra:
        if extra:
            i = extra[0]
            there = f" (this model has {model_paths[i]} there)" if i < len(model_paths) else ""
            first = f"its {prefix} variable {saved_paths[i]} is not in this model{there}"
        else:
            first = f"this model's {prefix} variable {model_paths[missing[0]]} is not in it"
        raise ValueError(
            f"checkpoint {path} was written for other variables: {first}; "
            f"{len(missing)} missing, {len(extra)} unknown; resume with the code and config "
            "that wrote it")
    return [(by_key[k], v) for k, v in zip(wanted, variables, strict=True)]
