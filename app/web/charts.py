"""Small server-side SVG charts for the dashboard (no JavaScript, no CDN)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

PALETTE = ("#2563eb", "#16a34a", "#d97706", "#9333ea", "#dc2626", "#0891b2", "#4b5563")
W, H, PAD = 560, 180, 34


def _scale(values: Sequence[float]) -> float:
    top = max(values, default=0.0)
    return top if top > 0 else 1.0


def line_chart(series: dict[str, list[float]], unit: str, title: str) -> str:
    """One line per series (e.g. run duration per channel, oldest run first)."""
    points_max = max((len(v) for v in series.values()), default=0)
    top = _scale([x for v in series.values() for x in v])
    parts = [_frame(title, top, unit)]
    if points_max == 0:
        parts.append(
            f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="empty">'
            "no finished runs yet</text>"
        )
    step = (W - 2 * PAD) / max(points_max - 1, 1)
    for i, (name, values) in enumerate(sorted(series.items())):
        color = PALETTE[i % len(PALETTE)]
        coords = [
            (PAD + j * step, H - PAD - (v / top) * (H - 2 * PAD)) for j, v in enumerate(values)
        ]
        if len(coords) == 1:
            x, y = coords[0]
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
        elif coords:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                f'points="{path}"><title>{escape(name)}</title></polyline>'
            )
        parts.append(
            f'<text x="{W - PAD + 4}" y="{PAD + 12 * i}" fill="{color}" '
            f'class="legend">{escape(name)}</text>'
        )
    return _svg(parts, title)


def bar_chart(
    rows: list[tuple[str, float, float]],
    title: str,
    labels: tuple[str, str] = ("published", "failed"),
) -> str:
    """Paired bars per row (e.g. published and failed units per run)."""
    top = _scale([max(a, b) for _, a, b in rows])
    parts = [_frame(title, top, "units")]
    if not rows:
        parts.append(
            f'<text x="{W / 2}" y="{H / 2}" text-anchor="middle" class="empty">no runs yet</text>'
        )
    slot = (W - 2 * PAD) / max(len(rows), 1)
    bar = max(2.0, slot / 2.5)
    for j, (name, a, b) in enumerate(rows):
        x = PAD + j * slot
        for k, (value, color) in enumerate(((a, PALETTE[1]), (b, PALETTE[4]))):
            height = (value / top) * (H - 2 * PAD)
            parts.append(
                f'<rect x="{x + k * bar:.1f}" y="{H - PAD - height:.1f}" width="{bar:.1f}" '
                f'height="{height:.1f}" fill="{color}"><title>{escape(name)}: '
                f"{escape(labels[k])} {value:g}</title></rect>"
            )
    parts.append(
        f'<text x="{W - PAD + 4}" y="{PAD}" fill="{PALETTE[1]}" class="legend">'
        f"{escape(labels[0])}</text>"
    )
    parts.append(
        f'<text x="{W - PAD + 4}" y="{PAD + 12}" fill="{PALETTE[4]}" class="legend">'
        f"{escape(labels[1])}</text>"
    )
    return _svg(parts, title)


def _frame(title: str, top: float, unit: str) -> str:
    return (
        f'<text x="{PAD}" y="14" class="title">{escape(title)}</text>'
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" class="axis"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" class="axis"/>'
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end" class="tick">{top:.3g}</text>'
        f'<text x="{PAD - 4}" y="{H - PAD}" text-anchor="end" class="tick">0</text>'
        f'<text x="{PAD}" y="{H - 8}" class="tick">{escape(unit)}, oldest to newest</text>'
    )


def _svg(parts: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W + 120} {H}" '
        f'role="img" aria-label="{escape(title)}" class="chart">' + "".join(parts) + "</svg>"
    )
