"""Every user-facing command from the real command line on this pass's backend: a few-step
`l2m train`, `--resume`, `edit`, `export` and `eval` of that run, each a subprocess as a user
runs it, with nothing but our own lines on stderr (no TensorFlow/absl log, no warnings)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, current_backend, invoke_l2m
from PIL import Image

# Marks of library log lines and warnings that must never reach a user's stderr by default.
LIBRARY_MARKS = ("I0000", "W0000", "E0000", "absl", "oneDNN", "cuInit", "UserWarning",
                 "WARNING:", "cuda", "XLA", "Warning:")


def _start(*args, backend: str, cwd: Path | None = None) -> subprocess.Popen:
    """`python -m cli.main ARGS` in a fresh process, in the environment a user has: no log
    level set (the CLI must set its own)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", "L2M_DEBUG")}
    env["KERAS_BACKEND"] = backend
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.Popen([sys.executable, "-m", "cli.main", *map(str, args)], env=env,
                            cwd=cwd or REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def l2m_together(*commands: tuple, backend: str, cwd: Path | None = None
                 ) -> list[subprocess.CompletedProcess]:
    """Independent `l2m` commands, started at once: their imports and model builds are mostly
    single-threaded, so on a 2-core CI machine they overlap."""
    procs = [_start(*command, backend=backend, cwd=cwd) for command in commands]
    try:
        # One reader per process, so that none blocks on a full pipe while we wait on another.
        with ThreadPoolExecutor(len(procs)) as pool:
            outputs = list(pool.map(lambda proc: proc.communicate(timeout=600), procs))
        return [subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
                for proc, (out, err) in zip(procs, outputs, strict=True)]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def l2m(*args, backend: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return l2m_together(args, backend=backend, cwd=cwd)[0]


def library_lines(stderr: str) -> list[str]:
    lines = stderr.replace("\r", "\n").splitlines()
    return [line for line in lines if any(mark in line for mark in LIBRARY_MARKS)]


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert library_lines(result.stderr) == [], result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    """One 64 px run (the shipped classifier's size, for eval) of one step, resumed to two;
    then edit, export and eval of it. Each test below checks one of these commands."""
    backend = current_backend()
    root = tmp_path_factory.mktemp(f"cli_{backend}")
    run_dir, data = root / "run", root / "data"
    common = ("--preset", "tiny_32", "--img-size", "64", "--batch-size", "2", "--data-dir", data,
              "--num-examples", "8", "--sample-every", "1000")
    photo = root / "flat.png"
    Image.new("RGB", (64, 64), (150, 120, 100)).save(photo)
    results = {"run_dir": run_dir, "root": root}
    results["train"] = l2m("train", *common, "--steps", "1", "--run-dir", run_dir,
                           backend=backend)
    if results["train"].returncode == 0:
        results["resume"] = l2m("train", "--resume", run_dir, "--steps", "2", backend=backend)
        # Edit, export and eval only read the run: they run side by side.
        results["edit"], results["export"], results["eval"] = l2m_together(
            ("edit", photo, "--to", "smiling", "--model", run_dir, "--detector", "center",
             "-o", root / "edited.png"),
            ("export", run_dir, "--name", "faces", "--output-dir", root / "saved_models"),
            ("eval", run_dir, "--limit", "2", "--num-test", "4", "--alpha-images", "1",
             "--batch-size", "4", "--features", "classifier", "--data-dir", data,
             "-o", root / "eval"), backend=backend)
        # Last, as it changes the run's bundle: new blend thresholds with no steps left.
        results["thresholds"] = l2m("train", "--resume", run_dir, "--steps", "2",
                                    "--blend-grey-levels", "8", "20", backend=backend)
    return results


@pytest.mark.slow  # the run fixture: CLI subprocesses train, resume, edit, export, eval
def test_train_prints_the_summary_without_nan_or_library_logs(run, backend):
    result = ok(run["train"])
    assert result.stdout.startswith(f"trained {run['run_dir']} on {backend} (1 device(s)): "
                                    "steps 0 -> 1"), result.stdout
    assert f"l2m edit PHOTO --to smiling --model {run['run_dir']}" in result.stdout
    assert "nan" not in result.stderr.lower(), result.stderr[-2000:]
    assert (run["run_dir"] / "model").is_dir()


@pytest.mark.slow  # the run fixture: CLI subprocesses train, resume, edit, export, eval
def test_resume_continues_the_run(run, backend):
    result = ok(run["resume"])
    assert f"on {backend} (1 device(s)): steps 1 -> 2" in result.stdout, result.stdout
    assert (run["run_dir"] / "checkpoints" / "ckpt-00000002.npz").is_file()


@pytest.mark.slow  # the run fixture: CLI subprocesses train, resume, edit, export, eval
def test_resume_with_no_steps_left_sets_the_blend_thresholds(run):
    result = ok(run["thresholds"])
    assert result.stdout.strip().endswith("nothing trained; "
                                          f"{run['run_dir']}/model now edits with "
                                          "--blend-grey-levels 8 20"), result.stdout
    config = json.loads((run["run_dir"] / "model" / "config.json").read_text())
    assert config["blend_grey_levels"] == [8.0, 20.0] and config["blend_changes"] is True
    assert not (run["run_dir"] / "checkpoints" / "ckpt-00000003.npz").exists()
    options = json.loads((run["run_dir"] / "training_options.json").read_text())["options"]
    assert options["blend_grey_levels"] == [8.0, 20.0]  # a later resume keeps them


@pytest.mark.slow  # the run fixture: CLI subprocesses train, resume, edit, export, eval
def test_edit_with_the_run(run):
    ok(run["edit"])
    edited = np.asarray(Image.open(run["root"] / "edited.png"))
    assert edited.shape == (64, 64, 3)


@pytest.mark.slow  # the run fixture: CLI subprocesses train, resume, edit, export, eval
def test_export_of_a_run_trained_on_this_backend(run):
    ok(run["export"])
    assert (run["root"] / "saved_models" / "faces" / "1" / "saved_model.pb").is_file()


@pytest.mark.slow  # the run fixture: CLI subprocesses train, resume, edit, export, eval
def test_eval_with_limit(run):
    result = ok(run["eval"])
    assert "| **mean** |" in result.stdout, result.stdout[-2000:]
    assert (run["root"] / "eval" / "eval.json").is_file()


def test_devices_on_torch_one_works_more_is_one_error_line(backend, tmp_path):
    if backend != "torch":
        pytest.skip("the torch backend's device rule")
    from keras_l2mgan.training.run import resolve_devices

    assert len(resolve_devices("1", "torch")) == 1
    assert len(resolve_devices("all", "torch")) == 1
    result = l2m("train", "--devices", "2", "--preset", "tiny_32", "--steps", "1",
                 "--run-dir", tmp_path / "run", "--data-dir", tmp_path / "data",
                 "--num-examples", "8", backend=backend)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors == ["Error: --devices 2: the torch backend trains on one device; pass "
                      "--devices 1, or --backend tensorflow or jax for more"], result.stderr
    assert "Traceback" not in result.stderr


# Everything `l2m info`, `l2m edit` and `l2m data stats` may write to stderr: their own notes.
OUR_STDERR = ("model: ", "face path: ", "note: ", "generating synthetic faces ")


# The run fixture checks train, edit, export and eval on every backend; these three commands'
# stderr is checked once, in the tensorflow pass's subprocesses.
@pytest.mark.backend_independent
@pytest.mark.slow  # three CLI subprocesses, each importing TensorFlow
def test_info_edit_and_data_stats_print_only_our_lines(backend, tmp_path):
    photo = tmp_path / "flat.png"
    Image.new("RGB", (80, 80), (150, 120, 100)).save(photo)
    commands = [
        ("info",),
        # The shipped model (the folder holds no saved_models/), a flat photo: no face to find.
        ("edit", photo, "--to", "smiling", "--detector", "center", "-o", tmp_path / "out.png"),
        # A new tiny dataset: generating it must print our one line, not TFDS' lines.
        ("data", "stats", "--img-size", "32", "--num-examples", "8", "--data-dir",
         tmp_path / "data"),
    ]
    results = l2m_together(*commands, backend=backend, cwd=tmp_path)
    for command, result in zip(commands, results, strict=True):
        ok(result)
        strange = [line for line in result.stderr.splitlines()
                   if line.strip() and not line.startswith(OUR_STDERR)]
        assert strange == [], (command, result.stderr[-2000:])
    assert result.stdout.startswith("dataset synthetic  img_size 32\n"), result.stdout


@pytest.mark.backend_independent  # --dry-run: parsing only
@pytest.mark.parametrize(("flag", "saved"), [(None, None), ("--jit", True), ("--no-jit", False)])
def test_jit_defaults_to_auto_and_the_flags_force_it(flag, saved, tmp_path):
    result = invoke_l2m("train", "--dry-run", "--run-dir", tmp_path / "run",
                        *([flag] if flag else []))
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["jit"] is saved


@pytest.mark.backend_independent  # names each backend itself; TensorFlow as a library
def test_auto_jit_is_xla_on_tensorflow_gpus_always_on_jax_never_on_torch():
    import tensorflow as tf

    from keras_l2mgan.training.run import use_jit

    assert use_jit(None, "tensorflow") is bool(tf.config.list_logical_devices("GPU"))
    assert (use_jit(None, "jax"), use_jit(None, "torch")) == (True, False)
    assert (use_jit(True, "tensorflow"), use_jit(False, "jax")) == (True, False)
