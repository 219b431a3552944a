"""The one image grid: training samples, eval grids, `l2m data preview` and `l2m edit` strips.

Tiles are pasted on a white canvas, left to right and top to bottom, each column as wide as
its widest tile and every row as tall as the tallest tile (so a row with fewer tiles, or none,
keeps its place). Optional: a name left of each row, a title above each column, a gap after
every tile, and small tiles enlarged pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

Tile = np.ndarray | Image.Image
TITLE_HEIGHT = 16  # the header row's height when columns have titles


def _label_width(labels: Sequence[str] | None) -> int:
    return 8 + 7 * max(len(label) for label in labels) if labels else 0


def image_grid(rows: Sequence[Sequence[Tile]], *, labels: Sequence[str] | None = None,
               titles: Sequence[str] | None = None, label_width: int | None = None,
               scale: int = 1, gap: int = 0) -> Image.Image:
    """An RGB image of `rows` of tiles (uint8 arrays or PIL images).

    `labels` name the rows (drawn in a margin `label_width` wide: by default wide enough for
    the longest), `titles` the columns; `scale` enlarges every tile (nearest neighbour) and
    `gap` leaves white pixels after each tile, right and below.
    """
    tiles = [[_tile(image, scale) for image in row] for row in rows]
    if labels is not None and len(labels) != len(tiles):
        raise ValueError(f"{len(labels)} labels for {len(tiles)} rows")
    columns = max([len(row) for row in tiles] + [len(titles or ())])
    widest = max((tile.width for row in tiles for tile in row), default=0)
    widths = [max((row[c].width for row in tiles if c < len(row)), default=widest)
              for c in range(columns)]
    height = max((tile.height for row in tiles for tile in row), default=0)
    lefts = [0] * columns
    left = _label_width(labels) if label_width is None else label_width
    for c, width in enumerate(widths):
        lefts[c], left = left, left + width + gap
    header = TITLE_HEIGHT if titles else 0
    canvas = Image.new("RGB", (left, header + len(tiles) * (height + gap)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(titles or ()):
        draw.text((lefts[c] + 2, 2), title, fill=(0, 0, 0))
    for r, row in enumerate(tiles):
        top = header + r * (height + gap)
        if labels is not None:
            # PIL's built-in bitmap font has no arrow glyph.
            draw.text((4, top + height // 2 - 6), labels[r].replace("→", "->"), fill=(0, 0, 0))
        for c, tile in enumerate(row):
            canvas.paste(tile, (lefts[c], top))
    return canvas


def _tile(image: Tile, scale: int) -> Image.Image:
    tile = image if isinstance(image, Image.Image) else Image.fromarray(
        np.asarray(image, np.uint8))
    if scale != 1:
        tile = tile.resize((tile.width * scale, tile.height * scale), Image.Resampling.NEAREST)
    return tile
