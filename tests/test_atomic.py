"""atomic_directory: a directory is replaced whole or not at all."""

import pytest

from keras_l2mgan.atomic import atomic_directory

pytestmark = pytest.mark.tensorflow_only  # plain Python


def test_success_replaces_the_directory_and_leaves_no_temp(tmp_path):
    target = tmp_path / "model"
    for version in ("old", "new"):
        with atomic_directory(target) as tmp:
            assert not target.joinpath("a.txt").exists() or version == "new"
            (tmp / "a.txt").write_text(version)
    assert (target / "a.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_failure_keeps_the_old_directory_and_removes_the_temp(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("good")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("half")
        raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
