"""`l2m --help`, `--version`, `info` and backend selection, run as real subprocesses."""

import subprocess
import sys

import pytest

from keras_l2mgan import __version__

pytestmark = pytest.mark.backend_independent  # each test picks its backends itself


def l2m(*args, env=None):
    import os

    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True,
                          text=True, env=full_env, timeout=300)


def test_help_and_version():
    result = l2m("--help")
    assert result.returncode == 0 and "info" in result.stdout and "--backend" in result.stdout
    result = l2m("--version")
    assert result.returncode == 0 and __version__ in result.stdout


@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_backend_option_wins_over_environment(backend):
    result = l2m("--backend", backend, "info", "--no-counts", env={"KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr
    assert f"backend: {backend}" in result.stdout
    assert "small_64" in result.stdout and "devices: cpu" in result.stdout.lower()


def test_info_counts_parameters_of_presets():
    result = l2m("info", env={"KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr
    assert "celeba_hq_256" in result.stdout and "G 43,467,395" in result.stdout


def test_unknown_backend_is_a_one_line_error():
    result = l2m("--backend", "mxnet", "info")
    assert result.returncode == 2
    assert "'mxnet' is not one of 'tensorflow', 'jax', 'torch'" in result.stderr
    assert "Traceback" not in result.stderr
