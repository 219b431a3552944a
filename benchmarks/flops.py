"""FLOPs per image of G, E and D, counted from the traced TensorFlow graph, and a measured
matmul peak to compare achieved FLOP/s against.

Counting: 2 x multiply-accumulates of every convolution and matrix product in the graph of
one batch-1 forward pass, from the ops' static shapes (element-wise ops, normalisation and
activations are left out; they are a few percent here). Needs the TensorFlow backend.
"""

from __future__ import annotations

import time

import numpy as np

# A train step in passes of forward cost (forward + backward ~ 3 forward per trained pass):
# D step: E, G forward for the fakes; D on reals with R1 (~6 D: forward, input gradient, and
# the parameter gradient through both); D on fakes (3 D).
# G step: E (3), G (3), D on the fakes (3), E.encode of the fakes (3 E), G cycle (3).
TRAIN_STEP_PASSES = {"style_encoder": 7, "generator": 7, "discriminator": 12}


def op_flops(op) -> int:
    """FLOPs of one graph op (0 for ops that are not convolutions or matrix products)."""
    def dims(tensor):
        shape = tensor.shape
        return None if shape.rank is None or None in shape.as_list() else shape.as_list()

    kind = op.type
    if kind in ("Conv2D", "DepthwiseConv2dNative"):
        out, kernel = dims(op.outputs[0]), dims(op.inputs[1])
        if out is None or kernel is None:
            return 0
        per_output = kernel[0] * kernel[1] * (kernel[2] if kind == "Conv2D" else 1)
        return 2 * int(np.prod(out)) * per_output
    if kind == "Conv2DBackpropInput":  # transposed convolution
        kernel, grads = dims(op.inputs[1]), dims(op.inputs[2])
        if kernel is None or grads is None:
            return 0
        return 2 * int(np.prod(grads)) * kernel[0] * kernel[1] * kernel[2]
    if kind in ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "BatchMatMul"):
        a, out = dims(op.inputs[0]), dims(op.outputs[0])
        if a is None or out is None:
            return 0
        transpose_a = op.get_attr("transpose_a" if kind == "MatMul" else "adj_x")
        inner = a[-2] if transpose_a else a[-1]
        return 2 * int(np.prod(out)) * inner
    return 0


def graph_flops(function, *specs) -> int:
    """FLOPs of a Python function traced with tf.function on the given TensorSpecs."""
    import tensorflow as tf

    concrete = tf.function(function).get_concrete_function(*specs)
    total = sum(op_flops(op) for op in concrete.graph.get_operations())
    for inner in concrete.graph._functions.values():  # bodies of nested functions, if any
        total += sum(op_flops(op) for op in inner.graph.get_operations())
    return int(total)


def network_flops(config) -> dict[str, int]:
    """Forward FLOPs per image of the generator, style encoder (with the style transformer, as
    an edit runs it) and discriminator of an L2MConfig; plus the edit (E + G) and an estimate
    of one training step per image."""
    import keras
    import tensorflow as tf

    from keras_l2mgan.model import L2MGAN

    if keras.backend.backend() != "tensorflow":
        raise ValueError("FLOP counting traces a TensorFlow graph: run with "
                         "KERAS_BACKEND=tensorflow")
    model = L2MGAN(config)
    size, style = config.img_size, config.style_dim
    image = tf.TensorSpec([1, size, size, 3], tf.float32)
    label = tf.TensorSpec([1], tf.int32)
    code = tf.TensorSpec([1, style], tf.float32)
    flops = {
        "generator": graph_flops(lambda x, s: model.generator(x, s), image, code),
        "style_encoder": graph_flops(lambda x, a, b: model.style_encoder(x, a, b),
                                     image, label, label),
        "discriminator": graph_flops(lambda x, a: model.discriminator(x, a), image, label),
    }
    flops["edit"] = flops["generator"] + flops["style_encoder"]
    flops["train_step_estimate"] = sum(TRAIN_STEP_PASSES[k] * flops[k] for k in TRAIN_STEP_PASSES)
    return flops


def matmul_peak(dtype: str = "float32", size: int = 2048, seconds: float = 2.0) -> float:
    """Best FLOP/s of a square matmul on this machine (TensorFlow, all its threads)."""
    import tensorflow as tf

    rng = np.random.default_rng(0)
    a = tf.cast(tf.constant(rng.standard_normal((size, size)), tf.float32), dtype)
    b = tf.cast(tf.constant(rng.standard_normal((size, size)), tf.float32), dtype)
    product = tf.function(lambda x, y: tf.matmul(x, y))
    product(a, b).numpy()  # warm-up
    best = float("inf")
    deadline = time.perf_counter() + seconds
    runs = 0
    while runs < 3 or time.perf_counter() < deadline:
        start = time.perf_counter()
        product(a, b).numpy()
        best = min(best, time.perf_counter() - start)
        runs += 1
    return 2 * size**3 / best
