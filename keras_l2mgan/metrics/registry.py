"""The metric registry behind `l2m eval --metrics` (after StyleGAN2-ADA's metric_main).

A metric is a function registered under its name: given an evaluation context and one
source -> target task, it returns a dict of that task's values; its summary turns the rows of
every task into the means. The evaluation protocols (keras_l2mgan.metrics.evaluate) run the
registered metrics task by task, so edits and ground truth are computed once for all of them.
Each evaluation appends one JSON line per metric to ``metric-<name>.jsonl`` in the output
directory, so repeated evaluations (checkpoints, settings) add up to a history.

The names exist only here, as registered: the CLI, the protocols and the files read them from
the registry.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

MetricFn = Callable[..., dict]


def mean_of(rows: list[dict], key: str) -> float:
    """Mean of the finite values of `key` over task rows (NaN when there are none)."""
    values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


@dataclasses.dataclass(frozen=True)
class Metric:
    name: str
    fn: MetricFn  # fn(context, task_data) -> {value name: value} for one task
    protocols: tuple[str, ...]
    mean_keys: tuple[str, ...]  # values averaged over tasks (those a protocol returns)
    summary: Callable[[list[dict]], dict] | None = None  # replaces the means when given

    def summarise(self, rows: list[dict]) -> dict:
        if self.summary is not None:
            return self.summary(rows)
        present = [k for k in self.mean_keys if rows and k in rows[0]]
        return {k: mean_of(rows, k) for k in present}


_METRICS: dict[str, Metric] = {}


def register_metric(protocols: Sequence[str], mean: Sequence[str] = (),
                    summary: Callable[[list[dict]], dict] | None = None
                    ) -> Callable[[MetricFn], MetricFn]:
    """Decorator: register `fn(context, task_data) -> dict` as the metric named after the
    function (its one spelling). Registration order is the order of the report's columns."""
    def decorate(fn: MetricFn) -> MetricFn:
        name = fn.__name__
        if name in _METRICS:
            raise ValueError(f"metric {name!r} is registered twice")
        _METRICS[name] = Metric(name, fn, tuple(protocols), tuple(mean), summary)
        return fn
    return decorate


def _registered() -> dict[str, Metric]:
    # The metrics register themselves when the protocols' module is imported.
    import keras_l2mgan.metrics.evaluate  # noqa: F401

    return _METRICS


def get_metric(name: str) -> Metric:
    return _registered()[name]


def list_valid_metrics(protocol: str | None = None) -> list[str]:
    """Names of the registered metrics (those `protocol` can measure, if given), in order."""
    return [m.name for m in _registered().values()
            if protocol is None or protocol in m.protocols]


def parse_metrics(text: str | None, protocol: str) -> list[str]:
    """The metrics named in a comma-separated --metrics value, checked against the registry;
    None: every metric of the protocol. Raises ValueError naming the valid ones."""
    if text is None:
        return list_valid_metrics(protocol)
    names = [n.strip() for n in text.split(",") if n.strip()]
    valid = list_valid_metrics()
    unknown = [n for n in names if n not in valid]
    if unknown or not names:
        what = f"unknown metric {unknown[0]!r}" if unknown else "no metric given"
        raise ValueError(f"--metrics: {what}; valid metrics: {', '.join(valid)}")
    for name in names:
        if protocol not in get_metric(name).protocols:
            raise ValueError(f"--metrics {name} is not measured by the {protocol} protocol; "
                             f"it measures {', '.join(list_valid_metrics(protocol))}")
    return list(dict.fromkeys(names))  # each once, in the order given


def metric_file(name: str) -> str:
    return f"metric-{name}.jsonl"


def metric_files() -> tuple[str, ...]:
    """The JSONL file names every registered metric may append to."""
    return tuple(metric_file(n) for n in list_valid_metrics())


def metric_record(name: str, results: dict, values: dict, seconds: float) -> dict:
    """One JSONL line: the metric's values with the evaluation's model, settings and time."""
    now = datetime.datetime.now(datetime.timezone.utc)
    settings = {k: v for k, v in results.items() if k not in ("tasks", "mean")}
    return {"metric": name, "model": results.get("model"),
            "time": now.isoformat(timespec="seconds"), "timestamp": now.timestamp(),
            "eval_seconds": round(seconds, 3), "results": values, "settings": settings}


def append_jsonl(path: str | Path, record: dict) -> Path:
    """Append one JSON line. A single write to an O_APPEND descriptor: two evaluations
    appending at once never interleave within a line."""
    from keras_l2mgan.metrics.report import clean_json

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = (json.dumps(clean_json(record), ensure_ascii=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return path


def report_metrics(out: str | Path, results: dict, by_metric: dict[str, dict],
                   seconds: float) -> list[dict]:
    """Append each metric's line to out/metric-<name>.jsonl; returns the records."""
    records = []
    for name, values in by_metric.items():
        record = metric_record(name, results, values, seconds)
        append_jsonl(Path(out) / metric_file(name), record)
        records.append(record)
    return records


def select(names: Iterable[str]) -> list[Metric]:
    return [get_metric(n) for n in names]
