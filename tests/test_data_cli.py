"""`l2m data preview` and `l2m data stats`."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

pytestmark = pytest.mark.backend_independent


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory) -> str:
    from keras_l2mgan.data.pipeline import prepare_synthetic

    path = str(tmp_path_factory.mktemp("tfds"))
    prepare_synthetic(32, path, num_examples=32)
    return path


def _run(*args: str):
    from cli.main import main

    return CliRunner().invoke(main, ["data", *args])


def test_preview_writes_labelled_grid(data_dir, tmp_path):
    out = tmp_path / "grid.png"
    result = _run("preview", "--dataset", "synthetic", "--attrs", "smiling,male", "--img-size",
                  "32", "--num-examples", "32", "--data-dir", data_dir, "-n", "3", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "4 domains x 3 images" in result.output
    grid = np.asarray(Image.open(out))
    cell = 32 * 3  # 32 px shown at 3x
    assert grid.shape[0] == 4 * (cell + 2)
    assert grid[:, :40].min() < 50  # the domain names are written on the left
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]  # no temporary left behind


def test_stats_prints_domains_per_split(data_dir):
    result = _run("stats", "--attrs", "Young", "--img-size", "32", "--num-examples", "32",
                  "--data-dir", data_dir)
    assert result.exit_code == 0, result.output
    assert "train: 32 images in 2 domains" in result.output
    assert "test: 32 images in 2 domains" in result.output
    assert "not_young" in result.output


def test_bad_input_is_one_line_error(data_dir, tmp_path):
    result = _run("stats", "--attrs", "wings", "--img-size", "32", "--num-examples", "32",
                  "--data-dir", data_dir)
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1].startswith("Error: unknown attribute 'wings'")
    result = _run("preview", "--dataset", str(tmp_path / "nowhere"), "-o",
                  str(tmp_path / "x.png"))
    assert result.exit_code == 2 and "does not exist" in result.output
