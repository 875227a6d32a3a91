"""Small server-side SVG charts for the dashboard (no JavaScript, no CDN).

Each chart has a titled y axis with its unit and round tick values written out (``1,500``,
``12k``: never scientific notation), an x axis saying what it counts, and an HTML legend under
the drawing that wraps on a narrow screen instead of being clipped at the drawing's edge.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4b5563")
# drawing units; the SVG scales to its box, so these fix proportions and text size
W, H = 520, 220
LEFT, RIGHT, TOP, BOTTOM = 58, 12, 26, 40
TICKS = 4


def nice_top(top: float) -> tuple[float, float]:
    """A round axis top at or above ``top`` and its tick step (1, 2, 2.5 or 5 x 10^n)."""
    if top <= 0:
        return 1.0, 0.25
    raw = top / TICKS
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        step = factor * magnitude
        if step * TICKS >= top:
            return step * TICKS, step
    return 10 * magnitude * TICKS, 10 * magnitude  # pragma: no cover (10 always fits)


def tick_label(value: float) -> str:
    """``0``, ``2.5``, ``750``, ``1,500``, ``12k``, ``3.5M``: short, never ``1e+04``."""
    if value == 0:
        return "0"
    if abs(value) >= 1_000_000:
        return f"{value / 1_000_000:.3g}M"
    if abs(value) >= 10_000:
        return f"{value / 1_000:.3g}k"
    if value == int(value):
        return f"{int(value):,}"
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _y(value: float, top: float) -> float:
    return H - BOTTOM - (value / top) * (H - TOP - BOTTOM)


def line_chart(series: dict[str, list[float]], unit: str, title: str) -> str:
    """One line per series (e.g. run duration per channel, oldest run first)."""
    points_max = max((len(v) for v in series.values()), default=0)
    top, step = nice_top(max((x for v in series.values() for x in v), default=0.0))
    parts = [_frame(title, top, step, unit, "runs, oldest to newest")]
    if points_max == 0:
        parts.append(_empty("no finished runs yet"))
    x_step = (W - LEFT - RIGHT) / max(points_max - 1, 1)
    legend = []
    for i, (name, values) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        coords = [(LEFT + j * x_step, _y(v, top)) for j, v in enumerate(values)]
        if len(coords) == 1:
            x, y = coords[0]
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}">'
                f"<title>{escape(name)}</title></circle>"
            )
        elif coords:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                f'points="{path}"><title>{escape(name)}</title></polyline>'
            )
        legend.append((name, color))
    return _figure(parts, title, legend)


def bar_chart(
    rows: list[tuple[str, float, float]],
    title: str,
    labels: tuple[str, str] = ("published", "failed"),
    unit: str = "units",
) -> str:
    """Paired bars per row (e.g. published and failed units per run)."""
    top, step = nice_top(max((max(a, b) for _, a, b in rows), default=0.0))
    parts = [_frame(title, top, step, unit, "runs, oldest to newest")]
    if not rows:
        parts.append(_empty("no runs yet"))
    slot = (W - LEFT - RIGHT) / max(len(rows), 1)
    bar = max(2.0, min(slot / 2.5, 24.0))
    for j, (name, a, b) in enumerate(rows):
        x = LEFT + j * slot
        for k, (value, color) in enumerate(((a, PALETTE[1]), (b, PALETTE[4]))):
            y = _y(value, top)
            parts.append(
                f'<rect x="{x + k * bar:.1f}" y="{y:.1f}" width="{bar:.1f}" '
                f'height="{H - BOTTOM - y:.1f}" fill="{color}"><title>{escape(name)}: '
                f"{escape(labels[k])} {tick_label(value)}</title></rect>"
            )
    return _figure(parts, title, [(labels[0], PALETTE[1]), (labels[1], PALETTE[4])])


def _empty(text: str) -> str:
    return (
        f'<text x="{(W + LEFT) / 2}" y="{(H - BOTTOM + TOP) / 2}" text-anchor="middle" '
        f'class="empty">{escape(text)}</text>'
    )


def _frame(title: str, top: float, step: float, unit: str, x_label: str) -> str:
    parts = [
        f'<text x="{LEFT}" y="16" class="title">{escape(title)}</text>',
        f'<line x1="{LEFT}" y1="{H - BOTTOM}" x2="{W - RIGHT}" y2="{H - BOTTOM}" class="axis"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{H - BOTTOM}" class="axis"/>',
    ]
    for i in range(TICKS + 1):
        value = step * i
        y = _y(value, top)
        if i:
            parts.append(
                f'<line x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" y2="{y:.1f}" class="grid"/>'
            )
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">'
            f"{tick_label(value)}</text>"
        )
    middle = (TOP + H - BOTTOM) / 2
    parts.append(
        f'<text x="14" y="{middle:.1f}" text-anchor="middle" class="axis-label y-label" '
        f'transform="rotate(-90 14 {middle:.1f})">{escape(unit)}</text>'
    )
    parts.append(
        f'<text x="{(LEFT + W - RIGHT) / 2:.1f}" y="{H - 10}" text-anchor="middle" '
        f'class="axis-label x-label">{escape(x_label)}</text>'
    )
    return "".join(parts)


def _figure(parts: Sequence[str], title: str, legend: list[tuple[str, str]]) -> str:
    items = "".join(
        f'<li><i style="background:{color}"></i>{escape(name)}</li>' for name, color in legend
    )
    return (
        '<figure class="chart-box">'
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" '
        f'role="img" aria-label="{escape(title)}" class="chart">' + "".join(parts) + "</svg>"
        f'<ul class="legend">{items}</ul></figure>'
    )
