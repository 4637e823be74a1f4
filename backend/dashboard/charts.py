"""Server-side SVG charts of the patient page: pure functions of plain values.

No Flask, no database: each builder takes dates and numbers and returns an SVG
string (escaped, safe to embed). Every chart is ``role="img"`` with a
``<title>`` and ``<desc>``; the page also gives a text alternative (a summary
and a small table). The viewBox is narrow (360 units) so that labels stay
readable on a 360 px phone, and the SVG scales with its container.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from html import escape

WIDTH = 360
FONT = 13
INK = "#1f1f1f"
MUTED = "#4a4a4a"
GRID = "#d0d0d0"
BLUE = "#1d4f91"
RED = "#b3261e"
GREEN = "#1e6b35"
GREY = "#5f6368"
#: Fill of each kind of risk window (light, so marks and text on top keep their contrast).
BAND_FILLS = {
    "cmv": "#fde2c4",
    "low_neutrophils": "#dbe7fb",
    "low_platelets": "#f1dcf4",
    "infusion_reactions": "#dcefe1",
}
DEFAULT_BAND_FILL = "#ececec"
HOLD_FILL = "#e8e8e8"


@dataclass(frozen=True)
class RiskBand:
    """A risk window of the regimen, as local dates (both inclusive)."""

    first: date
    last: date
    label: str
    kind: str


@dataclass(frozen=True)
class DoseMark:
    """One dose on the timeline: its date and status (given, missed, scheduled, cancelled...)."""

    on: date
    status: str
    label: str


def svg_attributes(**values: object) -> str:
    return " ".join(
        f'{key.rstrip("_").replace("_", "-")}="{escape(str(value), quote=True)}"'
        for key, value in values.items()
        if value is not None
    )


def svg_document(chart_id: str, height: float, title: str, desc: str, body: list[str]) -> str:
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    return (
        f'<svg class="chart" id="{escape(chart_id)}" viewBox="0 0 {WIDTH} {height:.0f}" '
        f'role="img" aria-labelledby="{escape(title_id)} {escape(desc_id)}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="system-ui, sans-serif" '
        f'font-size="{FONT}">'
        f'<title id="{escape(title_id)}">{escape(title)}</title>'
        f'<desc id="{escape(desc_id)}">{escape(desc)}</desc>' + "".join(body) + "</svg>"
    )


def svg_text(x: float, y: float, content: str, **extra: object) -> str:
    extra.setdefault("fill", INK)
    return f"<text {svg_attributes(x=f'{x:.1f}', y=f'{y:.1f}', **extra)}>{escape(content)}</text>"


def _day_label(day: date) -> str:
    return f"{day.day} {day.strftime('%b')}"


def _as_day(value: date | datetime, origin: date, zone_offset: timedelta | None = None) -> float:
    """Days since ``origin`` (a datetime gives a fraction of a day)."""
    if isinstance(value, datetime):
        moment = value
        local = moment + zone_offset if zone_offset else moment
        day = local.date()
        fraction = (local.hour * 3600 + local.minute * 60 + local.second) / 86400
        return (day - origin).days + fraction
    return float((value - origin).days)


@dataclass(frozen=True)
class _Frame:
    """Plot area and the mapping from data to SVG coordinates."""

    left: float
    right: float
    top: float
    bottom: float
    x_min: float
    x_max: float
    y_min: float
    y_max: float

    def x(self, value: float) -> float:
        span = (self.x_max - self.x_min) or 1.0
        return self.left + (value - self.x_min) / span * (self.right - self.left)

    def y(self, value: float) -> float:
        span = (self.y_max - self.y_min) or 1.0
        return self.bottom - (value - self.y_min) / span * (self.bottom - self.top)


def _date_ticks(first: date, last: date, frame: _Frame, origin: date) -> list[str]:
    """Vertical grid lines and date labels, about five across the axis."""
    days = max((last - first).days, 1)
    step = max(1, math.ceil(days / 5 / 7) * 7) if days > 14 else max(1, math.ceil(days / 5))
    out = []
    day = first
    while day <= last:
        x = frame.x(_as_day(day, origin))
        out.append(
            f"<line {svg_attributes(x1=f'{x:.1f}', x2=f'{x:.1f}', y1=frame.top, y2=frame.bottom, stroke=GRID)}/>"
        )
        anchor = "start" if x < 24 else ("end" if x > WIDTH - 24 else "middle")
        out.append(svg_text(x, frame.bottom + 16, _day_label(day), text_anchor=anchor, fill=MUTED))
        day += timedelta(days=step)
    return out


def _legend(items: Sequence[tuple[str, str]], y: float) -> tuple[list[str], float]:
    """Colour swatches with labels, wrapped over lines; returns the parts and the next free y."""
    out: list[str] = []
    x, line_height = 8.0, 18.0
    for fill, label in items:
        width = 18 + len(label) * FONT * 0.52
        if x + width > WIDTH - 4 and x > 8:
            x, y = 8.0, y + line_height
        out.append(
            f"<rect {svg_attributes(x=f'{x:.1f}', y=f'{y - 10:.1f}', width=12, height=12, fill=fill, stroke=GREY)}/>"
        )
        out.append(svg_text(x + 16, y, label))
        x += width + 10
    return out, y + line_height


def temperature_chart(
    readings: Sequence[tuple[datetime, float]],
    *,
    first: date,
    last: date,
    threshold_c: float,
    bands: Sequence[RiskBand] = (),
    utc_offset: timedelta | None = None,
    chart_id: str = "temperature-chart",
) -> str:
    """Temperatures reported over the course, the fever line and the risk windows shaded.

    ``readings`` are (instant, degrees C); ``utc_offset`` places them on the
    patient's local days. ``first``..``last`` is the course (local dates).
    """
    last = max(last, first + timedelta(days=1))
    values = [t for _, t in readings]
    y_min = math.floor(min([35.5, *values]) * 2) / 2
    y_max = math.ceil(max([39.5, threshold_c + 1, *values]) * 2) / 2
    # One lane per risk window above the plot (they overlap in time), and a light shade below.
    lanes = list(dict.fromkeys(b.label for b in bands))
    lane_height = 7.0
    top = 10 + len(lanes) * (lane_height + 2)
    frame = _Frame(
        42, WIDTH - 10, top + 6, top + 176, 0.0, float((last - first).days + 1), y_min, y_max
    )
    body: list[str] = []
    for band in bands:
        x1 = frame.x(_as_day(max(band.first, first), first))
        x2 = frame.x(_as_day(min(band.last, last), first) + 1)
        if x2 <= x1:
            continue
        fill = BAND_FILLS.get(band.kind, DEFAULT_BAND_FILL)
        lane_y = 10 + lanes.index(band.label) * (lane_height + 2)
        tip = f"<title>{escape(band.label)}: {_day_label(band.first)} to {_day_label(band.last)}</title>"
        body.append(
            f"<rect {svg_attributes(x=f'{x1:.1f}', y=f'{lane_y:.1f}', width=f'{x2 - x1:.1f}', height=lane_height, fill=fill, stroke=GREY, stroke_width=0.5)}>{tip}</rect>"
        )
        body.append(
            f"<rect {svg_attributes(x=f'{x1:.1f}', y=frame.top, width=f'{x2 - x1:.1f}', height=frame.bottom - frame.top, fill=fill, fill_opacity='0.45')}>{tip}</rect>"
        )
    step = 0.5 if y_max - y_min <= 5 else 1.0
    value = y_min
    while value <= y_max + 1e-9:
        y = frame.y(value)
        body.append(
            f"<line {svg_attributes(x1=frame.left, x2=frame.right, y1=f'{y:.1f}', y2=f'{y:.1f}', stroke=GRID)}/>"
        )
        if abs(value - round(value)) < 1e-9:
            body.append(
                svg_text(frame.left - 6, y + 4, f"{value:.0f}°", text_anchor="end", fill=MUTED)
            )
        value += step
    body.extend(_date_ticks(first, last, frame, first))
    threshold_y = frame.y(threshold_c)
    body.append(
        f"<line {svg_attributes(x1=frame.left, x2=frame.right, y1=f'{threshold_y:.1f}', y2=f'{threshold_y:.1f}', stroke=RED, stroke_width=2, stroke_dasharray='6 4')}/>"
    )
    body.append(
        svg_text(
            frame.right - 2, threshold_y - 5, f"{threshold_c:.1f} °C", text_anchor="end", fill=RED
        )
    )
    points = sorted(
        (frame.x(_as_day(at, first, utc_offset)), frame.y(t), t, at) for at, t in readings
    )
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
        body.append(
            f"<polyline {svg_attributes(points=path, fill='none', stroke=BLUE, stroke_width=1.5)}/>"
        )
    for x, y, t, at in points:
        fever = t >= threshold_c
        local = at + utc_offset if utc_offset else at
        label = f"{t:.1f} °C on {_day_label(local.date())} {local:%H:%M}"
        body.append(
            f"<circle {svg_attributes(cx=f'{x:.1f}', cy=f'{y:.1f}', r=5 if fever else 3.5, fill=RED if fever else BLUE, stroke='#ffffff', stroke_width=1)}>"
            f"<title>{escape(label)}</title></circle>"
        )
    axis_y = frame.bottom
    body.append(
        f"<line {svg_attributes(x1=frame.left, x2=frame.right, y1=axis_y, y2=axis_y, stroke=MUTED)}/>"
    )
    legend_items = [(RED, f"fever line {threshold_c:.1f} °C")]
    seen: set[str] = set()
    for band in bands:
        if band.label not in seen:
            seen.add(band.label)
            legend_items.append((BAND_FILLS.get(band.kind, DEFAULT_BAND_FILL), band.label))
    legend, height = _legend(legend_items, frame.bottom + 40)
    body.extend(legend)
    fevers = sum(1 for t in values if t >= threshold_c)
    desc = (
        f"{len(values)} temperature readings from {_day_label(first)} to {_day_label(last)}; "
        f"{fevers} at or above {threshold_c:.1f} °C. "
        + (f"Highest {max(values):.1f} °C. " if values else "No readings yet. ")
        + (
            "Shaded: "
            + "; ".join(f"{b.label} ({_day_label(b.first)}–{_day_label(b.last)})" for b in bands)
            if bands
            else ""
        )
    )
    return svg_document(chart_id, height, "Temperature over the course", desc.strip(), body)


def cmv_chart(
    results: Sequence[tuple[datetime, float]],
    *,
    act_above: float,
    chart_id: str = "cmv-chart",
) -> str:
    """CMV PCR copies/mL over time on a logarithmic scale, with the action threshold."""
    ordered = sorted(results)
    if ordered:
        first, last = ordered[0][0].date(), ordered[-1][0].date()
    else:
        first = last = datetime.now(UTC).date()
    last = max(last, first + timedelta(days=7))
    top_exp = max(5, math.ceil(math.log10(max([act_above, *[v for _, v in ordered], 1]) * 1.5)))
    frame = _Frame(58, WIDTH - 12, 14, 170, 0.0, float((last - first).days + 1), 0.0, top_exp)

    def level(copies: float) -> float:
        return math.log10(copies) if copies >= 1 else 0.0

    body: list[str] = []
    for exponent in range(0, top_exp + 1):
        y = frame.y(exponent)
        body.append(
            f"<line {svg_attributes(x1=frame.left, x2=frame.right, y1=f'{y:.1f}', y2=f'{y:.1f}', stroke=GRID)}/>"
        )
        label = "0" if exponent == 0 else f"{10**exponent:,}"
        body.append(svg_text(frame.left - 6, y + 4, label, text_anchor="end", fill=MUTED))
    body.extend(_date_ticks(first, last, frame, first))
    y_threshold = frame.y(level(act_above))
    body.append(
        f"<line {svg_attributes(x1=frame.left, x2=frame.right, y1=f'{y_threshold:.1f}', y2=f'{y_threshold:.1f}', stroke=RED, stroke_width=2, stroke_dasharray='6 4')}/>"
    )
    body.append(
        svg_text(
            frame.right - 2,
            y_threshold - 5,
            f"act above {act_above:,.0f}",
            text_anchor="end",
            fill=RED,
        )
    )
    points = [
        (frame.x(_as_day(at.date(), first) + 0.5), frame.y(level(v)), v, at) for at, v in ordered
    ]
    if len(points) > 1:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y, _, _ in points)
        body.append(
            f"<polyline {svg_attributes(points=path, fill='none', stroke=BLUE, stroke_width=1.5)}/>"
        )
    for x, y, value, at in points:
        high = value > act_above
        body.append(
            f"<circle {svg_attributes(cx=f'{x:.1f}', cy=f'{y:.1f}', r=5 if high else 3.5, fill=RED if high else BLUE, stroke='#ffffff', stroke_width=1)}>"
            f"<title>{escape(f'{value:,.0f} copies/mL on {_day_label(at.date())}')}</title></circle>"
        )
    body.append(
        f"<line {svg_attributes(x1=frame.left, x2=frame.right, y1=frame.bottom, y2=frame.bottom, stroke=MUTED)}/>"
    )
    rising = len(ordered) >= 2 and ordered[-1][1] > ordered[-2][1] > 0
    desc = (
        f"{len(ordered)} CMV PCR results"
        + (f", latest {ordered[-1][1]:,.0f} copies/mL" if ordered else "")
        + (", rising" if rising else "")
        + f". Action threshold {act_above:,.0f} copies/mL. Logarithmic scale."
    )
    return svg_document(chart_id, frame.bottom + 28, "CMV PCR trend (copies/mL)", desc, body)


def plan_timeline_chart(
    doses: Sequence[DoseMark],
    *,
    holds: Sequence[tuple[date, date | None]],
    first: date,
    last: date,
    today: date,
    chart_id: str = "plan-timeline",
) -> str:
    """The doses of a plan along the calendar: given, missed, upcoming, cancelled; holds shaded."""
    last = max(last, first + timedelta(days=7), today)
    frame = _Frame(12, WIDTH - 12, 30, 70, 0.0, float((last - first).days + 1), 0.0, 1.0)
    body: list[str] = []
    for start, end in holds:
        x1 = frame.x(_as_day(max(start, first), first))
        x2 = frame.x(_as_day(min(end or last + timedelta(days=1), last + timedelta(days=1)), first))
        if x2 > x1:
            label = f"On hold from {_day_label(start)}" + (
                f" to {_day_label(end)}" if end else " (still on hold)"
            )
            body.append(
                f"<rect {svg_attributes(x=f'{x1:.1f}', y=frame.top - 8, width=f'{x2 - x1:.1f}', height=frame.bottom - frame.top + 16, fill=HOLD_FILL, stroke=GREY, stroke_dasharray='3 3')}>"
                f"<title>{escape(label)}</title></rect>"
            )
    body.extend(_date_ticks(first, last, frame, first))
    mid = (frame.top + frame.bottom) / 2
    body.append(
        f"<line {svg_attributes(x1=frame.left, x2=frame.right, y1=mid, y2=mid, stroke=MUTED)}/>"
    )
    for dose in doses:
        x = frame.x(_as_day(dose.on, first) + 0.5)
        kind = "unrecorded" if dose.status == "scheduled" and dose.on < today else dose.status
        body.append(_dose_marker(x, mid, kind, f"<title>{escape(dose.label)}</title>"))
    if first <= today <= last:
        x = frame.x(_as_day(today, first) + 0.5)
        body.append(
            f"<line {svg_attributes(x1=f'{x:.1f}', x2=f'{x:.1f}', y1=frame.top - 12, y2=frame.bottom + 4, stroke=INK, stroke_width=1.5)}/>"
        )
        body.append(svg_text(x, frame.top - 14, "today", text_anchor="middle"))
    legend_y, x = frame.bottom + 44, 12.0
    for kind, label in (
        ("given", "given"),
        ("missed", "missed"),
        ("scheduled", "upcoming"),
        ("unrecorded", "not recorded"),
        ("on_hold", "on hold"),
    ):
        width = 22 + len(label) * FONT * 0.52
        if x + width > WIDTH - 4:
            x, legend_y = 12.0, legend_y + 18
        if kind == "on_hold":
            body.append(
                f"<rect {svg_attributes(x=f'{x - 6:.1f}', y=f'{legend_y - 10:.1f}', width=12, height=12, fill=HOLD_FILL, stroke=GREY, stroke_dasharray='3 3')}/>"
            )
        else:
            body.append(_dose_marker(x, legend_y - 4, kind, ""))
        body.append(svg_text(x + 10, legend_y, label))
        x += width + 8
    height = legend_y + 12
    counts = {s: sum(1 for d in doses if d.status == s) for s in ("given", "missed", "cancelled")}
    unrecorded = sum(1 for d in doses if d.status == "scheduled" and d.on < today)
    upcoming = len(doses) - sum(counts.values()) - unrecorded
    desc = (
        f"{len(doses)} doses from {_day_label(first)} to {_day_label(last)}: "
        f"{counts['given']} given, {counts['missed']} missed, {upcoming} upcoming"
        + (f", {unrecorded} past and not recorded" if unrecorded else "")
        + (f", {counts['cancelled']} cancelled" if counts["cancelled"] else "")
        + (f"; {len(holds)} hold(s)" if holds else "")
        + "."
    )
    return svg_document(chart_id, height, "Treatment timeline", desc, body)


def _dose_marker(x: float, y: float, kind: str, tip: str) -> str:
    """The mark of one dose: filled (given), cross (missed), dash (cancelled), hollow (to come)."""
    if kind == "given":
        return f"<circle {svg_attributes(cx=f'{x:.1f}', cy=f'{y:.1f}', r=5, fill=GREEN)}>{tip}</circle>"
    if kind == "missed":
        path = f"M{x - 5:.1f},{y - 5:.1f} l10,10 m0,-10 l-10,10"
        return f"<path {svg_attributes(d=path, stroke=RED, stroke_width=2.5)}>{tip}</path>"
    if kind == "cancelled":
        return f"<line {svg_attributes(x1=f'{x - 4:.1f}', x2=f'{x + 4:.1f}', y1=f'{y:.1f}', y2=f'{y:.1f}', stroke=GREY, stroke_width=3)}>{tip}</line>"
    if kind == "unrecorded":
        return f"<circle {svg_attributes(cx=f'{x:.1f}', cy=f'{y:.1f}', r=4.5, fill='#ffffff', stroke=GREY, stroke_width=2, stroke_dasharray='2 2')}>{tip}</circle>"
    return f"<circle {svg_attributes(cx=f'{x:.1f}', cy=f'{y:.1f}', r=4.5, fill='#ffffff', stroke=BLUE, stroke_width=2)}>{tip}</circle>"


def adherence_chart(
    days: Sequence[tuple[date, int, int]], *, chart_id: str = "adherence-chart"
) -> str:
    """Pill reminders confirmed per day: ``days`` are (date, reminders sent, confirmed)."""
    frame = _Frame(42, WIDTH - 8, 12, 112, 0.0, float(max(len(days), 1)), 0.0, 100.0)
    body: list[str] = []
    for percent in (0, 50, 100):
        y = frame.y(percent)
        body.append(
            f"<line {svg_attributes(x1=frame.left, x2=frame.right, y1=f'{y:.1f}', y2=f'{y:.1f}', stroke=GRID)}/>"
        )
        body.append(svg_text(frame.left - 4, y + 4, f"{percent}%", text_anchor="end", fill=MUTED))
    slot = (frame.right - frame.left) / max(len(days), 1)
    for i, (day, sent, confirmed) in enumerate(days):
        x = frame.left + i * slot + slot * 0.15
        label = f"{_day_label(day)}: {confirmed} of {sent} confirmed"
        if sent == 0:
            body.append(
                f"<rect {svg_attributes(x=f'{x:.1f}', y=frame.bottom - 2, width=f'{slot * 0.7:.1f}', height=2, fill=GREY)}><title>{escape(_day_label(day))}: no reminder</title></rect>"
            )
            continue
        percent = 100.0 * confirmed / sent
        y = frame.y(percent)
        fill = GREEN if percent >= 80 else ("#8a5300" if percent >= 50 else RED)
        body.append(
            f"<rect {svg_attributes(x=f'{x:.1f}', y=f'{y:.1f}', width=f'{slot * 0.7:.1f}', height=f'{max(frame.bottom - y, 2):.1f}', fill=fill)}><title>{escape(label)}</title></rect>"
        )
    if days:
        for i in (0, len(days) - 1):
            x = frame.left + i * slot + slot / 2
            body.append(
                svg_text(
                    x, frame.bottom + 16, _day_label(days[i][0]), text_anchor="middle", fill=MUTED
                )
            )
    sent_total = sum(s for _, s, _ in days)
    confirmed_total = sum(c for _, _, c in days)
    desc = (
        f"{confirmed_total} of {sent_total} pill reminders confirmed over {len(days)} days."
        if sent_total
        else f"No pill reminders sent in the last {len(days)} days."
    )
    return svg_document(chart_id, frame.bottom + 24, "Pill reminders confirmed per day", desc, body)
