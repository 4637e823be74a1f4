"""The response-time chart: the share of alerts answered within target, one bar per measure.

A pure function of plain values, like the patient page's charts (:mod:`backend.dashboard.charts`,
whose SVG helpers it reuses): ``role="img"``, a ``<title>`` and a ``<desc>`` that states
every figure drawn; the page also gives the same figures as tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from backend.dashboard.charts import (
    BLUE,
    FONT,
    GREY,
    GRID,
    MUTED,
    WIDTH,
    svg_attributes,
    svg_document,
    svg_text,
)

TRACK = "#ececec"
#: Minutes in a day, and from how long a time is written in days (below it, in hours).
_DAY = 24 * 60
_DAYS_FROM = 3 * _DAY


def format_minutes(minutes: float | None) -> str:
    """A duration as people read it: "12 min", "15.4 min", "25 h", "10 h 5 min", "8 d 22 h".

    Under an hour to a tenth of a minute (so 15.4 minutes never reads as a 15-minute target
    met); longer ones to the minute below.
    """
    if minutes is None:
        return "—"
    if minutes < 60:
        text = f"{minutes:.1f}".removesuffix(".0")
        return f"{text} min"
    whole = int(minutes)
    days, rest = divmod(whole, _DAY) if whole >= _DAYS_FROM else (0, whole)
    hours, mins = divmod(rest, 60)
    parts = [
        f"{days} d" if days else "",
        f"{hours} h" if hours else "",
        f"{mins} min" if mins else "",
    ]
    return " ".join(part for part in parts if part)


def format_share(within: int, judged: int) -> str:
    """A share as a percentage with at most one decimal: 5 of 8 -> "62.5%", none judged -> "—"."""
    if judged == 0:
        return "—"
    return f"{100 * within / judged:.1f}".removesuffix(".0") + "%"


@dataclass(frozen=True)
class ShareBar:
    """One measure of one severity: its label, the alerts within target and those judged."""

    label: str
    within: int
    judged: int
    #: The median and p90 in words, written under the bar.
    note: str


def share_chart(bars: Sequence[ShareBar], *, chart_id: str = "response-chart") -> str:
    """Horizontal bars, 0 to 100%: the share of judged alerts answered within target."""
    left, right = 8.0, WIDTH - 8.0
    body: list[str] = []
    y = 8.0
    for bar in bars:
        y += FONT + 2
        body.append(svg_text(left, y, bar.label))
        share_text = f"{bar.within} of {bar.judged} ({format_share(bar.within, bar.judged)})"
        body.append(
            svg_text(right, y, share_text if bar.judged else "none judged yet", text_anchor="end")
        )
        top = y + 5
        body.append(
            f"<rect {svg_attributes(x=left, y=f'{top:.1f}', width=f'{right - left:.1f}', height=14, fill=TRACK, stroke=GREY)}/>"
        )
        if bar.judged and bar.within:
            width = (right - left) * bar.within / bar.judged
            body.append(
                f"<rect {svg_attributes(x=left, y=f'{top:.1f}', width=f'{width:.1f}', height=14, fill=BLUE)}/>"
            )
        y = top + 14 + FONT + 3
        body.append(svg_text(left, y, bar.note, fill=MUTED))
        y += 10
    axis = y + 4
    for percent in (0, 50, 100):
        x = left + (right - left) * percent / 100
        anchor = "start" if percent == 0 else ("end" if percent == 100 else "middle")
        body.append(
            f"<line {svg_attributes(x1=f'{x:.1f}', x2=f'{x:.1f}', y1=f'{axis - 6:.1f}', y2=f'{axis:.1f}', stroke=GRID)}/>"
        )
        body.append(svg_text(x, axis + FONT + 1, f"{percent}%", text_anchor=anchor, fill=MUTED))
    if bars:
        desc = "; ".join(
            f"{bar.label}: {bar.within} of {bar.judged} within target"
            + (f" ({format_share(bar.within, bar.judged)})" if bar.judged else "")
            + f", {bar.note}"
            for bar in bars
        )
    else:
        desc = "No alert with a target in this period."
    return svg_document(
        chart_id, axis + FONT + 8, "Alerts answered within target", desc + ".", body
    )
