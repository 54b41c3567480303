"""Bar charts for the console, laid out here and drawn by the template as inline SVG: no
script, no CDN. Pure: numbers per day in, coordinates out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

WIDTH, HEIGHT = 600, 180
LEFT, RIGHT, TOP, BOTTOM = 40, 8, 12, 26  # room for the scale and the first/last day
GAP = 0.2  # share of each slot left empty between bars


@dataclass(frozen=True)
class Bar:
    day: date
    value: int
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    slug: str  # for ids: `chart-SLUG-title`
    title: str
    description: str  # what a screen reader hears first
    bars: tuple[Bar, ...]
    top: int  # the scale's top value
    total: int
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    base: float = HEIGHT - BOTTOM  # y of the zero line
    plot_top: int = TOP


def nice_top(peak: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above `peak` (at least 1)."""
    if peak <= 1:
        return 1
    scale = 1
    while True:
        for step in (1, 2, 5):
            if step * scale >= peak:
                return step * scale
        scale *= 10


def bar_chart(slug: str, title: str, points: Sequence[tuple[date, int]]) -> Chart:
    """One bar per day, scaled to a round top value."""
    top = nice_top(max((v for _, v in points), default=0))
    plot_width = WIDTH - LEFT - RIGHT
    plot_height = HEIGHT - TOP - BOTTOM
    slot = plot_width / max(1, len(points))
    bars = []
    for i, (day, value) in enumerate(points):
        height = plot_height * value / top
        bars.append(
            Bar(
                day=day,
                value=value,
                x=round(LEFT + i * slot + slot * GAP / 2, 2),
                y=round(TOP + plot_height - height, 2),
                width=round(slot * (1 - GAP), 2),
                height=round(height, 2),
            )
        )
    total = sum(v for _, v in points)
    if points:
        first, last = points[0][0], points[-1][0]
        peak_day, peak = max(points, key=lambda p: (p[1], p[0]))
        description = (
            f"{title}, {first:%d %b} to {last:%d %b}: {total} in all, "
            f"at most {peak} a day ({peak_day:%d %b})."
        )
    else:
        description = f"{title}: no data."
    return Chart(slug, title, description, tuple(bars), top, total)
