"""Memory the JAX train step asks for, read from XLA's compiled program: nothing is run.

    python benchmarks/jax_step_memory.py [--presets celeba_hq_256 official_64]
        [--precisions float32 mixed_bfloat16] [--batch-size 8] [--xla-convolution]

XLA on CPU gives every temporary of the jitted step one preallocated buffer, sized at compile
time; `compiled.memory_analysis()` reports it without allocating it, so a step too large for this
machine can still be measured. `--xla-convolution` swaps the JAX trainer's convolution hook for
plain `jax.lax.conv_general_dilated` (XLA's own kernel gradient) for comparison.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

GIB = 2**30


def step_memory(preset: str, precision: str, batch_size: int) -> dict:
    """Temporaries, arguments and outputs (GiB) of one compiled train step, and compile seconds."""
    import jax
    import keras
    import numpy as np

    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    keras.config.set_dtype_policy(precision)
    config = get_preset(preset)
    model = L2MGAN(config)
    model.compile(jit_compile=True)
    size = config.img_size
    model(np.zeros((1, size, size, 3), "float32"))  # builds every variable
    state = model._get_jax_state(trainable_variables=True, non_trainable_variables=True,
                                 optimizer_variables=True, metrics_variables=True)
    abstract_state = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                                            state)
    batch = {"images": jax.ShapeDtypeStruct((batch_size, size, size, 3), "float32"),
             "labels": jax.ShapeDtypeStruct((batch_size,), "int32")}
    start = time.perf_counter()
    compiled = jax.jit(model.train_step, donate_argnums=0).lower(abstract_state, batch).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    return {"temporaries": memory.temp_size_in_bytes / GIB,
            "arguments": memory.argument_size_in_bytes / GIB,
            "outputs": memory.output_size_in_bytes / GIB, "compile_s": seconds}


def use_xla_convolution() -> None:
    import jax.numpy as jnp
    import keras

    import keras_l2mgan.trainers.jax as jax_trainer

    def xla_convolution(inputs, kernel, padding: str):
        kernel = keras.ops.convert_to_tensor(kernel)
        return jax_trainer._lax_convolution(jnp.asarray(inputs, kernel.dtype), kernel,
                                            padding.upper())

    jax_trainer.convolution = xla_convolution  # read by Conv2D.build, so before the model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=["celeba_hq_256", "official_64"])
    parser.add_argument("--precisions", nargs="+", default=["float32"])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--xla-convolution", action="store_true",
                        help="XLA's own convolution gradient instead of the trainer's hook")
    args = parser.parse_args()
    if args.xla_convolution:
        use_xla_convolution()
    hook = "XLA's" if args.xla_convolution else "trainer hook"
    print("| preset | precision | batch | convolution | temporaries GiB | arguments GiB | "
          "outputs GiB | compile s |\n|---|---|---:|---|---:|---:|---:|---:|")
    for preset in args.presets:
        for precision in args.precisions:
            row = step_memory(preset, precision, args.batch_size)
            print(f"| {preset} | {precision} | {args.batch_size} | {hook} | "
                  f"{row['temporaries']:.2f} | {row['arguments']:.2f} | {row['outputs']:.2f} | "
                  f"{row['compile_s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
