"""Procedural faces: a scene of flat-coloured shapes drawn on a supersampled canvas.

A face is a flat float vector of named parameters (``PARAM_NAMES``): six binary attributes
named as in CelebA plus nuisance factors an edit must keep. ``render`` turns it into a
uint8 image; ``attribute_mask`` gives the pixels that can change when one attribute is
flipped, so the ground-truth edit of any face is ``render(flip(params, attr))``.

Every shape is computed in head coordinates (face half-width 1, eye line at y 0, y down)
and mapped through one affine head transform (position, scale, small rotation), then drawn
with PIL on a canvas ``supersample`` times larger and box-downscaled: anti-aliased for free.
Lighting and the background gradient depend on nuisance parameters only, so flipping an
attribute changes exactly the shapes that attribute draws.

Only numpy and PIL: importing this module does not import TensorFlow or Keras.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
from PIL import Image, ImageDraw

ATTRIBUTES: tuple[str, ...] = ("Smiling", "Male", "Young", "Eyeglasses", "Bangs", "Blond_Hair")

# Nuisance factors and their sampling ranges (uniform).
NUISANCE_RANGES: dict[str, tuple[float, float]] = {
    "skin_tone": (0.0, 1.0),
    "face_width": (0.9, 1.06),
    "face_length": (0.92, 1.08),
    "head_x": (0.45, 0.55),
    "head_y": (0.45, 0.52),
    "head_scale": (0.18, 0.215),
    "head_angle": (-8.0, 8.0),
    "eye_sep": (0.37, 0.44),
    "eye_width": (0.17, 0.21),
    "eye_height": (0.085, 0.115),
    "iris_color": (0.0, 1.0),
    "brow_offset": (-0.04, 0.04),
    "nose_length": (0.9, 1.1),
    "mouth_width": (0.31, 0.37),
    "hair_shade": (0.0, 1.0),
    "hair_volume": (1.05, 1.16),
    "hairline": (-0.95, -0.78),
    "bangs_style": (0.0, 1.0),
    "beard_type": (0.0, 1.0),
    "grey_amount": (0.6, 0.85),
    "glasses_shape": (0.0, 1.0),
    "glasses_color": (0.0, 1.0),
    "shirt_r": (0.1, 0.9),
    "shirt_g": (0.1, 0.9),
    "shirt_b": (0.1, 0.9),
    "bg_r1": (0.3, 0.95),
    "bg_g1": (0.3, 0.95),
    "bg_b1": (0.3, 0.95),
    "bg_r2": (0.2, 0.9),
    "bg_g2": (0.2, 0.9),
    "bg_b2": (0.2, 0.9),
    "bg_angle": (0.0, 2 * math.pi),
    "light_angle": (0.0, 2 * math.pi),
    "light_strength": (0.0, 0.18),
}
PARAM_NAMES: tuple[str, ...] = ATTRIBUTES + tuple(NUISANCE_RANGES)
NUM_PARAMS = len(PARAM_NAMES)
_INDEX = {name: i for i, name in enumerate(PARAM_NAMES)}

_SKIN = np.array([(244, 208, 182), (222, 175, 140), (190, 135, 100), (141, 94, 64), (96, 62, 42)])
_DARK_HAIR = np.array([(28, 24, 24), (58, 40, 30), (96, 62, 40), (128, 62, 36)])
_BLOND_HAIR = np.array([(176, 136, 78), (214, 180, 112), (234, 208, 150), (246, 226, 180)])
_GREY = np.array((200, 200, 204))
_IRIS = np.array([(80, 50, 30), (120, 92, 48), (70, 110, 165), (78, 122, 82), (112, 122, 134)])
_FRAMES = np.array([(20, 20, 24), (92, 52, 30), (176, 140, 60), (120, 30, 40)])


def attribute_index(name: str) -> int:
    """Position of a CelebA-style attribute name (case-insensitive) in ATTRIBUTES."""
    lookup = {a.lower(): i for i, a in enumerate(ATTRIBUTES)}
    key = name.strip().lower().replace("-", "_").replace(" ", "_")
    if key not in lookup:
        raise ValueError(
            f"unknown synthetic-face attribute {name!r}; valid names: {', '.join(ATTRIBUTES)}"
        )
    return lookup[key]


def sample_params(
    rng: np.random.Generator, num: int | None = None, attributes: np.ndarray | None = None
) -> np.ndarray:
    """Draw face parameters: float32 (NUM_PARAMS,) or (num, NUM_PARAMS).

    Attributes are independent fair coins unless given as a 0/1 array of shape
    (num, len(ATTRIBUTES)) (the dataset builder passes exactly balanced ones).
    """
    count = 1 if num is None else num
    out = np.empty((count, NUM_PARAMS), np.float32)
    if attributes is None:
        attributes = rng.integers(0, 2, size=(count, len(ATTRIBUTES)))
    out[:, : len(ATTRIBUTES)] = np.asarray(attributes, np.float32).reshape(count, -1)
    lows, highs = np.array(list(NUISANCE_RANGES.values()), np.float32).T
    out[:, len(ATTRIBUTES) :] = lows + (highs - lows) * rng.random((count, len(lows)))
    return out[0] if num is None else out


SPLIT_IDS = {"train": 0, "test": 1}  # each split draws from its own streams
DEFAULT_NUM_TRAIN = 20_000
DEFAULT_NUM_TEST = 2_000


def balanced_attributes(num: int, seed: int, split: str) -> np.ndarray:
    """0/1 (num, len(ATTRIBUTES)): every combination of attributes equally often (up to the
    remainder), so each attribute is balanced and independent of the others."""
    combos = 2 ** len(ATTRIBUTES)
    rng = np.random.default_rng([seed, SPLIT_IDS[split], 7919])
    codes = rng.permutation(np.arange(num) % combos)
    bits = (codes[:, None] >> np.arange(len(ATTRIBUTES))[None, :]) & 1
    return bits.astype(np.float32)


def example_params(seed: int, split: str, index: int, attributes: np.ndarray) -> np.ndarray:
    """Parameters of example `index`, from its own random stream: any chunking, same faces."""
    rng = np.random.default_rng([seed, SPLIT_IDS[split], index])
    return sample_params(rng, attributes=attributes[None])


def flip(params: np.ndarray, attr: str) -> np.ndarray:
    """The same face with one attribute negated (its ground-truth edit)."""
    out = np.array(params, np.float32, copy=True)
    index = attribute_index(attr)
    out[..., index] = 1.0 - np.round(out[..., index])
    return out


def supersample_factor(img_size: int) -> int:
    """Canvas magnification: 4x at <= 96 px, 3x at 128 px, 2x at >= 192 px."""
    return int(min(4, max(2, round(384 / img_size))))


@dataclasses.dataclass(frozen=True)
class _Shape:
    """One drawn shape: a filled polygon or a polyline of the given width (canvas pixels)."""

    key: str
    points: np.ndarray  # (n, 2) canvas coordinates
    color: tuple[int, int, int]
    width: int = 0  # 0: filled polygon

    def draw(self, draw: ImageDraw.ImageDraw, fill=None) -> None:
        coords = [tuple(p) for p in self.points.tolist()]
        color = self.color if fill is None else fill
        if self.width:
            draw.line(coords, fill=color, width=self.width, joint="curve")
        else:
            draw.polygon(coords, fill=color)

    def same_geometry(self, other: _Shape) -> bool:
        return self.width == other.width and np.array_equal(self.points, other.points)


def _mix(a, b, t: float) -> np.ndarray:
    return np.asarray(a, np.float64) * (1 - t) + np.asarray(b, np.float64) * t


def _palette(colors: np.ndarray, t: float) -> np.ndarray:
    """Piecewise-linear interpolation along a list of colours, t in [0, 1]."""
    pos = float(np.clip(t, 0, 1)) * (len(colors) - 1)
    low = min(int(pos), len(colors) - 2)
    return _mix(colors[low], colors[low + 1], pos - low)


def _rgb(color) -> tuple[int, int, int]:
    return tuple(np.clip(np.rint(color), 0, 255).astype(int).tolist())


@functools.lru_cache(maxsize=64)
def _unit_arc(n: int, a0: float, a1: float) -> np.ndarray:
    t = np.linspace(a0, a1, n)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


@functools.lru_cache(maxsize=64)
def _parabola(n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.linspace(-1, 1, n)
    return t, 1 - t**2


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 40, a0=0.0, a1=2 * math.pi):
    return _unit_arc(n, a0, a1) * (rx, ry) + (cx, cy)


def _smooth(points: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Chaikin corner cutting on an open polyline (keeps both end points)."""
    for _ in range(iterations):
        q = 0.75 * points[:-1] + 0.25 * points[1:]
        r = 0.25 * points[:-1] + 0.75 * points[1:]
        mid = np.stack([q, r], axis=1).reshape(-1, 2)
        points = np.concatenate([points[:1], mid, points[-1:]])
    return points


def _mirror(half: np.ndarray) -> np.ndarray:
    """Right half (x >= 0, ordered top to bottom) -> closed symmetric outline."""
    left = half[::-1] * np.array([-1.0, 1.0])
    return np.concatenate([half, left])


def _arc(x0: float, x1: float, y: float, bend: float, n: int = 12) -> np.ndarray:
    """A parabola from (x0, y) to (x1, y) whose middle sits `bend` lower (negative: higher)."""
    t, hump = _parabola(n)
    return np.stack([(x0 + x1) / 2 + t * (x1 - x0) / 2, y + bend * hump], axis=1)


class _Scene:
    """Collects the shapes of one face in head units; ``shapes`` maps them to the canvas."""

    def __init__(self, p: dict[str, float], canvas: int):
        self.p = p
        self.canvas = canvas
        self.parts: list[tuple[str, np.ndarray, tuple[int, int, int], float]] = []

    def add(self, key: str, points, color, width: float = 0.0) -> None:
        self.parts.append((key, np.asarray(points, np.float64), _rgb(color), width))

    @property
    def shapes(self) -> list[_Shape]:
        """All shapes through the head transform, in one matrix product."""
        p, canvas = self.p, self.canvas
        angle = math.radians(p["head_angle"])
        unit = p["head_scale"] * canvas  # canvas pixels per head unit
        matrix = unit * np.array(
            [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        )
        offset = np.array([p["head_x"], p["head_y"]]) * canvas
        points = np.round(np.concatenate([part[1] for part in self.parts]) @ matrix.T + offset, 2)
        splits = np.cumsum([len(part[1]) for part in self.parts])[:-1]
        pieces = np.split(points, splits)
        return [
            _Shape(key, pts, color, max(1, int(round(width * unit))) if width else 0)
            for (key, _, color, width), pts in zip(self.parts, pieces, strict=True)
        ]


def _face_outline(p: dict[str, float], male: bool) -> np.ndarray:
    """Closed face outline: skull arc on top, a jaw that is square for Male, tapered otherwise."""
    width, length = p["face_width"], p["face_length"]
    if male:
        jaw = [(1.02, 0.1), (1.01, 0.55), (0.96, 0.95), (0.8, 1.26), (0.46, 1.45), (0.0, 1.49)]
    else:
        jaw = [(1.0, 0.1), (0.97, 0.5), (0.86, 0.9), (0.62, 1.2), (0.3, 1.37), (0.0, 1.41)]
    jaw = _smooth(np.array(jaw), 3)
    jaw = jaw * np.array([width, 1.0])
    jaw[:, 1] = 0.1 + (jaw[:, 1] - 0.1) * length
    top = _ellipse(0, 0.1, width, 1.55, n=24, a0=-math.pi / 2, a1=0)  # crown -> right side
    return _mirror(np.concatenate([top, jaw[1:]]))


def _scene(params: np.ndarray, canvas: int) -> _Scene:
    p = {name: float(v) for name, v in zip(PARAM_NAMES, params, strict=True)}
    smiling, male, young, glasses, bangs, blond = (p[a] >= 0.5 for a in ATTRIBUTES)
    s = _Scene(p, canvas)
    length = p["face_length"]
    skin = _palette(_SKIN, p["skin_tone"])
    base_hair = _palette(_BLOND_HAIR if blond else _DARK_HAIR, p["hair_shade"])
    hair = base_hair if young else _mix(base_hair, _GREY, p["grey_amount"])
    line_color = skin * 0.72
    mouth_y = 0.1 + 0.72 * length
    chin_y = 0.1 + 1.35 * length

    # Behind the head: shirt, hair (long unless Male), neck, ears.
    shirt = np.array([p["shirt_r"], p["shirt_g"], p["shirt_b"]]) * 255
    s.add("shirt", _mirror(_smooth(np.array(
        [(0.0, chin_y + 0.55), (1.2, chin_y + 0.62), (2.2, chin_y + 1.2), (2.6, 6.0)]), 2)), shirt)
    volume = p["hair_volume"]
    skull = _ellipse(0, 0.1, volume * p["face_width"], 1.55 + (volume - 1) * 1.2, n=30,
                     a0=math.pi, a1=2 * math.pi)  # left side, over the crown, to the right side
    if male:
        back = np.concatenate([skull, [(0.92, 0.35), (-0.92, 0.35)]])
    else:
        drop = chin_y + 0.75
        back = np.concatenate([skull, [(1.3, 0.9), (1.42, drop), (0.75, drop + 0.1),
                                       (-0.75, drop + 0.1), (-1.42, drop), (-1.3, 0.9)]])
    s.add("hair_back", back, hair)
    s.add("neck", np.array([(-0.45, 0.8), (0.45, 0.8), (0.5, chin_y + 0.9), (-0.5, chin_y + 0.9)]),
          skin * 0.86)
    for side in (-1, 1):
        ear = _ellipse(side * 0.98 * p["face_width"], 0.2, 0.17, 0.3, n=20)
        s.add(f"ear_{side}", ear, skin * 0.93)
    s.add("face", _face_outline(p, male), skin)

    # Beard or stubble (Male only): a band along the jaw plus a moustache.
    if male:
        amount = 0.35 if p["beard_type"] < 0.55 else 0.85
        outline = _face_outline(p, True)
        lower = outline[outline[:, 1] > mouth_y - 0.3]
        s.add("beard", lower * np.array([0.97, 1.0]) + np.array([0.0, -0.01]),
              _mix(skin, hair * 0.8, amount))
        s.add("moustache", np.concatenate([
            _arc(-0.34, 0.34, mouth_y - 0.08, -0.16, 10),
            _arc(0.38, -0.38, mouth_y + 0.02, -0.05, 10)]), _mix(skin, hair * 0.8, amount + 0.05))

    # Age lines (not Young): forehead, crow's feet, under-eye bags, nasolabial folds.
    sep = p["eye_sep"]
    if not young:
        for i, y in enumerate((-0.62, -0.76, -0.9)):
            line = _arc(-0.42 + 0.05 * i, 0.42 - 0.05 * i, y, -0.04)
            s.add(f"forehead_line_{i}", line, line_color, 0.028)
        for side in (-1, 1):
            x = side * (sep + p["eye_width"] + 0.04)
            for j, dy in enumerate((-0.07, 0.0, 0.07)):
                s.add(f"crows_feet_{side}_{j}",
                      np.array([(x, dy * 0.6), (x + side * 0.13, dy * 1.6)]), line_color, 0.024)
            s.add(f"eye_bag_{side}", _arc(side * sep - 0.14, side * sep + 0.14, 0.17, 0.06),
                  line_color, 0.024)
            s.add(f"fold_{side}", np.array([(side * 0.2, 0.5 * length + 0.1),
                                            (side * 0.32, mouth_y - 0.05),
                                            (side * 0.36, mouth_y + 0.1)]), line_color, 0.026)

    # Smiling cheeks: raised blush and smile creases.
    if smiling:
        for side in (-1, 1):
            s.add(f"cheek_{side}", _ellipse(side * 0.55, 0.5 * length + 0.05, 0.2, 0.13, n=24),
                  _mix(skin, (235, 110, 110), 0.28))
            crease = [(side * 0.26, 0.5 * length + 0.16), (side * 0.42, mouth_y - 0.06),
                      (side * 0.46, mouth_y + 0.06)]
            s.add(f"smile_crease_{side}", np.array(crease), line_color, 0.03)

    # Eyes: almond sclera, iris clipped to it, pupil, upper lid; smiling raises the lower lid.
    iris_color = _palette(_IRIS, p["iris_color"])
    ew, eh = p["eye_width"], p["eye_height"]
    for side in (-1, 1):
        cx = side * sep
        xs = np.linspace(cx - ew, cx + ew, 17)
        t = (xs - cx) / ew
        upper = -eh * (1 - t**2) ** 0.8
        lower = eh * (0.35 if smiling else 0.8) * (1 - t**2) ** (1.4 if smiling else 1.0)
        if smiling:
            upper = upper * 0.85 + 0.02 * (1 - t**2)
        sclera = np.concatenate([np.stack([xs, upper], 1), np.stack([xs, lower], 1)[::-1]])
        s.add(f"sclera_{side}", sclera, (246, 244, 240))
        radius = eh * 0.95
        circle = _ellipse(cx, 0.0, radius, radius, n=24)
        rel = np.clip((circle[:, 0] - cx) / ew, -1, 1)
        top = -eh * (1 - rel**2) ** 0.8 * (0.85 if smiling else 1.0)
        bottom = eh * (0.35 if smiling else 0.8) * (1 - rel**2) ** (1.4 if smiling else 1.0)
        clipped = np.stack([circle[:, 0], np.clip(circle[:, 1], top, bottom)], 1)
        s.add(f"iris_{side}", clipped, iris_color)
        pupil = _ellipse(cx, 0.0, radius * 0.45, radius * 0.45, n=16)
        pupil[:, 1] = np.clip(pupil[:, 1], top.min(), bottom.max())
        s.add(f"pupil_{side}", pupil, (15, 12, 12))
        s.add(f"lid_{side}", np.stack([xs, upper], 1), (40, 28, 24), 0.035)
        if smiling:
            s.add(f"lower_lid_{side}", np.stack([xs, lower], 1)[2:-2], line_color, 0.025)

    # Brows: thick, low and flat for Male; thin and arched otherwise.
    brow_color = base_hair * 0.75 if blond else base_hair
    brow_y = (-0.3 if male else -0.36) + p["brow_offset"]
    for side in (-1, 1):
        x0, x1 = side * (sep - 0.2), side * (sep + 0.22)
        arch = -0.05 if male else -0.12
        s.add(f"brow_{side}", _arc(min(x0, x1), max(x0, x1), brow_y, arch, 10), brow_color,
              0.11 if male else 0.055)

    # Nose.
    nose_y = 0.1 + 0.4 * length * p["nose_length"]
    nose = [(0.07, 0.12), (0.12, nose_y - 0.06), (0.13, nose_y), (0.06, nose_y + 0.04),
            (0.0, nose_y + 0.05), (-0.06, nose_y + 0.04)]
    s.add("nose", np.array(nose), skin * 0.72, 0.03)

    # Mouth: closed lips, or a wide open smile with teeth.
    half = p["mouth_width"]
    lip = _mix(skin * 0.8, (180, 40, 60), 0.2 if male else 0.5)
    if smiling:
        half *= 1.18
        lift = 0.12
        top_edge = _arc(-half, half, mouth_y - lift, 0.06, 14)
        bottom_edge = _arc(half, -half, mouth_y - lift, 0.3, 14)
        s.add("lips", np.concatenate([
            _arc(-half - 0.02, half + 0.02, mouth_y - lift - 0.02, 0.03, 14),
            _arc(half + 0.02, -half - 0.02, mouth_y - lift, 0.36, 14)]), lip)
        s.add("mouth_inside", np.concatenate([top_edge, bottom_edge]), (70, 20, 26))
        teeth_bottom = _arc(half * 0.85, -half * 0.85, mouth_y - lift + 0.04, 0.1, 14)
        teeth_top = _arc(-half * 0.9, half * 0.9, mouth_y - lift + 0.005, 0.06, 14)
        s.add("teeth", np.concatenate([teeth_top, teeth_bottom]), (250, 248, 240))
    else:
        s.add("lips", np.concatenate([
            _arc(-half, half, mouth_y, -0.07, 14),
            _arc(half, -half, mouth_y, 0.11, 14)]), lip)
        s.add("mouth_line", _arc(-half, half, mouth_y + 0.005, 0.012, 12), lip * 0.55, 0.03)

    # Hair in front: the cap above the hairline, and bangs.
    cap_outer = skull
    hairline = p["hairline"]
    inner = _smooth(np.array([(0.96 * p["face_width"], -0.15), (0.75, hairline + 0.1),
                              (0.0, hairline), (-0.75, hairline + 0.1),
                              (-0.96 * p["face_width"], -0.15)]), 2)
    s.add("hair_cap", np.concatenate([cap_outer, inner]), hair)
    if bangs:
        n = 9
        xs = np.linspace(-0.95, 0.95, n)
        tips = np.full(n, -0.5)
        tips[1::2] = -0.42
        if p["bangs_style"] > 0.5:  # side-swept: longer on one side
            tips = tips + 0.1 * (xs + 0.95) / 1.9 - 0.05
        edge = np.stack([xs[::-1] * p["face_width"], tips[::-1]], 1)
        # From just above the hairline (left to right) down to the fringe: hardly any overlap
        # with the cap, so the Bangs mask is about the pixels that change.
        top = inner[::-1].copy()
        top[:, 1] = np.minimum(top[:, 1] - 0.04, tips.max() - 0.08)
        s.add("bangs", np.concatenate([top, edge]), hair)

    # Eyeglasses: frames, bridge, temples.
    if glasses:
        frame = _palette(_FRAMES, p["glasses_color"])
        round_frame = p["glasses_shape"] < 0.5
        for side in (-1, 1):
            cx = side * sep
            if round_frame:
                outline = _ellipse(cx, 0.0, 0.27, 0.22, n=32)
            else:
                outline = np.array([(cx - 0.29, -0.17), (cx + 0.29, -0.17), (cx + 0.27, 0.16),
                                    (cx - 0.27, 0.16), (cx - 0.29, -0.17)])
            s.add(f"glasses_rim_{side}", outline, frame, 0.05)
            s.add(f"glasses_temple_{side}", np.array([(side * (sep + 0.28), -0.04),
                                                     (side * 0.99 * p["face_width"], -0.02)]),
                  frame, 0.045)
        s.add("glasses_bridge", _arc(-sep + 0.27, sep - 0.27, -0.03, -0.05, 8), frame, 0.045)
    return s


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size * 2 - 1
    return coords[None, :], coords[:, None]


def _background(p: np.ndarray, size: int, canvas: int) -> Image.Image:
    """A linear two-colour gradient at image size, blown up to the canvas in blocks (exact
    again after the box downscale)."""
    x, y = _grid(size)
    c, s = math.cos(p[_INDEX["bg_angle"]]), math.sin(p[_INDEX["bg_angle"]])
    t = 0.5 + 0.5 * (x * c + y * s) / (abs(c) + abs(s))  # in [0, 1]
    c1 = p[[_INDEX["bg_r1"], _INDEX["bg_g1"], _INDEX["bg_b1"]]] * 255
    c2 = p[[_INDEX["bg_r2"], _INDEX["bg_g2"], _INDEX["bg_b2"]]] * 255
    small = (c1 + (c2 - c1) * t[..., None] + 0.5).astype(np.uint8)
    return Image.fromarray(small).resize((canvas, canvas), Image.Resampling.NEAREST)


def _lighting(p: np.ndarray, size: int) -> np.ndarray:
    x, y = _grid(size)
    angle = p[_INDEX["light_angle"]]
    gain = 1.0 + p[_INDEX["light_strength"]] * (x * math.cos(angle) + y * math.sin(angle))
    return gain[..., None].astype(np.float32)


def render(params: np.ndarray, img_size: int = 64) -> np.ndarray:
    """Draw one face: params (NUM_PARAMS,) -> uint8 (img_size, img_size, 3)."""
    params = np.asarray(params, np.float32)
    if params.shape != (NUM_PARAMS,):
        raise ValueError(f"params must have shape ({NUM_PARAMS},), got {params.shape}")
    factor = supersample_factor(img_size)
    canvas = img_size * factor
    image = _background(params, img_size, canvas)
    draw = ImageDraw.Draw(image)
    for shape in _scene(params, canvas).shapes:
        shape.draw(draw)
    small = np.asarray(image.reduce(factor), np.float32)
    return np.clip(small * _lighting(params, img_size) + 0.5, 0, 255).astype(np.uint8)


def render_batch(params: np.ndarray, img_size: int = 64) -> np.ndarray:
    """Draw many faces: (N, NUM_PARAMS) -> uint8 (N, img_size, img_size, 3)."""
    return np.stack([render(p, img_size) for p in np.asarray(params, np.float32)])


def _silhouette(shapes: list[_Shape], canvas: int) -> np.ndarray:
    layer = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(layer)
    for shape in shapes:
        shape.draw(draw, fill=255)
    return np.asarray(layer) > 0


def attribute_mask(params: np.ndarray, attr: str, img_size: int = 64) -> np.ndarray:
    """Boolean (img_size, img_size): the pixels that may differ between ``render(params)`` and
    ``render(flip(params, attr))``.

    Shapes are matched by name across the two scenes: a shape drawn in one only, or
    recoloured, contributes its whole area; a reshaped one the symmetric difference of its two
    areas. Every other pixel of the two renderings is equal.
    """
    params = np.asarray(params, np.float32)
    factor = supersample_factor(img_size)
    canvas = img_size * factor
    before = {s.key: s for s in _scene(params, canvas).shapes}
    after = {s.key: s for s in _scene(flip(params, attr), canvas).shapes}
    changed = np.zeros((canvas, canvas), bool)
    for key in before.keys() | after.keys():
        a, b = before.get(key), after.get(key)
        if a is not None and b is not None:
            if a.color == b.color:
                if a.same_geometry(b):
                    continue
                changed |= _silhouette([a], canvas) ^ _silhouette([b], canvas)
                continue
        changed |= _silhouette([s for s in (a, b) if s is not None], canvas)
    return changed.reshape(img_size, factor, img_size, factor).any(axis=(1, 3))
