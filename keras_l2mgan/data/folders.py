"""Image folders: one folder per domain (AFHQ / StarGAN v2 layout) or images plus a CelebA-format
attribute file. Pure Python + PIL: this module lists and checks files, the pipeline reads them.

    root/train/<domain>/*.jpg      root/val/<domain>/*.jpg          (folder per domain)
    root/<attribute file>.txt      root/[<image folder>/]<file>     (CelebA-format attributes)

Files are checked once when the dataset is built (header read, PNG checksums): unreadable or
non-image files are skipped and counted, so an epoch never stops on one.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from keras_l2mgan.data import domains
from keras_l2mgan.photo import MAX_PIXELS

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm"}
# Formats tf.io.decode_image reads itself; the rest go through PIL.
TF_FORMATS = {"JPEG", "PNG", "GIF", "BMP", "WEBP"}
ATTRIBUTE_FILES = ("list_attr_celeba.txt", "CelebAMask-HQ-attribute-anno.txt", "attributes.txt")
IMAGE_SUBFOLDERS = ("", "images", "CelebA-HQ-img", "img_align_celeba", "img")
PARTITION_FILE = "list_eval_partition.txt"
SPLIT_ALIASES = {"validation": "val", "valid": "val", "eval": "val"}


@dataclasses.dataclass
class FileList:
    """Checked files of one split: paths, domain labels, whether PIL must decode each."""

    domain_names: list[str]
    paths: list[str]
    labels: np.ndarray
    needs_pil: np.ndarray
    skipped: list[str] = dataclasses.field(default_factory=list)
    attrs: list[str] = dataclasses.field(default_factory=list)  # attribute-file datasets only

    def per_domain(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.domain_names))
        return dict(zip(self.domain_names, (int(c) for c in counts), strict=True))

    def limit(self, num_examples: int | None) -> FileList:
        """At most num_examples files, the same share from every domain (first files first)."""
        if num_examples is None or num_examples >= len(self.paths):
            return self
        per_domain = max(1, num_examples // len(self.domain_names))
        keep = np.concatenate(
            [np.flatnonzero(self.labels == d)[:per_domain] for d in range(len(self.domain_names))]
        )
        keep.sort()
        return dataclasses.replace(self, paths=[self.paths[i] for i in keep],
                                   labels=self.labels[keep], needs_pil=self.needs_pil[keep])


def check_image(path: Path) -> bool | None:
    """None if PIL cannot read the file as an image, else whether PIL (not TF) must decode it."""
    try:
        with Image.open(path) as image:
            image_format = image.format
            if image.width * image.height > MAX_PIXELS:  # the limit `l2m edit` applies too
                return None
            image.verify()  # PNG: checks every chunk's CRC; JPEG: markers only
    except Exception:  # noqa: BLE001  (any failure means: not a usable image)
        return None
    return image_format not in TF_FORMATS


def _check_files(candidates: Sequence[tuple[Path, int]], domain_names: list[str]) -> FileList:
    paths, labels, needs_pil, skipped = [], [], [], []
    for path, label in candidates:
        result = check_image(path) if path.suffix.lower() in IMAGE_SUFFIXES else None
        if result is None:
            skipped.append(str(path))
            continue
        paths.append(str(path))
        labels.append(label)
        needs_pil.append(result)
    return FileList(domain_names, paths, np.asarray(labels, np.int32).reshape(-1),
                    np.asarray(needs_pil, bool).reshape(-1), skipped)


def _require_dir(root: Path) -> None:
    if not root.exists():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    if not root.is_dir():
        raise NotADirectoryError(f"dataset path {root} is not a folder")
    if not any(root.iterdir()):
        raise ValueError(f"dataset folder {root} is empty")


def find_attribute_file(root: Path) -> Path | None:
    for name in ATTRIBUTE_FILES:
        if (root / name).is_file():
            return root / name
    return None


def folder_splits(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_domain_folders(root: str | Path, split: str) -> FileList:
    """root/<split>/<domain>/* -> FileList with domains in sorted folder-name order."""
    root = Path(root).expanduser()
    _require_dir(root)
    split = SPLIT_ALIASES.get(split, split)
    splits = folder_splits(root)
    if split == "test" and "test" not in splits and "val" in splits:
        split = "val"
    if split not in splits:
        raise ValueError(
            f"no split {split!r} in {root}: found {splits or 'no sub-folders'}; a folder dataset "
            "needs root/train/<domain>/* and root/val/<domain>/* (or an attribute file such as "
            "list_attr_celeba.txt next to the images)"
        )
    split_dir = root / split
    domain_dirs = [p for p in sorted(split_dir.iterdir()) if p.is_dir()
                   and not p.name.startswith(".")]
    if len(domain_dirs) < 2:
        raise ValueError(
            f"{split_dir} has {len(domain_dirs)} domain folder(s); put each domain's images in "
            f"its own folder: {split_dir}/<domain>/*.jpg, at least 2 domains"
        )
    names = [p.name for p in domain_dirs]
    candidates = [
        (f, label)
        for label, d in enumerate(domain_dirs)
        for f in sorted(d.rglob("*"))
        if f.is_file()
    ]
    files = _check_files(candidates, names)
    for name, count in files.per_domain().items():
        if count == 0:
            raise ValueError(f"domain {name!r} has no readable images in {split_dir / name}")
    return files


def read_attribute_file(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """CelebA format: [a count line,] attribute names, then `file v1 v2 ...` (1/-1 or 1/0)."""
    lines = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if len(lines) < 3:
        raise ValueError(
            f"{path} is not a CelebA-format attribute file: expected a count line, a line of "
            "attribute names and one `filename v1 v2 ...` line per image"
        )
    has_count = len(lines[0]) == 1 and lines[0][0].isdigit()  # the count line is optional
    header, rows = (lines[1], lines[2:]) if has_count else (lines[0], lines[1:])
    files, values = [], []
    for number, row in enumerate(rows, start=3 if has_count else 2):
        if len(row) != len(header) + 1:
            raise ValueError(
                f"{path} line {number}: {len(row) - 1} values for {len(header)} attributes"
            )
        files.append(row[0])
        values.append([int(v) for v in row[1:]])
    return header, files, np.asarray(values, np.int32)


def _partition(root: Path, files: list[str]) -> np.ndarray:
    """Split of each file: CelebA's list_eval_partition.txt when present (0 train, 1 val,
    2 test), else a stable hash of the file name (one in ten is test)."""
    partition_file = root / PARTITION_FILE
    if partition_file.is_file():
        table = dict(line.split()[:2] for line in partition_file.read_text().splitlines()
                     if line.strip())
        return np.array([{"0": "train", "1": "val", "2": "test"}.get(table.get(f, ""), "none")
                         for f in files])
    return np.array(["test" if zlib.crc32(f.encode()) % 10 == 0 else "train" for f in files])


def load_attribute_folder(
    root: str | Path, attrs: str | Sequence[str], split: str, attribute_file: Path | None = None
) -> FileList:
    """Images listed in a CelebA-format attribute file -> FileList with attribute domains."""
    root = Path(root).expanduser()
    _require_dir(root)
    attribute_file = attribute_file or find_attribute_file(root)
    if attribute_file is None:
        raise FileNotFoundError(
            f"no attribute file in {root}: expected one of {', '.join(ATTRIBUTE_FILES)}"
        )
    header, files, values = read_attribute_file(attribute_file)
    chosen = domains.parse_attrs(attrs, header)
    columns = [header.index(a) for a in chosen]
    labels = domains.labels_from_attributes(values[:, columns])
    image_dir = next(
        (root / sub for sub in IMAGE_SUBFOLDERS if (root / sub / files[0]).is_file()), None
    )
    if image_dir is None:
        raise FileNotFoundError(
            f"images of {attribute_file.name} not found: put {files[0]} (and the rest) in {root}/ "
            f"or in one of {', '.join(s for s in IMAGE_SUBFOLDERS if s)}/ under it"
        )
    parts = _partition(root, files)
    split = SPLIT_ALIASES.get(split, split)
    available = sorted(set(parts.tolist()) - {"none"})
    if split == "val" and "val" not in available and "test" in available:
        split = "test"
    if split not in available:
        raise ValueError(f"no split {split!r} for {attribute_file}: available {available}")
    rows = np.flatnonzero(parts == split)
    candidates = [(image_dir / files[i], int(labels[i])) for i in rows]
    found = [(p, label) for p, label in candidates if p.is_file()]
    missing = [str(p) for p, _ in candidates if not p.is_file()]
    result = _check_files(found, domains.domain_names(chosen))
    result.skipped = missing + result.skipped
    result.attrs = chosen
    for name, count in result.per_domain().items():
        if count == 0:
            raise ValueError(
                f"domain {name!r} has no images in split {split!r} of {attribute_file}; "
                "choose other attributes"
            )
    return result
