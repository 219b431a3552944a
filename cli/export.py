"""`l2m export`: a run dir or bundle -> saved_models/NAME/VERSION/ (TF Serving's layout)."""

from __future__ import annotations

import click

from .common import backend_option


@click.command()
@backend_option
@click.argument("run_dir", type=click.Path(path_type=str))
@click.option("--name", required=True, help="Model name: the directory under the output dir and "
              "the name clients put in ModelSpec.")
@click.option("--version", type=click.IntRange(min=1), default=None,
              show_default="one more than the newest existing version, or 1",
              help="Version number (the directory under NAME/).")
@click.option("--output-dir", default="saved_models", show_default=True,
              help="Model base dir (TF Serving's --model_base_path parent).")
@click.option("--compute-dtype", type=click.Choice(["float32", "bfloat16"]), default="float32",
              show_default=True, help="bfloat16 computes in bf16 (float32 weights): faster on "
              "CPUs with AVX-512 BF16 / AMX, slightly different pixels.")
@click.option("--overwrite", is_flag=True, help="Replace an existing version directory.")
def export(run_dir: str, name: str, version: int | None, output_dir: str, compute_dtype: str,
           overwrite: bool) -> None:
    """Export RUN_DIR (a run dir with model/, or a bundle dir) as a SavedModel.

    Always runs through the TensorFlow backend, whatever backend trained the model.
    """
    from keras_l2mgan.export import export_saved_model, exported_signatures

    try:
        target = export_saved_model(run_dir, name, version=version, output_dir=output_dir,
                                    compute_dtype=compute_dtype, overwrite=overwrite)
    except RuntimeError as error:  # the TensorFlow subprocess failed
        raise click.ClickException(str(error)) from None
    click.echo(f"exported {target} (signatures: {', '.join(exported_signatures(target))})")
