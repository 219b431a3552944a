"""TensorFlow-pass training tests: mixed precision, MultiWorkerMirroredStrategy on loopback,
SIGKILL + resume, divergence, CLI errors. Two-device data parallelism (MirroredStrategy, JAX's
DataParallel) is checked in test_train.py.

One uninterrupted reference run (module fixture) is what the SIGKILL/resume, multi-worker
and divergence tests compare with or continue from, so each of them traces the step once less.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import REPO_ROOT, current_backend


def _data(n=4, size=32, scale=1.0):
    rng = np.random.default_rng(1)
    return {"images": (scale * rng.uniform(-1, 1, (n, size, size, 3))).astype("float32"),
            "labels": rng.integers(0, 2, n).astype("int32"),
            "target_labels": rng.integers(0, 2, n).astype("int32")}


def _values(variables):
    from keras import ops

    return [np.array(ops.convert_to_numpy(v)) for v in variables]


@pytest.mark.needs_tensorflow  # the TensorFlow train step's loss scaling, in this process
def test_mixed_float16_overflow_skips_the_step_and_bfloat16_trains():
    import keras

    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    try:
        # Seeded: some random initialisations already overflow at the initial scale 2**15.
        keras.utils.set_random_seed(0)
        keras.config.set_dtype_policy("mixed_float16")
        model = L2MGAN(get_preset("tiny_32"))
        model.compile(jit_compile=False)
        g_opt = model.optimizer.g_optimizer
        assert isinstance(g_opt, keras.optimizers.LossScaleOptimizer)
        history = model.fit(_data(), batch_size=4, verbose=0).history
        assert np.isfinite(history["g_loss"]).all() and np.isfinite(history["d_loss"]).all()
        assert history["loss_scale"][0] == 2.0**15
        weights = _values(model.trainable_variables + model.optimizer.variables[2:])
        scale = float(_values([g_opt.dynamic_scale])[0])
        # 1e5 is beyond float16's range (65504): activations and gradients overflow.
        model.fit(_data(scale=1e5), batch_size=4, verbose=0)
        after = _values(model.trainable_variables + model.optimizer.variables[2:])
        changed = [i for i, (a, b) in enumerate(zip(weights, after, strict=True))
                   if not np.array_equal(a, b)]
        # Only the loss scaler's own state moved (scale halved); weights, Adam and EMA did not.
        scaler_state = {id(v) for o in (g_opt, model.optimizer.d_optimizer) for v in o._variables}
        all_vars = model.trainable_variables + model.optimizer.variables[2:]
        assert all(id(all_vars[i]) in scaler_state for i in changed)
        assert float(_values([g_opt.dynamic_scale])[0]) == scale / 2

        keras.config.set_dtype_policy("mixed_bfloat16")
        model = L2MGAN(get_preset("tiny_32"))
        model.compile(jit_compile=False)
        assert model.generator.compute_dtype == "bfloat16"
        history = model.fit(_data(), batch_size=4, verbose=0).history
        assert np.isfinite(history["g_loss"]).all() and np.isfinite(history["r1"]).all()
        assert all(v.dtype == "float32" for v in model.trainable_variables)
    finally:
        keras.config.set_dtype_policy("float32")


def _folder_dataset(root, domains):
    """root/train/<domain>/*.png, four random 32 px images per domain."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for domain in domains:
        folder = root / "train" / domain
        folder.mkdir(parents=True)
        for i in range(4):
            image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(image).save(folder / f"{i}.png")
    return root


def _cli(*args, env=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "cli.main", "train", *map(str, args)],
                            cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _tf_env(**extra):
    return {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
            "CUDA_VISIBLE_DEVICES": "", **extra}


# Options every run below shares with the reference run (CLI spelling).
COMMON_ARGS = ("--preset", "tiny_32", "--batch-size", "4", "--sample-every", "1000", "--no-jit")
REFERENCE_STEPS = 8


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted run: a checkpoint and a logged loss after every step."""
    from keras_l2mgan.training.run import TrainOptions, train

    if current_backend() != "tensorflow":
        pytest.skip("runs in the tensorflow pass")
    root = tmp_path_factory.mktemp("reference")
    faces = _folder_dataset(root / "faces", ["a", "b"])
    summary = train(TrainOptions(
        data=str(faces), preset="tiny_32", batch_size=4, sample_every=1000, jit=False,
        steps=REFERENCE_STEPS, checkpoint_every=1, keep_checkpoints=REFERENCE_STEPS,
        log_every=1, run_dir=str(root / "run"), verbose=0))
    return {"faces": faces, "run_dir": root / "run", "history": dict(summary["history"])}


def _checkpoint(run_dir, step):
    from keras_l2mgan.training import checkpoints

    return checkpoints.checkpoint_path(run_dir / "checkpoints", step)


@pytest.mark.needs_tensorflow  # resumed here, compared with the reference run (trained here)
@pytest.mark.slow  # the reference run, a CLI training killed, then resumed
def test_sigkill_then_resume_continues_exactly(reference_run, tmp_path):
    from keras_l2mgan.bundle import load_bundle
    from keras_l2mgan.training import checkpoints
    from keras_l2mgan.training.run import TrainOptions, train

    run_dir = tmp_path / "killed"
    proc = _cli("--data", reference_run["faces"], *COMMON_ARGS, "--steps", "1000",
                "--checkpoint-every", "2", "--run-dir", run_dir, env=_tf_env())
    deadline = time.time() + 300
    try:
        while time.time() < deadline and proc.poll() is None:
            if checkpoints.list_checkpoints(run_dir / "checkpoints"):
                break
            time.sleep(0.1)
        assert proc.poll() is None, proc.communicate()[1][-3000:]
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    # Every checkpoint left behind opens; the newest is where the resume starts.
    found = checkpoints.list_checkpoints(run_dir / "checkpoints")
    for _, path in found:
        checkpoints.read_header(path)
    killed_at = found[-1][0]
    stop = killed_at + 2
    assert stop <= REFERENCE_STEPS, f"killed too late (step {killed_at}) to compare"
    resumed = train(TrainOptions(resume=str(run_dir), steps=stop, log_every=1),
                    explicit={"steps", "log_every"})
    assert (resumed["start_step"], resumed["final_step"]) == (killed_at, stop)
    options = json.loads((run_dir / "training_options.json").read_text())
    assert options["resumed_at_step"] == killed_at

    # The same run without interruption ends with the same weights: the curve joins exactly.
    with np.load(_checkpoint(run_dir, stop)) as a, \
            np.load(_checkpoint(reference_run["run_dir"], stop)) as b:
        keys = [k for k in a.files if k != "header"]
        assert keys == [k for k in b.files if k != "header"]
        worst = max(float(np.abs(a[k].astype(np.float64) - b[k]).max()) for k in keys)
    assert worst < 1e-5
    reference_logs = reference_run["history"][stop]
    for name in ("d_loss", "g_loss"):
        assert resumed["last_logs"][name] == pytest.approx(reference_logs[name], rel=1e-4)
    assert load_bundle(run_dir / "model").config.domain_names == ("a", "b")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _adam_moments(path):
    """{(position, name without the optimizer's process-dependent prefix): array}."""
    with np.load(path) as data:
        header = json.loads(bytes(data["header"]).decode())
        keys = sorted(k for k in data.files if k.startswith("optimizer/"))
        return {(i, name.split("/", 1)[-1]): data[key].astype(np.float64)
                for i, (key, name) in enumerate(zip(keys, header["optimizer_variables"],
                                                    strict=True))
                if name.endswith(("_momentum", "_velocity"))}


def _worst_moment_difference(path, reference_path) -> float:
    """The largest relative L2 difference of an Adam moment, among those not at noise level
    (biases in front of a normalisation get gradients of ~1e-8 whose sign is rounding)."""
    ours, reference = _adam_moments(path), _adam_moments(reference_path)
    assert ours.keys() == reference.keys()
    worst = 0.0
    for kind in ("_momentum", "_velocity"):
        norms = {n: np.linalg.norm(v) for n, v in reference.items() if n[1].endswith(kind)}
        largest = max(norms.values())
        for name, norm in norms.items():
            if norm > 1e-3 * largest:
                worst = max(worst, float(np.linalg.norm(ours[name] - reference[name]) / norm))
    return worst


@pytest.mark.needs_tensorflow  # compared with the reference run, trained in this process
@pytest.mark.slow  # the reference run and two worker processes training
def test_multi_worker_mirrored_strategy_on_loopback_matches_one_device(reference_run,
                                                                          tmp_path):
    """Two worker processes on 127.0.0.1 (TF_CONFIG), one CPU replica each, through
    `l2m train --multi-worker`: the same global batch of 4 as the one-device reference run."""
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    run_dir = tmp_path / "multi"
    procs = [
        _cli("--multi-worker", "--data", reference_run["faces"], *COMMON_ARGS, "--steps", "2",
             "--checkpoint-every", "1", "--run-dir", run_dir, "--json",
             env=_tf_env(TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                                "task": {"type": "worker", "index": index}})))
        for index in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=300))
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
    # stdout: the summary as JSON and nothing else (the progress bar went to stderr).
    chief, other = (json.loads(out) for out, _ in outputs)
    assert (chief["chief"], other["chief"]) == (True, False)
    assert chief["replicas"] == other["replicas"] == 2
    assert chief["last_logs"]["d_loss"] == other["last_logs"]["d_loss"]  # all-reduced
    assert len(list((run_dir / "logs").iterdir())) == 1  # only the chief writes

    # Step 1 starts from the same weights on the same global batch: its gradients (Adam's
    # moments) match the one-device run to float32 rounding (measured 4e-6 with oneDNN, 1.4e-3
    # with TF's Eigen kernels, the default on CPUs without AVX-512: the model amplifies
    # rounding, see TOLERANCE in test_train.py); a wrong data shard or loss scaling makes them
    # differ by ~1.
    # After step 2 Adam's sign steps on rounding-level gradients have moved a few weights by
    # 2 * lr (measured 1.6e-3 with oneDNN, 2.5e-2 with Eigen).
    reference = reference_run["run_dir"]
    assert _worst_moment_difference(_checkpoint(run_dir, 1), _checkpoint(reference, 1)) < 1e-2
    assert _worst_moment_difference(_checkpoint(run_dir, 2), _checkpoint(reference, 2)) < 1e-1


# Plain Keras 3 fit under MultiWorkerMirroredStrategy, without this project's workarounds
# (L2MGAN._maybe_symbolic_build, the (1,)-shaped logs of trainers/tensorflow.py).
_KERAS_MULTI_WORKER = """
import json
import tensorflow as tf
strategy = tf.distribute.MultiWorkerMirroredStrategy()
import keras, numpy as np

class Mean(keras.Model):
    def train_step(self, data):
        return {"mean": tf.reduce_mean(self(data))}

x = np.ones((8, 3), "float32")
results = {}
for case in ("xy_batch", "scalar_logs"):
    with strategy.scope():
        inputs = keras.Input((3,))
        if case == "xy_batch":  # fit on (x, y): fails while building, before any step
            model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
            model.compile("sgd", "mse")
            data = tf.data.Dataset.from_tensor_slices((x, x[:, :1])).batch(4)
        else:  # a scalar step output, as every loss and metric is
            model = Mean(inputs, keras.layers.Dense(1)(inputs))
            model.compile("sgd")
            data = tf.data.Dataset.from_tensor_slices(x).batch(4)
    try:
        model.fit(data, epochs=1, verbose=0)
        results[case] = "ok"
    except ValueError as error:
        results[case] = str(error)
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def keras_multi_worker_results():
    if current_backend() != "tensorflow":
        pytest.skip("runs in the tensorflow pass")
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    procs = [subprocess.Popen(
        [sys.executable, "-c", _KERAS_MULTI_WORKER], cwd=REPO_ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=_tf_env(TF_CONFIG=json.dumps({"cluster": {"worker": workers},
                                          "task": {"type": "worker", "index": index}})))
        for index in range(2)]
    try:
        outputs = [proc.communicate(timeout=120) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
    assert procs[0].returncode == 0, outputs[0][1][-3000:]
    return json.loads(outputs[0][0].strip().splitlines()[-1])


class KerasMultiWorkerBug(Exception):
    """The known Keras failure (any other one fails the test instead of x-failing it)."""


@pytest.mark.backend_independent  # two TensorFlow worker processes, none of this process
@pytest.mark.slow  # two worker processes, each importing TensorFlow and fitting twice
@pytest.mark.xfail(strict=True, raises=KerasMultiWorkerBug,
                   reason="Keras 3 bugs (keras-team/keras#20585, #20329); when this passes, the "
                   "workarounds in L2MGAN._maybe_symbolic_build and trainers/tensorflow.py "
                   "can go")
@pytest.mark.parametrize("case, error", [
    ("xy_batch", "with an unsupported type (<class 'tensorflow.python.distribute.values"),
    ("scalar_logs", "Invalid reduction dimension 0 for input with 0 dimensions"),
])
def test_plain_keras_fit_under_multi_worker_strategy(keras_multi_worker_results, case, error):
    result = keras_multi_worker_results[case]
    if result != "ok":
        assert error in result, f"another failure: {result[-500:]}"
        raise KerasMultiWorkerBug(result[:300])


@pytest.mark.needs_tensorflow  # other backends refuse --multi-worker before reading TF_CONFIG
def test_multi_worker_needs_tf_config(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    code, stderr = _l2m_train("--multi-worker", "--run-dir", tmp_path / "r")
    assert code == 2
    assert "--multi-worker needs TF_CONFIG" in _one_error_line(stderr)


def _l2m_train(*args):
    """`l2m train ARGS` in this process (no TensorFlow import per call): (exit code, stderr)."""
    from click.testing import CliRunner

    from cli.main import main

    result = CliRunner().invoke(main, ["train", *map(str, args)])
    assert "Traceback" not in result.output + result.stderr
    return result.exit_code, result.stderr


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, stderr[-2000:]
    return lines[0]


@pytest.mark.needs_tensorflow  # some refusals come from the backend's trainer (its devices)
@pytest.mark.parametrize("args, message", [
    (["--preset", "huge"], "'huge' is not one of 'celeba_hq_256'"),
    (["--attrs", "wings"], "wings"),
    (["--batch-size", "3", "--devices", "2"], "devices"),
    (["--resume", "/nonexistent/run"], "no training_options.json"),
    (["--precision", "fp8"], "'--precision': 'fp8' is not one of"),
    (["--data", "ONE_DOMAIN"], "1 domain folder(s)"),
])
def test_cli_bad_input_is_one_line(args, message, tmp_path):
    args = [str(_folder_dataset(tmp_path / "one", ["smiling"])) if a == "ONE_DOMAIN" else a
            for a in args]
    code, stderr = _l2m_train("--num-examples", "16", "--data-dir", tmp_path / "data",
                              "--run-dir", tmp_path / "r", *args)
    assert code == 2, stderr[-2000:]
    assert message in _one_error_line(stderr)
    assert not (tmp_path / "r").exists()  # nothing half-made


@pytest.mark.needs_tensorflow  # the reference run resumed in this process
@pytest.mark.slow  # the reference run, then a resume that traces the step again
def test_non_finite_loss_stops_naming_the_step_and_keeps_the_last_checkpoint(reference_run,
                                                                             tmp_path):
    """A real divergence: the reference run resumed with --lr 1e8 (which also shows that a
    resumed run takes a new --lr: with the checkpoint's own lr restored it would stay finite)."""
    import keras

    from keras_l2mgan.model import L2MGAN
    from keras_l2mgan.training import checkpoints

    run_dir = tmp_path / "run"
    last = REFERENCE_STEPS
    (run_dir / "checkpoints").mkdir(parents=True)
    shutil.copy(reference_run["run_dir"] / "training_options.json", run_dir)
    good = run_dir / "checkpoints" / _checkpoint(run_dir, last).name
    shutil.copy(_checkpoint(reference_run["run_dir"], last), good)
    content = good.read_bytes()

    code, stderr = _l2m_train("--resume", run_dir, "--steps", last + 2, "--lr", "1e8")
    assert code == 1, stderr[-2000:]  # a failure while running, not bad input
    error = _one_error_line(stderr)
    assert f"non-finite loss at step {last + 1} (precision float32)" in error
    assert f"last good checkpoint {good} is untouched" in error
    assert checkpoints.list_checkpoints(run_dir / "checkpoints") == [(last, good)]
    assert good.read_bytes() == content
    header = checkpoints.read_header(good)
    model = L2MGAN(header["config"])
    model.compile(jit_compile=False)
    assert checkpoints.load_checkpoint(good, model)["step"] == last
    state = _values(model.variables + model.optimizer.variables)
    assert all(np.isfinite(v).all() for v in state)
    # The lr the checkpoint was saved with: the reference run's (the failed resume rewrote
    # run_dir's options with its --lr 1e8).
    options_file = reference_run["run_dir"] / "training_options.json"
    saved_lr = json.loads(options_file.read_text())["options"]["lr"]
    assert float(keras.ops.convert_to_numpy(model.optimizer.g_optimizer.learning_rate)) == \
        pytest.approx(saved_lr)

    # The same run dir resumed with another model config is refused before anything runs.
    code, stderr = _l2m_train("--resume", run_dir, "--preset", "small_64")
    assert code == 2
    assert "the run used --preset tiny_32, not small_64" in _one_error_line(stderr)


@pytest.mark.backend_independent  # checkpoint files and a callback: the same on every backend
def test_checkpoint_refuses_a_non_finite_state(tmp_path):
    """Losses can stay finite while an overflowing gradient made a weight NaN: such a state is
    never written, so it cannot rotate a good checkpoint out."""
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN
    from keras_l2mgan.training import checkpoints

    model = L2MGAN(get_preset("tiny_32"))
    model.compile(jit_compile=False)
    first = checkpoints.save_checkpoint(tmp_path, 1, model, keep=1)
    weight = model.discriminator.trainable_variables[0]
    weight.assign(np.full(weight.shape, np.nan, "float32"))
    with pytest.raises(checkpoints.NonFiniteStateError, match=f"{weight.path} holds NaN"):
        checkpoints.save_checkpoint(tmp_path, 2, model, keep=1)
    assert checkpoints.list_checkpoints(tmp_path) == [(1, first)]
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]  # no temp file left

    # In a run, the callback stops at that step on every worker (only the chief writes).
    from keras_l2mgan.training.callbacks import RunCallback

    for write in (True, False):
        run_dir = tmp_path / f"run-{write}"
        callback = RunCallback(run_dir, start_step=4, total_steps=10, batch_size=4,
                               checkpoint_every=1, sample_every=1, sample_batch={},
                               write=write)
        callback.set_model(model)
        callback.on_train_begin()
        model.stop_training = False
        callback.on_train_batch_end(0, {"d_loss": 1.0, "g_loss": 2.0})
        assert (callback.failed_step, model.stop_training) == (5, True)
        assert callback.failure == f"non-finite weights ({weight.path} holds NaN or inf)"
        assert not run_dir.exists()
