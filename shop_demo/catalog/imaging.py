"""Product pictures drawn with Pillow: the category's silhouette in the product's colour.

A red mug is drawn as a red mug, a navy t-shirt as a navy t-shirt, on a light
background. ``ImageStyle`` carries the small deterministic variations
(position, scale, background tint, pattern) that keep pictures of one category
from being identical. Nothing here touches Django, so drawing can run in
worker processes.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

IMAGE_SIZE = 256
SUPERSAMPLE = 2  # drawn at 2x and downscaled: smooth edges without anti-aliased primitives
JPEG_QUALITY = 88

RGB = tuple[int, int, int]

# Colour names used in product text, and how they are painted.
COLOURS: dict[str, RGB] = {
    "red": (200, 36, 36),
    "orange": (236, 120, 24),
    "yellow": (240, 196, 30),
    "green": (46, 146, 64),
    "teal": (18, 136, 136),
    "blue": (36, 92, 206),
    "navy": (28, 42, 100),
    "purple": (120, 56, 164),
    "pink": (232, 112, 160),
    "brown": (122, 74, 38),
    "black": (34, 34, 38),
    "white": (252, 252, 250),
    "grey": (128, 130, 136),
    "beige": (214, 190, 150),
}

PATTERNS = ("plain", "stripes", "dots", "gradient")


@dataclass(frozen=True)
class ImageStyle:
    """Deterministic variation of one picture."""

    scale: float = 0.92  # size of the object relative to the frame
    dx: float = 0.0  # offset of the object, fraction of the frame
    dy: float = 0.0
    background: RGB = (244, 244, 242)
    pattern: str = "plain"


def random_style(rng) -> ImageStyle:
    """A style drawn from ``rng`` (a ``random.Random``)."""
    base = rng.randint(234, 247)
    tint = [rng.randint(-6, 6) for _ in range(3)]
    return ImageStyle(
        scale=round(rng.uniform(0.8, 0.98), 3),
        dx=round(rng.uniform(-0.05, 0.05), 3),
        dy=round(rng.uniform(-0.04, 0.04), 3),
        background=tuple(max(0, min(255, base + t)) for t in tint),
        pattern=rng.choice(PATTERNS),
    )


def colour_rgb(name: str) -> RGB:
    return COLOURS.get((name or "").strip().lower(), COLOURS["grey"])


def shade(colour: RGB, factor: float) -> RGB:
    """Darker (factor < 1) or lighter (factor > 1, mixed towards white) version of a colour."""
    if factor <= 1:
        return tuple(int(c * factor) for c in colour)
    mix = factor - 1
    return tuple(int(c + (255 - c) * mix) for c in colour)


def outline_of(colour: RGB) -> RGB:
    """Outline colour: a darker shade, dark grey for very light or very dark colours."""
    lightness = sum(colour) / 3
    if lightness > 225:
        return (150, 150, 154)
    if lightness < 50:
        return (10, 10, 12)
    return shade(colour, 0.6)


class Pen:
    """Draws in unit coordinates (0..1) placed and scaled by an ``ImageStyle``."""

    def __init__(self, draw: ImageDraw.ImageDraw, size: int, style: ImageStyle):
        self.draw = draw
        self.size = size
        self.s = style.scale
        self.ox = size * (0.5 + style.dx)
        self.oy = size * (0.5 + style.dy)

    def p(self, u: float, v: float) -> tuple[float, float]:
        return (self.ox + (u - 0.5) * self.s * self.size, self.oy + (v - 0.5) * self.s * self.size)

    def box(self, u0, v0, u1, v1) -> list[float]:
        x0, y0 = self.p(u0, v0)
        x1, y1 = self.p(u1, v1)
        return [x0, y0, x1, y1]

    def w(self, t: float) -> int:
        return max(1, round(t * self.s * self.size))

    def polygon(self, points, fill, outline=None, width=0.012):
        pts = [self.p(u, v) for u, v in points]
        self.draw.polygon(pts, fill=fill, outline=outline, width=self.w(width) if outline else 0)

    def ellipse(self, box, fill=None, outline=None, width=0.012):
        self.draw.ellipse(self.box(*box), fill=fill, outline=outline, width=self.w(width) if outline else 0)

    def rect(self, box, fill, outline=None, width=0.012, radius=0.0):
        self.draw.rounded_rectangle(
            self.box(*box),
            radius=self.w(radius) if radius else 0,
            fill=fill,
            outline=outline,
            width=self.w(width) if outline else 0,
        )

    def line(self, points, fill, width=0.012):
        self.draw.line([self.p(u, v) for u, v in points], fill=fill, width=self.w(width), joint="curve")

    def arc(self, box, start, end, fill, width=0.012):
        self.draw.arc(self.box(*box), start, end, fill=fill, width=self.w(width))

    def ring_arc(self, box, start, end, colour, outline, width):
        """A thick arc with a dark edge on both sides."""
        self.arc(box, start, end, outline, width)
        inset = 0.006
        u0, v0, u1, v1 = box
        self.arc((u0 + inset, v0 + inset, u1 - inset, v1 - inset), start, end, colour, width - 2 * inset)


def _curve(cx, cy, rx, ry, t0, t1, steps=16):
    return [
        (cx + rx * math.cos(t0 + (t1 - t0) * i / steps), cy + ry * math.sin(t0 + (t1 - t0) * i / steps))
        for i in range(steps + 1)
    ]


def _leaf(cx, cy, length, width, angle):
    """Points of a leaf starting at (cx, cy) pointing at ``angle`` (radians, 0 = right)."""
    points = []
    for i in range(13):
        t = i / 12
        points.append((t * length, math.sin(math.pi * t) * width / 2))
    for i in range(12, -1, -1):
        t = i / 12
        points.append((t * length, -math.sin(math.pi * t) * width / 2))
    ca, sa = math.cos(angle), math.sin(angle)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in points]


# --- silhouettes -----------------------------------------------------------------


def draw_mug(pen: Pen, c: RGB, o: RGB):
    pen.ring_arc((0.56, 0.40, 0.84, 0.70), 0, 360, c, o, 0.07)
    pen.rect((0.20, 0.30, 0.66, 0.84), c, o, radius=0.06)
    pen.ellipse((0.20, 0.25, 0.66, 0.35), shade(c, 0.72), o)
    pen.rect((0.26, 0.40, 0.31, 0.76), shade(c, 1.3), radius=0.02)
    for u in (0.34, 0.43, 0.52):
        pen.arc((u, 0.08, u + 0.05, 0.16), 90, 270, (170, 170, 176), 0.012)
        pen.arc((u + 0.005, 0.15, u + 0.055, 0.23), 270, 90, (170, 170, 176), 0.012)


def draw_tshirt(pen: Pen, c: RGB, o: RGB):
    neck = _curve(0.5, 0.18, 0.13, 0.08, 0, math.pi)
    body = [
        (0.37, 0.18),
        (0.18, 0.26),
        (0.07, 0.45),
        (0.21, 0.51),
        (0.29, 0.42),
        (0.29, 0.87),
        (0.71, 0.87),
        (0.71, 0.42),
        (0.79, 0.51),
        (0.93, 0.45),
        (0.82, 0.26),
        (0.63, 0.18),
    ] + neck[1:-1]
    pen.polygon(body, c, o)
    pen.line(neck, shade(c, 0.75), 0.025)
    pen.line([(0.13, 0.40), (0.25, 0.46)], shade(c, 0.8), 0.01)
    pen.line([(0.87, 0.40), (0.75, 0.46)], shade(c, 0.8), 0.01)
    pen.line([(0.30, 0.82), (0.70, 0.82)], shade(c, 0.8), 0.008)


def draw_sneaker(pen: Pen, c: RGB, o: RGB):
    upper = [
        (0.11, 0.68),
        (0.10, 0.52),
        (0.13, 0.44),
        (0.22, 0.41),
        (0.33, 0.46),
        (0.42, 0.44),
        (0.56, 0.50),
        (0.72, 0.55),
        (0.85, 0.58),
        (0.91, 0.63),
        (0.92, 0.68),
    ]
    pen.polygon([(0.34, 0.46), (0.38, 0.38), (0.45, 0.38), (0.49, 0.47)], shade(c, 0.85), o)
    pen.polygon(upper, c, o)
    pen.polygon([(0.74, 0.555), (0.85, 0.58), (0.91, 0.63), (0.92, 0.68), (0.74, 0.68)], shade(c, 0.8))
    pen.polygon([(0.10, 0.54), (0.13, 0.44), (0.22, 0.41), (0.22, 0.68), (0.11, 0.68)], shade(c, 0.85))
    pen.line([(0.24, 0.62), (0.42, 0.56), (0.62, 0.62)], shade(c, 1.35), 0.02)
    for i in range(4):
        u = 0.43 + i * 0.06
        pen.line([(u, 0.455 + i * 0.022), (u + 0.035, 0.50 + i * 0.022)], (245, 245, 245), 0.012)
    pen.rect((0.08, 0.66, 0.94, 0.77), (236, 232, 222), o, radius=0.04)
    pen.line([(0.12, 0.73), (0.90, 0.73)], (200, 196, 186), 0.008)


def draw_backpack(pen: Pen, c: RGB, o: RGB):
    pen.ring_arc((0.40, 0.08, 0.60, 0.28), 180, 360, shade(c, 0.7), o, 0.035)
    pen.rect((0.22, 0.17, 0.78, 0.88), c, o, radius=0.12)
    pen.rect((0.22, 0.17, 0.78, 0.42), shade(c, 0.85), o, radius=0.12)
    pen.rect((0.33, 0.36, 0.38, 0.52), shade(c, 0.7), radius=0.01)
    pen.rect((0.62, 0.36, 0.67, 0.52), shade(c, 0.7), radius=0.01)
    pen.rect((0.31, 0.56, 0.69, 0.82), shade(c, 0.88), o, radius=0.06)
    pen.line([(0.34, 0.61), (0.66, 0.61)], (90, 90, 96), 0.012)
    pen.rect((0.58, 0.60, 0.61, 0.67), (200, 200, 205), radius=0.005)


def draw_lamp(pen: Pen, c: RGB, o: RGB):
    pen.polygon([(0.36, 0.46), (0.64, 0.46), (0.58, 0.62), (0.42, 0.62)], (255, 244, 196))
    pen.rect((0.485, 0.44, 0.515, 0.78), shade(c, 0.7))
    pen.ellipse((0.32, 0.74, 0.68, 0.86), c, o)
    pen.polygon([(0.31, 0.14), (0.69, 0.14), (0.81, 0.47), (0.19, 0.47)], c, o)
    pen.polygon([(0.34, 0.17), (0.40, 0.17), (0.30, 0.44), (0.24, 0.44)], shade(c, 1.25))


def draw_chair(pen: Pen, c: RGB, o: RGB):
    dark = shade(c, 0.75)
    pen.rect((0.33, 0.58, 0.37, 0.82), dark)
    pen.rect((0.63, 0.58, 0.67, 0.82), dark)
    pen.rect((0.32, 0.44, 0.36, 0.52), dark)
    pen.rect((0.64, 0.44, 0.68, 0.52), dark)
    pen.rect((0.28, 0.10, 0.72, 0.46), c, o, radius=0.04)
    pen.rect((0.33, 0.16, 0.67, 0.40), shade(c, 1.15), radius=0.03)
    pen.polygon([(0.24, 0.50), (0.76, 0.50), (0.81, 0.61), (0.19, 0.61)], c, o)
    pen.rect((0.21, 0.60, 0.26, 0.90), c, o)
    pen.rect((0.74, 0.60, 0.79, 0.90), c, o)


def draw_watch(pen: Pen, c: RGB, o: RGB):
    pen.rect((0.39, 0.06, 0.61, 0.36), c, o, radius=0.03)
    pen.rect((0.39, 0.64, 0.61, 0.94), c, o, radius=0.03)
    for v in (0.74, 0.80, 0.86):
        pen.ellipse((0.49, v, 0.51, v + 0.02), shade(c, 0.55))
    pen.rect((0.69, 0.46, 0.74, 0.54), (170, 172, 178), (90, 90, 96), radius=0.01)
    pen.ellipse((0.28, 0.28, 0.72, 0.72), shade(c, 0.8), o, 0.015)
    pen.ellipse((0.33, 0.33, 0.67, 0.67), (246, 246, 240), (150, 150, 156))
    for i in range(12):
        a = i * math.pi / 6
        pen.line(
            [
                (0.5 + 0.14 * math.cos(a), 0.5 + 0.14 * math.sin(a)),
                (0.5 + 0.16 * math.cos(a), 0.5 + 0.16 * math.sin(a)),
            ],
            (60, 60, 66),
            0.008,
        )
    pen.line([(0.5, 0.5), (0.5, 0.38)], (30, 30, 34), 0.014)
    pen.line([(0.5, 0.5), (0.59, 0.55)], (30, 30, 34), 0.01)


def draw_hat(pen: Pen, c: RGB, o: RGB):
    pen.ellipse((0.10, 0.56, 0.90, 0.76), shade(c, 0.88), o)
    pen.rect((0.27, 0.24, 0.73, 0.67), c, o, radius=0.12)
    pen.line([(0.42, 0.27), (0.5, 0.31), (0.58, 0.27)], shade(c, 0.7), 0.012)
    pen.rect((0.27, 0.54, 0.73, 0.62), shade(c, 0.55))


def draw_bottle(pen: Pen, c: RGB, o: RGB):
    pen.rect((0.43, 0.14, 0.57, 0.30), c, o, radius=0.02)
    pen.rect((0.33, 0.25, 0.67, 0.90), c, o, radius=0.11)
    pen.rect((0.40, 0.06, 0.60, 0.16), shade(c, 0.45), o, radius=0.025)
    pen.rect((0.33, 0.50, 0.67, 0.66), shade(c, 0.82))
    pen.rect((0.38, 0.32, 0.42, 0.84), shade(c, 1.3), radius=0.02)


def draw_plant(pen: Pen, c: RGB, o: RGB):
    leaf, vein = (58, 142, 72), (34, 100, 48)
    for angle, length in ((-2.4, 0.30), (-0.75, 0.30), (-1.9, 0.34), (-1.25, 0.36), (-1.57, 0.28)):
        points = _leaf(0.5, 0.56, length, 0.13, angle)
        pen.polygon(points, leaf, vein, 0.008)
        pen.line(
            [(0.5, 0.56), (0.5 + length * 0.9 * math.cos(angle), 0.56 + length * 0.9 * math.sin(angle))], vein, 0.008
        )
    pen.polygon([(0.31, 0.58), (0.69, 0.58), (0.64, 0.90), (0.36, 0.90)], c, o)
    pen.rect((0.28, 0.55, 0.72, 0.63), shade(c, 0.85), o, radius=0.01)


def draw_umbrella(pen: Pen, c: RGB, o: RGB):
    top = _curve(0.5, 0.46, 0.40, 0.32, math.pi, 2 * math.pi, 24)
    bottom = []
    panels = 4
    for i in range(panels * 6 + 1):
        t = i / (panels * 6)
        u = 0.90 - 0.80 * t
        bottom.append((u, 0.46 - 0.045 * math.sin(math.pi * ((t * panels) % 1))))
    pen.line([(0.5, 0.46), (0.5, 0.82)], (70, 70, 76), 0.018)
    pen.arc((0.41, 0.77, 0.50, 0.87), 0, 180, shade(c, 0.5), 0.025)
    pen.polygon(top + bottom[1:-1], c, o)
    for u in (0.30, 0.70):
        pen.line([(0.5, 0.14), (u, 0.43)], shade(c, 0.75), 0.01)
    pen.line([(0.5, 0.14), (0.5, 0.08)], (70, 70, 76), 0.018)


def draw_headphones(pen: Pen, c: RGB, o: RGB):
    pen.ring_arc((0.20, 0.12, 0.80, 0.76), 180, 360, c, o, 0.07)
    pen.rect((0.17, 0.38, 0.23, 0.48), shade(c, 0.7))
    pen.rect((0.77, 0.38, 0.83, 0.48), shade(c, 0.7))
    pen.rect((0.12, 0.44, 0.30, 0.74), c, o, radius=0.07)
    pen.rect((0.70, 0.44, 0.88, 0.74), c, o, radius=0.07)
    pen.rect((0.27, 0.48, 0.33, 0.70), (55, 55, 60), radius=0.025)
    pen.rect((0.67, 0.48, 0.73, 0.70), (55, 55, 60), radius=0.025)


SHAPES = {
    "mug": draw_mug,
    "tshirt": draw_tshirt,
    "sneaker": draw_sneaker,
    "backpack": draw_backpack,
    "lamp": draw_lamp,
    "chair": draw_chair,
    "watch": draw_watch,
    "hat": draw_hat,
    "bottle": draw_bottle,
    "plant": draw_plant,
    "umbrella": draw_umbrella,
    "headphones": draw_headphones,
}


# Where each object stands (its floor shadow), when not at the default 0.91.
FLOORS = {"sneaker": 0.79, "hat": 0.76, "headphones": 0.80, "umbrella": 0.90, "watch": 0.96}


def _background(draw: ImageDraw.ImageDraw, size: int, style: ImageStyle):
    bg = style.background
    faint = shade(bg, 0.965)
    if style.pattern == "stripes":
        step = size // 12
        for k in range(-size, size, step):
            draw.line([(k, size), (k + size, 0)], fill=faint, width=max(1, size // 64))
    elif style.pattern == "dots":
        step = size // 10
        r = max(1, size // 110)
        for y in range(step // 2, size, step):
            for x in range(step // 2, size, step):
                draw.ellipse([x - r, y - r, x + r, y + r], fill=faint)
    elif style.pattern == "gradient":
        bands = 16
        for i in range(bands):
            f = 1 - 0.04 * i / bands
            y0 = size * i // bands
            draw.rectangle([0, y0, size, size * (i + 1) // bands], fill=shade(bg, f))


def render(shape: str, colour: str | RGB, style: ImageStyle | None = None, size: int = IMAGE_SIZE) -> Image.Image:
    """The picture of a ``shape`` (a key of ``SHAPES``) in ``colour`` (a name or an RGB tuple)."""
    style = style or ImageStyle()
    rgb = colour if isinstance(colour, tuple) else colour_rgb(colour)
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), style.background)
    draw = ImageDraw.Draw(image)
    _background(draw, big, style)
    pen = Pen(draw, big, style)
    floor = FLOORS.get(shape, 0.91)
    pen.ellipse((0.16, floor - 0.04, 0.84, floor + 0.04), shade(style.background, 0.9))  # floor shadow
    SHAPES[shape](pen, rgb, outline_of(rgb))
    return image.reduce(SUPERSAMPLE) if SUPERSAMPLE > 1 else image  # box filter: fast and smooth enough


def render_jpeg(shape: str, colour: str | RGB, style: ImageStyle | None = None, size: int = IMAGE_SIZE) -> bytes:
    buffer = io.BytesIO()
    render(shape, colour, style, size).save(buffer, "JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def write_image(job: tuple[str, str, str, ImageStyle]) -> str:
    """Draw one picture and write it atomically to ``path``: job = (path, shape, colour, style)."""
    path, shape, colour, style = job
    data = render_jpeg(shape, colour, style)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(".%s.%d.tmp" % (target.name, os.getpid()))
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return path
