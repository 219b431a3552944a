"""`l2m train`: train L2M-GAN on any Keras backend; resume a run with --resume RUN_DIR."""

from __future__ import annotations

import json

import click

from cli.common import backend_option

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@click.command()
@backend_option
@click.option("--data", default="synthetic", show_default=True,
              help="synthetic, celeba, celeba_hq, or a folder of domain folders / attribute file.")
@click.option("--data-dir", default=None, help="Where datasets live (default $L2M_DATA_DIR or "
              "~/tensorflow_datasets); synthetic faces are generated there on first use.")
@click.option("--attrs", default="smiling", show_default=True,
              help="Comma-separated attributes to edit; n attributes make 2**n domains.")
@click.option("--preset", default="small_64", show_default=True,
              help="Model preset (see `l2m info`): small_64 trains on a 2-core CPU in minutes.")
@click.option("--img-size", type=int, default=None, help="Override the preset's image size.")
@click.option("--batch-size", type=int, default=8, show_default=True,
              help="Global batch size (split across --devices).")
@click.option("--steps", type=int, default=300, show_default=True,
              help="Total training steps (a resumed run continues up to this number).")
@click.option("--lr", type=float, default=1e-4, show_default=True, help="Adam learning rate.")
@click.option("--precision", type=click.Choice(PRECISIONS), default="float32",
              show_default=True, help="Keras dtype policy; mixed_float16 adds loss scaling.")
@click.option("--devices", default="1", show_default=True,
              help="Number of devices (GPUs, else CPUs) or 'all': MirroredStrategy on "
                   "tensorflow, DataParallel on jax.")
@click.option("--multi-worker/--single-worker", default=False, show_default=True,
              help="tensorflow: MultiWorkerMirroredStrategy over the workers in TF_CONFIG; run "
                   "the same command on every worker (worker 0 writes the run dir).")
@click.option("--run-dir", default=None, help="Output directory (default runs/<timestamp>).")
@click.option("--resume", default=None, help="Continue the run in this directory at its last "
              "checkpoint; options not given are taken from it (--steps, --lr, --devices, "
              "--multi-worker and output options may change).")
@click.option("--init-from", default=None, metavar="BUNDLE",
              help="Start from the weights of this model bundle (e.g. from `l2m import`); its "
                   "model must be the run's (--preset, --img-size, the data's domains).")
@click.option("--ema-decay", type=float, default=0.999, show_default=True,
              help="EMA of G and E used for samples/export; 0.99 suits runs under ~3k steps.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--jit/--no-jit", default=True, show_default=True,
              help="XLA-compile the step (tensorflow, jax); torch always runs eagerly.")
@click.option("--sample-every", type=int, default=100, show_default=True)
@click.option("--checkpoint-every", type=int, default=100, show_default=True)
@click.option("--keep-checkpoints", type=int, default=3, show_default=True)
@click.option("--num-examples", type=int, default=None,
              help="Size of a synthetic dataset (or a cap on a real one).")
@click.option("--orthogonality", type=click.Choice(["cosine", "abs_dot", "abs_product"]),
              default="cosine", show_default=True, help="Form of the orthogonality loss.")
@click.option("--diversity-weight", type=float, default=0.0, show_default=True,
              help="Weight of the optional diversity-sensitive loss (off by default).")
@click.option("--detach-style-target/--no-detach-style-target", default=True, show_default=True,
              help="Stop the gradient into the target code of the style reconstruction loss "
                   "(guards against E shrinking every style code; see README).")
@click.pass_context
def train(ctx: click.Context, **kwargs) -> None:
    """Train L2M-GAN (defaults: synthetic faces, smiling, small_64, 300 steps)."""
    import keras

    from keras_l2mgan.training.run import TrainOptions
    from keras_l2mgan.training.run import train as run_training

    explicit = {name for name in kwargs
                if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT}
    weights = {"orthogonality_form": kwargs.pop("orthogonality"),
               "diversity": kwargs.pop("diversity_weight"),
               "detach_style_target": kwargs.pop("detach_style_target")}
    weight_options = {"orthogonality", "diversity_weight", "detach_style_target"}
    if explicit & weight_options:
        explicit = (explicit - weight_options) | {"loss_weights"}
    options = TrainOptions(backend=keras.backend.backend(), loss_weights=weights, **kwargs)
    summary = run_training(options, explicit)
    summary.pop("history", None)
    click.echo(json.dumps(summary, indent=2, default=str))
