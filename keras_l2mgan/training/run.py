"""A training run: options, run directory, data, model, distribution, fit, checkpoints.

    run_dir = train(TrainOptions(preset="tiny_32", steps=200, run_dir="runs/x"))

Importing this module does not import keras: the CLI reads a run's options (and its backend)
with it first. The Keras backend must be chosen before train() runs. With
multi_worker=True (TensorFlow, TF_CONFIG set) every worker runs train() with the same options;
the chief (worker 0) alone writes the run directory.
RUN_DIR/
  training_options.json   every option, the model config and the domain names
  checkpoints/ckpt-*.npz  full training state, last K kept (see checkpoints.py)
  model/                  inference bundle with the EMA weights (export and edit read it)
  samples/step-*.png      source | each domain | alpha strip 0 ... 1.25
  logs/                   TensorBoard scalars (losses, R1, loss scale, images/s) and images
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

from keras_l2mgan.atomic import write_file_atomic
from keras_l2mgan.config import (
    DEFAULT_BLEND_GREY_LEVELS,
    PRESETS,
    check_blend_grey_levels,
    get_preset,
)
from keras_l2mgan.errors import CorruptFileError, RunFailure
from keras_l2mgan.trainers import get_trainer
from keras_l2mgan.training.run_lock import LOCK_FILE, RunDirLock

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
# `l2m train`'s extra terms; the library's LossWeights has 0 for both (the official losses).
DEFAULT_RECONSTRUCTION_WEIGHT = 10.0
DEFAULT_STYLE_SIZE_WEIGHT = 0.1
MEMORY_SOURCE = "synthetic_memory"  # --data: synthetic faces in memory (no tf.data)
OPTIONS_FILE = "training_options.json"
# Config fields that change what an edit returns, not any weight: a resume may change them.
_EDIT_ONLY_FIELDS = ("blend_changes", "blend_grey_levels")
# Options a resumed run may change; every other one must match the run directory's. The
# learning rate is one (resuming a diverged run from its last good checkpoint with a lower
# --lr is the usual fix), and so is the hardware: checkpoints are device-neutral and the
# global batch stays the same.
RESUMABLE_CHANGES = {"steps", "sample_every", "checkpoint_every", "keep_checkpoints", "jit",
                     "log_every", "run_dir", "resume", "verbose", "lr", "devices",
                     "multi_worker", "domain_weights", *_EDIT_ONLY_FIELDS}


@dataclasses.dataclass
class TrainOptions:
    backend: str | None = None
    data: str = "synthetic"
    attrs: str = "smiling"
    # The first-run defaults (issue 11): mini_64 at lr 2e-3 for 1,200 steps learns a visible edit
    # in under 10 minutes on a 2-core CPU. At that lr the style codes explode unless both guards
    # are on: --clip-norm 1 (an Adam kick, --seed 2) and the style-size term (the style term's
    # own push, --seed 1); see the README's ablation. The reconstruction term keeps the face.
    preset: str = "mini_64"
    img_size: int | None = None
    batch_size: int = 8
    steps: int = 1200
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ema_decay: float = 0.999
    ema_warmup: bool = True
    clip_norm: float | None = 1.0  # global gradient norm cap for both optimizers (0/None: off)
    # Edits keep the input wherever they do not change the reconstruction (keras_l2mgan.blend).
    blend_changes: bool = True
    blend_grey_levels: tuple[float, float] = DEFAULT_BLEND_GREY_LEVELS  # its (low, high)
    precision: str = "float32"
    devices: str = "1"
    run_dir: str | None = None
    resume: str | None = None
    seed: int = 0
    jit: bool | None = None  # None: auto, see use_jit()
    sample_every: int = 100
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    log_every: int = 10
    data_dir: str | None = None
    num_examples: int | None = None
    loss_weights: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {"reconstruction": DEFAULT_RECONSTRUCTION_WEIGHT,
                                 "style_size": DEFAULT_STYLE_SIZE_WEIGHT})
    verbose: int = 1
    multi_worker: bool = False
    init_from: str | None = None  # a bundle (e.g. from `l2m import`) whose weights start the run
    # How often each domain is drawn as the source of an edit, in domain order (None: equally).
    # A fine-tune can give the tasks a model finds hardest more of the batches.
    domain_weights: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def in_memory(data: str) -> bool:
    """Whether --data names the in-memory synthetic faces (any case, - or _)."""
    return data.strip().lower().replace("-", "_") == MEMORY_SOURCE


class TrainingError(RunFailure):
    """A run that cannot go on (non-finite loss); the message names the step."""


LOSS_OPTIONS = ("--orthogonality / --diversity-weight / --detach-style-target / "
                "--reconstruction-weight / --unchanged-region-weight / --style-size-weight")


def option_name(field: str) -> str:
    """The `l2m train` spelling of a TrainOptions field: errors name what the user types."""
    return LOSS_OPTIONS if field == "loss_weights" else "--" + field.replace("_", "-")


def needs_unchanged_masks(options: TrainOptions) -> bool:
    """Whether the run trains the unchanged-region term (its batches must carry masks)."""
    return options.loss_weights.get("unchanged_region", 0) > 0


def validate_options(options: TrainOptions) -> None:
    """Checks that need no backend: what the CLI's types check, for Python callers too."""
    if options.preset not in PRESETS:
        raise ValueError(f"--preset {options.preset!r} is unknown; choose one of: "
                         f"{', '.join(PRESETS)}")
    if options.precision not in PRECISIONS:
        raise ValueError(f"--precision {options.precision!r} is unknown; "
                         f"choose one of: {', '.join(PRECISIONS)}")
    for name in ("steps", "batch_size", "sample_every", "checkpoint_every", "log_every",
                 "keep_checkpoints"):
        if getattr(options, name) < 1:
            raise ValueError(f"{option_name(name)} must be >= 1, got {getattr(options, name)}")
    if not options.lr > 0:  # also refuses NaN
        raise ValueError(f"--lr must be > 0, got {options.lr}")
    try:
        check_blend_grey_levels(options.blend_grey_levels)
    except ValueError:
        raise ValueError(f"--blend-grey-levels must be two grey levels LOW HIGH with 0 <= LOW "
                         f"< HIGH <= 255, got {_shown(options.blend_grey_levels)}") from None
    if not 0 <= options.ema_decay < 1:
        raise ValueError(f"--ema-decay must be in [0, 1), got {options.ema_decay}")
    if options.img_size is not None:
        try:
            get_preset(options.preset).replace(img_size=options.img_size)
        except ValueError as error:
            raise ValueError(f"--img-size: {error}") from None
    if needs_unchanged_masks(options) and not in_memory(options.data):
        raise ValueError(f"--unchanged-region-weight needs the renderer's masks of the synthetic "
                         f"faces; train with --data {MEMORY_SOURCE} (not --data {options.data})")
    if options.multi_worker and in_memory(options.data):
        raise ValueError(f"--data {options.data} cannot be sharded across workers; use --data "
                         "synthetic (tf.data) with --multi-worker")
    if options.precision == "mixed_float16" and options.backend is not None:
        # Asking the trainer imports keras and the backend's library: only for this precision.
        if not get_trainer(options.backend).SUPPORTS_MIXED_FLOAT16:
            raise ValueError(f"--precision mixed_float16 is not supported on {options.backend} "
                             "(no dynamic loss scaling for two optimizers there); use "
                             "--precision mixed_bfloat16")


def check_options(options: TrainOptions) -> None:
    import keras

    from keras_l2mgan.losses import LossWeights

    backend = keras.backend.backend()
    if options.backend not in (None, backend):
        raise ValueError(f"--backend {options.backend}: keras is running on {backend}; "
                         "set KERAS_BACKEND before importing keras")
    validate_options(dataclasses.replace(options, backend=backend))
    try:
        LossWeights.from_dict(options.loss_weights)
    except ValueError as error:
        raise ValueError(f"{LOSS_OPTIONS}: {error}") from None


def resolve_devices(spec: str, backend: str) -> list[str]:
    """Device names for --devices N|all: GPUs when there are any, else CPU (logical) devices.
    A backend that trains on one device (torch) refuses more."""
    trainer = get_trainer(backend)
    names = trainer.list_devices()
    names = [n for n in names if not n.lower().startswith("cpu")] or names
    if not trainer.SUPPORTS_MULTI_DEVICE:
        if spec != "all" and spec.strip().isdigit() and int(spec) > 1:
            raise ValueError(f"--devices {spec}: the {backend} backend trains on one device; "
                             "pass --devices 1, or --backend tensorflow or jax for more")
        return names[:1]
    if spec == "all":
        return names
    try:
        count = int(spec)
    except ValueError:
        raise ValueError(f"--devices must be a number or 'all', got {spec!r}") from None
    kind = "CPU device" if all(n.lower().startswith("cpu") for n in names) else "GPU"
    if count < 1:
        raise ValueError(f"--devices must be 1 or more (or 'all'), got {count}; this machine "
                         f"has {len(names)} {kind}(s) to train on: {', '.join(names)}")
    if count > len(names):
        raise ValueError(f"--devices {count}: this machine has {len(names)} {kind}(s) to train "
                         f"on ({', '.join(names)}); pass --devices {len(names)} or 'all'")
    return names[:count]


def use_jit(jit: bool | None, backend: str) -> bool:
    """--jit/--no-jit, else auto: the backend trainer's default_jit() (tensorflow: with a GPU;
    jax: always; torch: never)."""
    if jit is not None:
        return bool(jit)
    return get_trainer(backend).default_jit()


@dataclasses.dataclass
class Distribution:
    scope: Any  # context manager to build the model in
    replicas: int
    chief: bool = True  # writes the run directory; the other workers only train
    multi_worker: bool = False


def _multi_worker_distribution(options: TrainOptions, backend: str) -> Distribution:
    """The trainer's multi-worker strategy over the workers of TF_CONFIG (every worker runs the
    same command; each one's local GPUs, else its CPU, are its replicas)."""
    trainer = get_trainer(backend)
    if not trainer.SUPPORTS_MULTI_WORKER:
        raise ValueError(f"--multi-worker runs on the tensorflow backend, not {backend}; "
                         "pass --backend tensorflow")
    try:
        tf_config = json.loads(os.environ["TF_CONFIG"])
        workers = tf_config["cluster"]["worker"]
        task = tf_config["task"]
    except (KeyError, TypeError, json.JSONDecodeError) as error:
        raise ValueError(
            f"--multi-worker needs TF_CONFIG set to JSON like {{\"cluster\": {{\"worker\": "
            f"[\"host1:port\", \"host2:port\"]}}, \"task\": {{\"type\": \"worker\", \"index\": "
            f"0}}}} on every worker ({type(error).__name__}: {error})") from None
    if options.devices != "1":
        raise ValueError("--multi-worker uses every local GPU of each worker (else its CPU); "
                         "drop --devices")
    # Before anything else initialises the backend's runtime in this process.
    strategy = trainer.multi_worker_strategy()
    replicas = strategy.num_replicas_in_sync
    if options.batch_size % replicas:
        raise ValueError(f"--batch-size {options.batch_size} is not divisible by the {replicas} "
                         f"replicas of {len(workers)} workers; use a multiple of {replicas}")
    has_chief = "chief" in tf_config["cluster"]
    chief = task.get("type") == "chief" or (not has_chief and task.get("index") == 0)
    return Distribution(strategy.scope(), replicas, chief=chief, multi_worker=True)


def _distribution(options: TrainOptions, backend: str) -> Distribution:
    if options.multi_worker:
        return _multi_worker_distribution(options, backend)
    devices = resolve_devices(options.devices, backend)
    count = len(devices)
    if options.batch_size % count:
        raise ValueError(f"--batch-size {options.batch_size} is not divisible by the {count} "
                         f"devices; use a multiple of {count}")
    if count == 1:
        return Distribution(contextlib.nullcontext(), 1)
    return Distribution(get_trainer(backend).data_parallel(devices), count)


def resolve_options(options: TrainOptions, explicit: set[str] | None = None
                    ) -> tuple[TrainOptions, Path]:
    """The options a run will use and its directory, without importing keras: with --resume
    the run's saved options, overridden by the `explicit` ones it allows to change; else a
    new run dir (default runs/<timestamp>). `l2m train --dry-run` prints exactly these."""
    if options.resume:
        return _merge_resume(options, explicit if explicit is not None else set())
    return options, Path(options.run_dir or f"runs/{time.strftime('%Y%m%d-%H%M%S')}")


def saved_backend(run_dir: str | Path) -> str | None:
    """The backend a run trained on, read from its options file (plain JSON; no keras)."""
    saved_file = Path(run_dir) / OPTIONS_FILE
    if not saved_file.is_file():
        return None
    backend = read_saved_options(saved_file).get("backend")
    return backend if isinstance(backend, str) else None


def _merge_resume(options: TrainOptions, explicit: set[str]) -> tuple[TrainOptions, Path]:
    run_dir = Path(options.resume)
    saved_file = run_dir / OPTIONS_FILE
    if not saved_file.is_file():
        raise FileNotFoundError(f"--resume {run_dir}: no {OPTIONS_FILE} there; "
                                "pass the directory of an earlier `l2m train` run")
    saved = read_saved_options(saved_file)
    # Runs from before an option existed keep training as they did: raw edits before
    # --blend-changes, no clipping before --clip-norm (its default is 1 since 2026-12-03).
    # (A missing style-size weight is 0 already: LossWeights' own default.)
    saved.setdefault("blend_changes", False)
    saved.setdefault("clip_norm", None)
    merged = dict(saved)
    for name in explicit:
        value = getattr(options, name)
        if name not in RESUMABLE_CHANGES and value != saved.get(name):
            raise ValueError(
                f"--resume {run_dir}: the run used {option_name(name)} "
                f"{_shown(saved.get(name))}, not {_shown(value)}; drop the option to resume, "
                "or start a new run dir"
            )
        merged[name] = value
    merged.update(run_dir=str(run_dir), resume=str(run_dir))
    known = {f.name for f in dataclasses.fields(TrainOptions)}
    return TrainOptions(**{k: v for k, v in merged.items() if k in known}), run_dir


def _shown(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "the defaults"
    if isinstance(value, (list, tuple)):  # --blend-grey-levels LOW HIGH, as typed
        return " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return "(not set)" if value is None else str(value)


_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,),
          "None": (type(None),), "dict[str, Any]": (dict,),
          "tuple[float, float]": (list, tuple), "tuple[float, ...]": (list, tuple)}


def _has_type(value: Any, annotation: str) -> bool:
    """Whether value fits a TrainOptions annotation like "int | None" (bool is not an int)."""
    allowed = tuple(t for name in annotation.split(" | ") for t in _TYPES[name])
    if isinstance(value, bool) and bool not in allowed:
        return False
    return isinstance(value, allowed)


def read_saved_options(path: Path) -> dict[str, Any]:
    """The "options" of a run's training_options.json; a damaged file is a CorruptFileError."""
    try:
        saved = json.loads(path.read_text())["options"]
        if not isinstance(saved, dict):
            raise TypeError("options is not an object")
        for field in dataclasses.fields(TrainOptions):
            if field.name in saved and not _has_type(saved[field.name], str(field.type)):
                raise TypeError(f"{field.name} should be {field.type}, "
                                f"not {saved[field.name]!r}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"{path} is damaged ({type(error).__name__}: {error}); it is not "
                               "the options file `l2m train` wrote, so the run cannot be "
                               "resumed") from None
    return saved


def train(options: TrainOptions, explicit: set[str] | None = None) -> dict[str, Any]:
    """Run (or resume) training; return a summary dict (run_dir, steps, timings, last logs).

    `explicit` names the options the user set; with --resume only those are compared with
    the saved run, the others are taken from it.
    """
    import keras

    options, run_dir = resolve_options(options, explicit)
    if not options.resume:
        _check_new_run_dir(run_dir)
    check_options(options)
    backend = keras.backend.backend()
    distribution = _distribution(options, backend)
    # The chief writes the run dir and holds it for the whole run; the other workers of a
    # multi-worker run only train.
    lock = RunDirLock(run_dir) if distribution.chief else contextlib.nullcontext()
    with lock:
        if not options.resume:
            _check_new_run_dir(run_dir)  # again, under the lock: a racing run may have started
        return _train_locked(options, run_dir, backend, distribution)


def _check_new_run_dir(run_dir: Path) -> None:
    """A new run needs a missing or empty dir: never one of a user's folders, never a run."""
    if (run_dir / OPTIONS_FILE).exists():
        raise ValueError(f"{run_dir} already holds a run; pass --resume {run_dir} to go on, "
                         "or choose another --run-dir")
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--run-dir {run_dir} is a file; choose a new or empty directory")
    if run_dir.is_dir():
        foreign = sorted(name for name in os.listdir(run_dir) if name != LOCK_FILE)
        if foreign:
            shown = ", ".join(foreign[:3]) + (" ..." if len(foreign) > 3 else "")
            raise ValueError(f"--run-dir {run_dir} is not empty and not a run (it holds "
                             f"{shown}); choose a new or empty directory")


def _train_locked(options: TrainOptions, run_dir: Path, backend: str,
                  distribution: Distribution) -> dict[str, Any]:
    import keras

    from keras_l2mgan.model import L2MGAN
    from keras_l2mgan.training import checkpoints
    from keras_l2mgan.training.callbacks import RunCallback

    base = get_preset(options.preset)
    img_size = options.img_size or base.img_size
    # Before anything random (tf.data's seeded ops depend on the global seed too): the same
    # --seed then gives the same run, in a fresh process or not.
    keras.utils.set_random_seed(options.seed)

    info = _training_data(options, img_size)
    names = list(info.domain_names)
    if len(names) < 2:
        raise ValueError(f"data {options.data!r} has one domain only ({names}); an edit needs "
                         "at least two: pick other --attrs or add a second domain folder")
    present = [n for n, count in info.images_per_domain.items() if count > 0]
    if len(present) < 2:
        raise ValueError(f"data {options.data!r} has images in one domain only "
                         f"({info.images_per_domain}); an edit needs two")
    config = base.replace(img_size=img_size, num_domains=len(names), domain_names=tuple(names),
                          blend_changes=options.blend_changes,
                          blend_grey_levels=options.blend_grey_levels)

    # A resumed run's checkpoint holds every weight: the starting bundle is needed only when
    # there is none yet.
    init_from = None
    latest = checkpoints.latest_checkpoint(run_dir / "checkpoints")
    if options.init_from and latest is None:
        init_from = check_init_bundle(options.init_from, config)
        # A bundle's FAN (l2m import) comes along: it gives G its face masks when w_hpf > 0.
        config = config.replace(fan=bundle_has_fan(init_from))
    elif latest is not None:
        # The run keeps the FAN it started with (its bundle may be gone by now).
        config = config.replace(fan=checkpoints.read_header(latest)["config"].get("fan") is True)

    keras.config.set_dtype_policy(options.precision)
    keras.utils.set_random_seed(options.seed)  # again: dataset building drew from it
    with distribution.scope:
        model = L2MGAN(config)
        if init_from is not None:
            # Before compile(): the G+E EMA then starts from these weights at the first step.
            load_init_weights(model, init_from)
        model.compile(learning_rate=options.lr, weight_decay=options.weight_decay,
                      ema_decay=options.ema_decay, ema_warmup=options.ema_warmup,
                      clip_norm=options.clip_norm, seed=options.seed,
                      loss_weights=options.loss_weights,
                      jit_compile=use_jit(options.jit, backend))

    start_step = 0
    if options.resume:
        header = checkpoints.restore_latest(run_dir / "checkpoints", model)
        if header is not None:
            weights_config = {k: v for k, v in config.to_dict().items()
                              if k not in _EDIT_ONLY_FIELDS}
            if {k: v for k, v in header["config"].items()
                    if k not in _EDIT_ONLY_FIELDS} != weights_config:
                raise ValueError(f"--resume {run_dir}: the checkpoint's model config differs "
                                 "from this run's; resume with the run's own options")
            start_step = header["step"]
            # The checkpoint restored the learning rate it was saved with (an optimizer
            # variable); the run's own --lr, maybe lowered for this resume, wins.
            for optimizer in (model.optimizer.g_optimizer, model.optimizer.d_optimizer):
                optimizer.learning_rate = options.lr
    if distribution.chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_options(run_dir, options, config, backend, distribution.replicas, start_step)
    remaining = options.steps - start_step
    summary = {"run_dir": str(run_dir), "start_step": start_step, "steps": options.steps,
               "backend": backend, "replicas": distribution.replicas, "domain_names": names,
               "chief": distribution.chief}
    if remaining <= 0:
        summary.update(final_step=start_step, seconds=0.0, note="already at --steps")
        if distribution.chief:
            summary["updated_edit_settings"] = _update_edit_settings(run_dir / "model", config)
        return summary

    sample_batch = _sample_batch(options, img_size)
    # The stream is seeded and stateless: skipping the batches already trained on continues
    # it exactly where the interrupted run stopped.
    dataset = info.dataset.skip(start_step) if start_step else info.dataset
    if distribution.multi_worker:
        # Every worker reads the same seeded stream and keeps its replicas' slices of each
        # global batch: the run matches one device on the same global batch.
        import tensorflow as tf

        sharding = tf.data.Options()
        policy = tf.data.experimental.AutoShardPolicy.DATA
        sharding.experimental_distribute.auto_shard_policy = policy
        dataset = dataset.with_options(sharding)
    callback = RunCallback(
        run_dir, start_step, options.steps, options.batch_size, options.checkpoint_every,
        options.sample_every, sample_batch, options.keep_checkpoints, options.log_every,
        allow_non_finite=options.precision == "mixed_float16", write=distribution.chief,
        header={"options": options.to_dict(), "seed": options.seed})
    started = time.perf_counter()
    # shuffle=False: the stream is shuffled already (fit would warn that it ignores True).
    if in_memory(options.data):
        dataset = get_trainer(backend).feed_in_memory(dataset)
    model.fit(dataset, epochs=1, steps_per_epoch=remaining, callbacks=[callback], shuffle=False,
              verbose=options.verbose)
    seconds = time.perf_counter() - started
    if callback.failed_step is not None:
        raise TrainingError(_failure_message(callback, options, run_dir))
    last_logs = callback.history[-1][1] if callback.history else {}
    summary.update(final_step=callback.step, seconds=seconds, last_logs=last_logs,
                   skipped_steps=callback.skipped_steps,
                   images_per_second=(callback.step - start_step) * options.batch_size / seconds,
                   last_checkpoint=str(callback.last_checkpoint), history=callback.history)
    return summary


def _update_edit_settings(bundle_dir: Path, config) -> list[str]:
    """A resume with no steps left may still change how the model edits (--blend-changes,
    --blend-grey-levels): write those fields into the run's model bundle, whose weights stay.
    Returns the changed settings as "--option value" strings (none: nothing written)."""
    from keras_l2mgan.bundle import CONFIG_FILE
    from keras_l2mgan.config import L2MConfig

    config_file = bundle_dir / CONFIG_FILE
    if not config_file.is_file():
        return []
    saved = L2MConfig.load(config_file)
    changes = {name: getattr(config, name) for name in _EDIT_ONLY_FIELDS
               if getattr(saved, name) != getattr(config, name)}
    if changes:
        saved.replace(**changes).save(config_file)
    return [f"{option_name(name)} {_shown(value)}" for name, value in sorted(changes.items())]


# The run takes the bundle's FAN setting, so fan is not compared.
_SHAPE_FIELDS = ("img_size", "num_domains", "style_dim", "w_hpf", "base_dim", "max_conv_dim")


def check_init_bundle(path: str, config) -> Path:
    """The bundle directory of --init-from, once its model is this run's model.

    Shapes must match exactly (the weights are loaded as they are); domain names too when
    the bundle has them, so a head is never trained on another domain's images.
    """
    from keras_l2mgan.bundle import CONFIG_FILE, WEIGHTS_FILE
    from keras_l2mgan.config import L2MConfig

    directory = Path(path)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"--init-from {directory} is not a model bundle: {name} is "
                                    "missing (make one with `l2m import` or `l2m train`)")
    theirs = L2MConfig.load(directory / CONFIG_FILE)
    diffs = [f"{field} {getattr(theirs, field)!r}, not {getattr(config, field)!r}"
             for field in _SHAPE_FIELDS if getattr(theirs, field) != getattr(config, field)]
    # The domain count comes from the data; every other shape field from --preset/--img-size.
    fits = [name for name, preset in PRESETS.items() if all(
        getattr(preset, f) == getattr(theirs, f) for f in _SHAPE_FIELDS if f != "num_domains")]
    wrong_size = any(getattr(theirs, f) != getattr(config, f)
                     for f in _SHAPE_FIELDS if f != "num_domains")
    hint = f"; pass --preset {fits[0]}" if wrong_size and fits else ""
    if theirs.domain_names is not None and theirs.domain_names != config.domain_names:
        diffs.append(f"domains {list(theirs.domain_names)}, not the data's "
                     f"{list(config.domain_names or ())}")
    if diffs:
        raise ValueError(f"--init-from {directory}: the bundle's model has {'; '.join(diffs)}"
                         f"{hint}")
    return directory


def bundle_has_fan(directory: Path) -> bool:
    """Whether the --init-from bundle holds a FAN (config ``fan``)."""
    from keras_l2mgan.bundle import CONFIG_FILE
    from keras_l2mgan.config import L2MConfig

    return L2MConfig.load(Path(directory) / CONFIG_FILE).fan


def load_init_weights(model, directory: Path) -> None:
    from keras_l2mgan.bundle import WEIGHTS_FILE

    try:
        model.load_weights(str(directory / WEIGHTS_FILE))
    except Exception as error:  # noqa: BLE001 - h5py, Keras and shape errors alike
        reason = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
        raise CorruptFileError(f"--init-from {directory / WEIGHTS_FILE} cannot be loaded "
                               f"({reason})") from None


def _failure_message(callback, options: TrainOptions, run_dir: Path) -> str:
    from keras_l2mgan.training import checkpoints

    last = checkpoints.latest_checkpoint(run_dir / "checkpoints")
    fix = f"lower --lr than {options.lr:g}"
    if options.precision != "float32":
        fix += " or --precision float32"
    if last is None:
        advice = f"no checkpoint was written yet; start a new run with a {fix}"
    else:
        advice = (f"last good checkpoint {last} is untouched; continue from it with a {fix}: "
                  f"l2m train --resume {run_dir} --lr ...")
    return (f"{callback.failure} at step {callback.failed_step} (precision "
            f"{options.precision}); training stopped, {advice}")


def _training_data(options: TrainOptions, img_size: int):
    """The endless training stream: tf.data's DatasetInfo, or MemoryDatasetInfo for
    synthetic_memory (numpy and PIL only: no TensorFlow needed)."""
    kwargs = dict(attrs=options.attrs, img_size=img_size, batch_size=options.batch_size,
                  seed=options.seed, data_dir=options.data_dir,
                  num_examples=options.num_examples, domain_weights=options.domain_weights)
    if in_memory(options.data):
        from keras_l2mgan.data.memory import build_memory_dataset

        return build_memory_dataset(**kwargs, unchanged_regions=needs_unchanged_masks(options))
    from keras_l2mgan.data import build_dataset

    return build_dataset(options.data, **kwargs)


def _sample_batch(options: TrainOptions, img_size: int) -> dict:
    """Four fixed, unaugmented images for the sample grids: held-out ones when there is a
    test split, else training images."""
    if in_memory(options.data):
        from keras_l2mgan.data.memory import held_out_faces

        return held_out_faces(options.attrs, img_size, 4)
    from keras_l2mgan.data import build_dataset

    for split in ("test", "train"):
        try:
            info = build_dataset(options.data, attrs=options.attrs, img_size=img_size,
                                 batch_size=4, split=split, seed=options.seed,
                                 data_dir=options.data_dir, num_examples=options.num_examples,
                                 augment=False)
        except ValueError:
            continue
        return next(iter(info.dataset.take(1).as_numpy_iterator()))
    raise ValueError(f"data {options.data!r}: no images to draw samples from")


def _write_options(run_dir: Path, options: TrainOptions, config, backend: str, replicas: int,
                   start_step: int) -> None:
    import keras

    payload = {"options": options.to_dict(), "config": config.to_dict(), "backend": backend,
               "replicas": replicas, "keras": keras.__version__, "resumed_at_step": start_step}
    write_file_atomic(run_dir / OPTIONS_FILE, json.dumps(payload, indent=2, sort_keys=True) + "\n")
