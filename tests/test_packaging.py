"""The wheel: keras_l2mgan with its CLI as keras_l2mgan.cli (no top-level `cli`), the shipped
models and classifier as package data, one version, an SPDX licence; installed outside the
checkout, `l2m edit` and `l2m eval` run from an empty folder with what it ships."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser

import pytest
from conftest import REPO_ROOT

import keras_l2mgan

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pip's copy of the same parser
    from pip._vendor import tomli as tomllib

pytestmark = pytest.mark.backend_independent  # packaging does not depend on the backend

PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())


def test_every_package_and_shipped_folder_is_listed():
    """pyproject lists packages by hand (cli/ is mapped into keras_l2mgan): a new subpackage or
    shipped model that is not listed would be missing from the wheel."""
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    on_disk = {".".join(path.parent.relative_to(REPO_ROOT).parts)
               for path in (REPO_ROOT / "keras_l2mgan").rglob("__init__.py")}
    on_disk |= {"keras_l2mgan.cli", "keras_l2mgan.serving.web"}  # web: the page's data
    on_disk |= {f"keras_l2mgan.shipped_models.{p.name}"
                for p in (REPO_ROOT / "saved_models").iterdir() if p.is_dir()}
    on_disk |= {f"keras_l2mgan.shipped_classifiers.{p.name}"
                for p in (REPO_ROOT / "classifiers").iterdir() if p.is_dir()}
    on_disk |= {"keras_l2mgan.shipped_models", "keras_l2mgan.shipped_classifiers"}
    assert listed == on_disk
    assert PYPROJECT["project"]["scripts"] == {"l2m": "keras_l2mgan.cli.main:main"}
    assert PYPROJECT["project"]["dynamic"] == ["version"]  # keras_l2mgan.__version__ only


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    # Built from a copy: setuptools writes build/ and *.egg-info beside the sources, and a stale
    # build/ of the checkout could slip old files into the wheel.
    source = out / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("keras_l2mgan", "cli", "saved_models", "classifiers"):
        shutil.copytree(REPO_ROOT / name, source / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO_ROOT / name, source / name)
    # No build isolation: offline, with this environment's setuptools. -v shows the backend's
    # warnings (a deprecated licence form would be one).
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps",
                             "--no-build-isolation", "-w", str(out), str(source)],
                            capture_output=True, text=True, timeout=300, cwd=out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    (path,) = out.glob("keras_l2mgan-*.whl")
    return path, log


def test_the_wheel_holds_the_package_cli_and_shipped_files(wheel):
    path, log = wheel
    assert "SetuptoolsDeprecationWarning" not in log and "BuildBackendWarning" not in log
    names = set(zipfile.ZipFile(path).namelist())
    assert not [n for n in names if n.startswith("cli/")]  # no top-level `cli` package
    assert {"keras_l2mgan/cli/main.py", "keras_l2mgan/cli/common.py",
            "keras_l2mgan/shipped.py"} <= names
    shipped = {str(p.relative_to(REPO_ROOT / "saved_models"))
               for p in (REPO_ROOT / "saved_models").rglob("*") if p.is_file()}
    assert {f"keras_l2mgan/shipped_models/{n}" for n in shipped} <= names
    for name in ("smiling", "smiling_male"):
        for part in ("variables/variables.index", "variables/variables.data-00000-of-00001",
                     "assets.extra/config.json", "assets.extra/tf_serving_warmup_requests",
                     "assets.extra/training.json"):
            assert f"keras_l2mgan/shipped_models/{name}/1/{part}" in names
    assert {"keras_l2mgan/shipped_classifiers/synthetic_faces_64px/classifier.json",
            "keras_l2mgan/shipped_classifiers/synthetic_faces_64px/classifier.keras"} <= names
    info = zipfile.ZipFile(path)
    dist = f"keras_l2mgan-{keras_l2mgan.__version__}.dist-info"
    metadata = Parser().parsestr(info.read(f"{dist}/METADATA").decode())
    assert metadata["Version"] == keras_l2mgan.__version__
    assert metadata["License-Expression"] == "Apache-2.0"
    entry_points = info.read(f"{dist}/entry_points.txt").decode()
    assert "l2m = keras_l2mgan.cli.main:main" in entry_points
    assert info.read(f"{dist}/top_level.txt").decode().split() == ["keras_l2mgan"]


# The console script's code, run from an empty folder with the installed copy first on the path
# (the dependencies come from this environment).
_RUN = """
import sys
from keras_l2mgan.cli.main import main
for args in (sys.argv[1:8], sys.argv[8:]):  # edit (7 args), then eval
    try:
        main(args)
    except SystemExit as exit:
        if exit.code:
            raise
"""


def test_installed_wheel_edits_and_evaluates_with_what_it_ships(wheel, tmp_path):
    from PIL import Image

    target, empty = tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index",
                             "--target", str(target), str(wheel[0])],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (target / "cli").exists()
    Image.new("RGB", (50, 40), (120, 90, 80)).save(empty / "p.png")
    env = {**os.environ, "PYTHONPATH": str(target), "KERAS_BACKEND": "tensorflow",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = ["edit", "p.png", "--to", "smiling", "--crop-only", "--detector", "center",
            "eval", str(target / "keras_l2mgan" / "shipped_models" / "smiling"), "--num-test", "4",
            "--limit", "1", "--alpha-images", "1", "-o", "report"]
    result = subprocess.run([sys.executable, "-c", _RUN, *args], cwd=empty, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    package = target / "keras_l2mgan"
    assert f"model: SavedModel {package / 'shipped_models' / 'smiling' / '1'}" in result.stderr
    assert f"classifier: {package / 'shipped_classifiers' / 'synthetic_faces_64px'}" \
        in result.stderr
    assert Image.open(empty / "p_smiling.png").size == (64, 64)
    assert (empty / "report" / "eval.md").read_text().strip() in result.stdout
