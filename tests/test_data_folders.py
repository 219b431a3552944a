"""Folder datasets the tests generate: domain folders with odd and corrupt files, and a
CelebA-format attribute file (the CelebA-HQ layout)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.backend_independent

SIZE = 32


def _image(seed: int, size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8))


def _save_variants(folder: Path, seed: int) -> int:
    """One image per mode/format the pipeline must convert; returns how many."""
    folder.mkdir(parents=True, exist_ok=True)
    base = _image(seed)
    base.save(folder / "rgb.jpg")
    base.convert("L").save(folder / "gray.png")
    base.convert("RGBA").save(folder / "rgba.png")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    base.convert("P").save(folder / "palette.png")
    Image.fromarray(np.asarray(base)[..., 0].astype(np.uint16) * 257).save(folder / "g16.png")
    base.save(folder / "rgb.tiff")  # TF cannot read TIFF: decoded through PIL
    base.resize((64, 48)).save(folder / "wide.webp")
    return 8


def _save_corrupt(folder: Path) -> int:
    (folder / "notes.txt").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    png = (folder / "rgb_copy.png")
    _image(99).save(png)
    png.write_bytes(png.read_bytes()[:200])  # truncated: fails the PNG checksum check
    (folder / "text.jpg").write_text("hello")
    return 4


@pytest.fixture(scope="module")
def domain_tree(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("afhq")
    for split in ("train", "val"):
        for i, domain in enumerate(("cat", "dog")):
            _save_variants(root / split / domain, seed=i)
        _save_corrupt(root / split / "cat")
    return root


def test_domain_folders_convert_and_skip(domain_tree):
    from keras_l2mgan.data import build_dataset

    info = build_dataset(str(domain_tree), img_size=SIZE, batch_size=4, augment=True)
    assert info.domain_names == ["cat", "dog"]
    assert info.images_per_domain == {"cat": 8, "dog": 8}
    assert len(info.skipped_files) == 4
    assert {Path(p).name for p in info.skipped_files} == {
        "notes.txt", "empty.png", "rgb_copy.png", "text.jpg"}
    # Several endless epochs go through every odd format without stopping.
    for step, batch in enumerate(info.dataset.as_numpy_iterator()):
        assert batch["images"].shape == (4, SIZE, SIZE, 3)
        assert -1 <= batch["images"].min() and batch["images"].max() <= 1
        if step == 12:
            break
    one_pass = build_dataset(str(domain_tree), img_size=SIZE, batch_size=2, split="val",
                             augment=False, repeat=False)
    assert sum(len(b["labels"]) for b in one_pass.dataset.as_numpy_iterator()) == 16


def test_decoded_pixels_match_pil(domain_tree):
    """Grayscale, 16-bit and TIFF images arrive as the RGB picture PIL sees."""
    from keras_l2mgan.data.pipeline import _decode_file, _prepare

    folder = domain_tree / "train" / "dog"
    for name, needs_pil in (("gray.png", False), ("g16.png", False), ("rgb.tiff", True)):
        image = _decode_file({"path": str(folder / name), "needs_pil": needs_pil}).numpy()
        expected = np.asarray(Image.open(folder / name).convert("RGB"))
        if name == "g16.png":
            expected = np.repeat((np.asarray(Image.open(folder / name)) >> 8)[..., None], 3, -1)
        assert np.abs(image.astype(int) - expected).max() <= 1, name
    webp = _decode_file({"path": str(folder / "wide.webp"), "needs_pil": False})
    prepared = _prepare(webp, SIZE, False, [0, 0])
    assert prepared.shape == (SIZE, SIZE, 3)


def test_a_file_that_fails_to_decode_mid_epoch_is_dropped(tmp_path):
    """A JPEG cut short passes the header check but fails in TF: the stream goes on."""
    from keras_l2mgan.data import build_dataset

    for domain in ("a", "b"):
        folder = tmp_path / "train" / domain
        folder.mkdir(parents=True)
        for i in range(3):
            _image(i).save(folder / f"{i}.jpg")
    broken = tmp_path / "train" / "a" / "0.jpg"
    broken.write_bytes(broken.read_bytes()[:400])
    info = build_dataset(str(tmp_path), img_size=SIZE, batch_size=2, augment=False,
                         repeat=False)
    seen = sum(len(b["labels"]) for b in info.dataset.as_numpy_iterator())
    assert seen == 4  # 5 good images, whole batches of 2


def test_folder_errors(tmp_path, domain_tree):
    from keras_l2mgan.data import build_dataset

    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_dataset(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="is empty"):
        build_dataset(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match="no split 'nosuch'.*'train', 'val'"):
        build_dataset(str(domain_tree), split="nosuch")
    lonely = tmp_path / "lonely" / "train"
    (lonely / "cat").mkdir(parents=True)
    (lonely / "dog").mkdir()
    _image(0).save(lonely / "cat" / "0.png")
    (lonely / "dog" / "broken.jpg").write_text("x")
    with pytest.raises(ValueError, match="domain 'dog' has no readable images"):
        build_dataset(str(tmp_path / "lonely"))


def _celeba_hq_tree(root: Path, count: int = 40) -> Path:
    """CelebAMask-HQ layout: CelebA-HQ-img/<i>.jpg + CelebAMask-HQ-attribute-anno.txt."""
    from keras_l2mgan.data.domains import CELEBA_ATTRIBUTES

    images = root / "CelebAMask-HQ" / "CelebA-HQ-img"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    values = rng.choice([-1, 1], size=(count, len(CELEBA_ATTRIBUTES)))
    lines = [str(count), " ".join(CELEBA_ATTRIBUTES)]
    for i in range(count):
        _image(i, (48, 48)).save(images / f"{i}.jpg")
        lines.append(f"{i}.jpg " + " ".join(str(v) for v in values[i]))
    (root / "CelebAMask-HQ" / "CelebAMask-HQ-attribute-anno.txt").write_text("\n".join(lines))
    return values


def test_celeba_hq_manual_path_and_attribute_domains(tmp_path):
    from keras_l2mgan.data import build_dataset, folders
    from keras_l2mgan.data.domains import CELEBA_ATTRIBUTES

    values = _celeba_hq_tree(tmp_path)
    info = build_dataset("celeba_hq", attrs="smiling,MALE", img_size=SIZE, batch_size=2,
                         data_dir=str(tmp_path), augment=False, repeat=False, split="train")
    test = build_dataset("celeba_hq", attrs="smiling", img_size=SIZE, batch_size=1,
                         data_dir=str(tmp_path), augment=False, repeat=False, split="test")
    assert info.domain_names == ["not_smiling+not_male", "not_smiling+male",
                                 "smiling+not_male", "smiling+male"]
    assert info.num_examples + test.num_examples == len(values)
    assert 0 < test.num_examples < 15
    # Labels follow the attribute file (train split: the files not hashed into test).
    test_files = folders.load_attribute_folder(tmp_path / "CelebAMask-HQ", "smiling", "test")
    in_test = {Path(p).name for p in test_files.paths}
    assert len(in_test) == test.num_examples
    train_rows = [i for i in range(len(values)) if f"{i}.jpg" not in in_test]
    smiling, male = CELEBA_ATTRIBUTES.index("Smiling"), CELEBA_ATTRIBUTES.index("Male")
    expected = (values[train_rows, smiling] > 0) * 2 + (values[train_rows, male] > 0)
    assert list(info.images_per_domain.values()) == np.bincount(expected, minlength=4).tolist()
    # A folder path with the attribute file works the same way (custom datasets).
    same = build_dataset(str(tmp_path / "CelebAMask-HQ"), attrs="smiling,male", img_size=SIZE,
                         repeat=False, augment=False)
    assert same.images_per_domain == info.images_per_domain
    with pytest.raises(ValueError, match="unknown attribute 'smile'.*Smiling"):
        build_dataset("celeba_hq", attrs="smile", data_dir=str(tmp_path))


def test_celeba_hq_missing_files_message(tmp_path):
    from keras_l2mgan.data import build_dataset

    with pytest.raises(FileNotFoundError) as error:
        build_dataset("celeba_hq", data_dir=str(tmp_path))
    message = str(error.value)
    assert "CelebA-HQ-img/" in message and "CelebAMask-HQ-attribute-anno.txt" in message
    assert str(tmp_path / "CelebAMask-HQ") in message
    root = tmp_path / "CelebAMask-HQ"
    root.mkdir()
    (root / "CelebAMask-HQ-attribute-anno.txt").write_text("1\nSmiling Male\n0.jpg 1 -1\n")
    with pytest.raises(FileNotFoundError, match="put 0.jpg"):
        build_dataset("celeba_hq", data_dir=str(tmp_path))
