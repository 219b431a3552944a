"""`l2m train`: train L2M-GAN on any Keras backend; resume a run with --resume RUN_DIR."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import sys

import click

from keras_l2mgan.config import MAX_IMG_SIZE, PRESETS
from keras_l2mgan.loss_weights import ORTHOGONALITY_FORMS, LossWeights
from keras_l2mgan.training.run import PRECISIONS, TrainOptions

from .common import (
    BACKEND_EXPLICIT,
    DataSource,
    Devices,
    WeightList,
    backend_option,
    default_backend,
)

# Defaults live in TrainOptions (one place); the CLI shows them.
DEFAULTS = TrainOptions()
LOSS_DEFAULTS = LossWeights(**DEFAULTS.loss_weights)  # TrainOptions' on LossWeights' own
IMG_SIZES = [2**n for n in range(5, MAX_IMG_SIZE.bit_length())]  # what L2MConfig accepts
# The loss options: their parameter names -> the LossWeights fields they set.
LOSS_OPTIONS = {"orthogonality": "orthogonality_form", "diversity_weight": "diversity",
                "detach_style_target": "detach_style_target",
                "reconstruction_weight": "reconstruction",
                "unchanged_region_weight": "unchanged_region",
                "style_size_weight": "style_size"}
TRAIN_HELP = (f"Train L2M-GAN (defaults: {DEFAULTS.data} faces, {DEFAULTS.attrs}, "
              f"{DEFAULTS.preset}, {DEFAULTS.steps} steps).\n\nProgress goes to stderr; a "
              "summary with the next commands (or --json) to stdout.")


@click.command(help=TRAIN_HELP)
@backend_option
@click.option("--data", type=DataSource(), default=DEFAULTS.data, show_default=True,
              help="Dataset: synthetic faces (generated on first use), celeba, celeba_hq, or a "
              "folder of domain folders / images with an attribute file.")
@click.option("--data-dir", default=None, show_default="$L2M_DATA_DIR, else ~/tensorflow_datasets",
              help="Where datasets live; synthetic faces are generated there on first use.")
@click.option("--attrs", default=DEFAULTS.attrs, show_default=True,
              help="Comma-separated attributes to edit; n attributes make 2**n domains.")
@click.option("--preset", type=click.Choice(list(PRESETS)), default=DEFAULTS.preset,
              show_default=True, help="Model preset (`l2m info` lists them with parameter "
              "counts): mini_64 (the default) and small_64 train on a 2-core CPU, tiny_32 is for "
              "smoke runs.")
@click.option("--img-size", type=click.Choice(IMG_SIZES), default=None,
              show_default="the preset's", help="Override the preset's image size.")
@click.option("--batch-size", type=click.IntRange(min=1), default=DEFAULTS.batch_size,
              show_default=True, help="Global batch size (split across --devices).")
@click.option("--steps", type=click.IntRange(min=1), default=DEFAULTS.steps, show_default=True,
              help="Total training steps (a resumed run continues up to this number).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=DEFAULTS.lr,
              show_default=True, help="Adam learning rate (the official is 1e-4; 2e-3 learns the "
              "small presets' first edit in 1,200 steps with --clip-norm and the style-size term "
              "on; see README).")
@click.option("--precision", type=click.Choice(PRECISIONS), default=DEFAULTS.precision,
              show_default=True, help="Keras dtype policy; mixed_float16 adds loss scaling "
              "(not on jax).")
@click.option("--devices", type=Devices(), default=DEFAULTS.devices, show_default=True,
              help="Devices to train on: a number or 'all'. GPUs when the machine has any, "
              "else CPU devices (`l2m info` lists them): MirroredStrategy on tensorflow, "
              "DataParallel on jax, one device on torch.")
@click.option("--multi-worker/--single-worker", default=DEFAULTS.multi_worker,
              show_default=True,
              help="tensorflow: MultiWorkerMirroredStrategy over the workers in TF_CONFIG; run "
                   "the same command on every worker (worker 0 writes the run dir).")
@click.option("--run-dir", default=None, show_default="runs/<timestamp>",
              help="Output directory of a new run (missing or empty).")
@click.option("--resume", default=None, metavar="RUN_DIR", show_default="a new run",
              help="Continue the run in RUN_DIR at its last checkpoint, on the backend it "
              "trained on; options not given are taken from it (--steps, --lr, --devices, "
              "--multi-worker and the output options may change).")
@click.option("--init-from", default=None, metavar="BUNDLE", show_default="random weights",
              help="Start from the weights of this model bundle (e.g. from `l2m import`); its "
                   "model must be the run's (--preset, --img-size, the data's domains).")
@click.option("--domain-weights", type=WeightList(), default=None, metavar="W1,W2,...",
              show_default="every domain equally",
              help="How often each domain is drawn as the source of an edit, one weight per "
                   "domain in the order `l2m data stats` lists them (e.g. 1,2,1,2 for "
                   "smiling,male: the male faces twice as often). A resume may change them.")
@click.option("--ema-decay", type=click.FloatRange(0, 1, max_open=True),
              default=DEFAULTS.ema_decay, show_default=True,
              help="EMA of G and E used for samples and export, in [0, 1); 0.99 suits runs "
              "under ~3k steps.")
@click.option("--ema-warmup/--no-ema-warmup", default=DEFAULTS.ema_warmup, show_default=True,
              help="Ramp the EMA up: momentum min(--ema-decay, (1 + t) / (10 + t)) at step t, "
                   "so short runs are not dominated by the random initial weights.")
@click.option("--clip-norm", type=click.FloatRange(min=0), default=DEFAULTS.clip_norm,
              show_default=True,
              help="Scale each step's gradients (G+E, and D) to at most this global norm "
                   "before Adam, so one large gradient cannot kick the weights (0 switches it "
                   "off; see README, Keeping the face).")
@click.option("--blend-changes/--no-blend-changes", default=DEFAULTS.blend_changes,
              show_default=True,
              help="The trained model's edits keep the input wherever they do not change its "
                   "reconstruction (sharper, the rest of the face untouched); --no-blend-changes "
                   "returns the generator's whole image, as the official models do.")
@click.option("--blend-grey-levels", nargs=2, type=click.FloatRange(0, 255),
              default=DEFAULTS.blend_grey_levels, show_default=True, metavar="LOW HIGH",
              help="The blend's thresholds: where the edit changes the reconstruction by less "
                   "than LOW grey levels (of 255) the input stays, above HIGH the edit is taken. "
                   "Higher values keep more of the face; tools/blend_sweep.py measures a "
                   "model's choices. A resume may change them, with no steps left too.")
@click.option("--seed", type=click.IntRange(min=0), default=DEFAULTS.seed, show_default=True,
              help="Random seed: the same seed gives the same run on the same backend.")
@click.option("--jit/--no-jit", default=None, show_default="auto: on with a GPU, off on CPU",
              help="XLA-compile the step (tensorflow, jax); torch always runs eagerly. By "
              "default XLA runs where it is faster: on GPUs, not on CPU.")
@click.option("--sample-every", type=click.IntRange(min=1), default=DEFAULTS.sample_every,
              show_default=True, help="Write a sample grid (samples/step-N.png) every N steps.")
@click.option("--checkpoint-every", type=click.IntRange(min=1),
              default=DEFAULTS.checkpoint_every, show_default=True,
              help="Write a checkpoint and the model/ bundle every N steps (and at the end).")
@click.option("--keep-checkpoints", type=click.IntRange(min=1),
              default=DEFAULTS.keep_checkpoints, show_default=True,
              help="Checkpoints to keep (the oldest are deleted).")
@click.option("--log-every", type=click.IntRange(min=1), default=DEFAULTS.log_every,
              show_default=True, help="Write TensorBoard scalars every N steps.")
@click.option("--num-examples", type=click.IntRange(min=1), default=None,
              show_default="the whole dataset (synthetic: 20000)",
              help="Size of a synthetic dataset (or a cap on a real one).")
@click.option("--orthogonality", type=click.Choice(ORTHOGONALITY_FORMS),
              default=LOSS_DEFAULTS.orthogonality_form,
              show_default=True, help="Form of the orthogonality loss.")
@click.option("--diversity-weight", type=click.FloatRange(min=0),
              default=LOSS_DEFAULTS.diversity,
              show_default=True,
              help="Weight of the optional diversity-sensitive loss (0 switches it off).")
@click.option("--reconstruction-weight", type=click.FloatRange(min=0),
              default=LOSS_DEFAULTS.reconstruction, show_default=True,
              help="Weight of |G(x, E(x)) - x|, the edit at alpha 0 giving the input back "
                   "(keeps the face; 0 gives the official losses; see README, Keeping the face).")
@click.option("--unchanged-region-weight", type=click.FloatRange(min=0),
              default=LOSS_DEFAULTS.unchanged_region, show_default=True,
              help="Weight of |G(x, s~) - G(x, E(x))| where no trained attribute changes the "
                   "face (the renderer's masks: --data synthetic_memory only); keeps edits off "
                   "the background (see README, Keeping the face).")
@click.option("--style-size-weight", type=click.FloatRange(min=0),
              default=LOSS_DEFAULTS.style_size, show_default=True,
              help="Weight of mean(s^2) over the style codes, which keeps them bounded at high "
                   "learning rates (0 gives the official losses; see README, Keeping the face).")
@click.option("--detach-style-target/--no-detach-style-target",
              default=LOSS_DEFAULTS.detach_style_target, show_default=True,
              help="Stop the gradient into the target code of the style reconstruction loss "
                   "(guards against E shrinking every style code; see README).")
@click.option("--dry-run", is_flag=True,
              help="Print the resolved options (with --resume: the run's, merged) and exit.")
@click.option("--json", "json_output", is_flag=True,
              help="Print the summary as JSON on stdout (progress always goes to stderr).")
@click.pass_context
def train(ctx: click.Context, dry_run: bool, json_output: bool, **kwargs) -> None:
    """`l2m train`; its --help is TRAIN_HELP, which names TrainOptions' defaults."""
    from keras_l2mgan.training.run import resolve_options, saved_backend, validate_options

    explicit = {name for name in kwargs
                if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT}
    weights = {field: kwargs.pop(name) for name, field in LOSS_OPTIONS.items()}
    if explicit & LOSS_OPTIONS.keys():
        explicit = (explicit - LOSS_OPTIONS.keys()) | {"loss_weights"}
    options = TrainOptions(loss_weights=weights, **kwargs)
    backend = _backend(ctx, options.resume and saved_backend(options.resume))
    resolved, run_dir = resolve_options(
        dataclasses.replace(options, backend=backend or default_backend()), explicit)
    validate_options(resolved)
    if dry_run:
        click.echo(json.dumps({**resolved.to_dict(), "run_dir": str(run_dir)}, indent=2))
        click.echo("dry run: nothing trained, nothing written", err=True)
        return

    import keras

    from keras_l2mgan.training.run import train as run_training

    options = dataclasses.replace(options, backend=keras.backend.backend())
    # Keras' progress bar writes to stdout: send it to stderr, so stdout holds the result.
    with contextlib.redirect_stdout(sys.stderr):
        summary = run_training(options, explicit)
    summary.pop("history", None)
    if json_output:
        click.echo(json.dumps(summary, indent=2, default=str))
    else:
        click.echo(human_summary(summary))


def _backend(ctx: click.Context, saved: str | None) -> str | None:
    """The backend this run trains on, chosen before keras is imported: a resumed run's own
    (whatever the default backend), else --backend or Keras' usual rules."""
    explicit = ctx.meta.get(BACKEND_EXPLICIT)
    if not saved:
        return explicit
    resume = ctx.params["resume"]
    if explicit and explicit != saved:
        raise ValueError(f"--backend {explicit}: the run {resume} trained on {saved}; resume it "
                         f"without --backend (or with --backend {saved})")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != saved:
            raise ValueError(f"--resume {resume}: the run trained on {saved}, but keras is "
                             f"already running on {keras.backend.backend()} in this process; "
                             "run `l2m train --resume` in a new process")
    os.environ["KERAS_BACKEND"] = saved
    return saved


def human_summary(summary: dict) -> str:
    """A few lines: what ran, how fast, where the model is and what to do with it."""
    from keras_l2mgan.editors import valid_targets

    run_dir = summary["run_dir"]
    if not summary.get("chief", True):
        return (f"worker done: steps {summary['start_step']} -> {summary.get('final_step')} on "
                f"{summary['backend']}; the chief worker wrote {run_dir}")
    if summary.get("note"):
        updated = summary.get("updated_edit_settings")
        done = (f"nothing trained; {run_dir}/model now edits with {', '.join(updated)}"
                if updated else "nothing trained; pass a larger --steps to go on")
        return (f"{run_dir} is already at step {summary['final_step']} "
                f"(--steps {summary['steps']}): {done}")
    target = valid_targets(summary["domain_names"])[0]
    lines = [
        f"trained {run_dir} on {summary['backend']} ({summary['replicas']} device(s)): steps "
        f"{summary['start_step']} -> {summary['final_step']} in {summary['seconds']:.1f} s, "
        f"{summary['images_per_second']:.1f} images/s",
        f"model: {run_dir}/model (EMA weights); last checkpoint: {summary['last_checkpoint']}",
        "next:",
        f"  l2m edit PHOTO --to {target} --model {run_dir}",
        f"  l2m export {run_dir} --name NAME",
        f"  l2m eval {run_dir}",
        f"  l2m train --resume {run_dir} --steps {2 * summary['steps']}",
    ]
    return "\n".join(lines)
