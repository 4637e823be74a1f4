"""The SVG chart builders: pure functions, well-formed and accessible SVG."""

from __future__ import annotations

import ast
import inspect
import xml.etree.ElementTree as ET
from datetime import UTC, date, datetime, timedelta

from backend.dashboard import charts

SVG = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    assert root.get("role") == "img"
    title_id, desc_id = root.get("aria-labelledby").split()
    assert root.find(f"{SVG}title").get("id") == title_id
    assert root.find(f"{SVG}desc").get("id") == desc_id
    assert root.get("viewBox").startswith("0 0 ")
    return root


def test_charts_import_neither_flask_nor_the_database() -> None:
    tree = ast.parse(inspect.getsource(charts))
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not {
        m for m in imported if m.split(".")[0] in {"flask", "sqlmodel", "sqlalchemy", "backend"}
    }


def test_temperature_chart_has_the_fever_line_points_and_risk_windows() -> None:
    start = date(2026, 3, 2)
    readings = [
        (datetime(2026, 3, 3, 17, 0, tzinfo=UTC), 37.2),
        (datetime(2026, 3, 20, 17, 0, tzinfo=UTC), 38.6),
    ]
    bands = [
        charts.RiskBand(
            start + timedelta(days=14), start + timedelta(days=55), "CMV reactivation", "cmv"
        ),
        charts.RiskBand(
            start, start + timedelta(days=6), "First week <reactions>", "infusion_reactions"
        ),
    ]
    svg = charts.temperature_chart(
        readings, first=start, last=start + timedelta(days=83), threshold_c=38.0, bands=bands
    )
    root = parse(svg)
    desc = root.find(f"{SVG}desc").text
    assert "2 temperature readings" in desc and "1 at or above 38.0" in desc
    assert "38.0 °C" in svg and "&lt;reactions&gt;" in svg  # labels are escaped
    circles = root.findall(f".//{SVG}circle")
    assert len(circles) == 2
    fever = [c for c in circles if c.get("fill") == charts.RED]
    assert len(fever) == 1 and "38.6" in fever[0].find(f"{SVG}title").text
    # Each window: a lane above the plot and a shade inside it.
    shaded = [r for r in root.findall(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(shaded) == 4


def test_temperature_chart_without_readings_says_so() -> None:
    svg = charts.temperature_chart(
        [], first=date(2026, 3, 2), last=date(2026, 3, 2), threshold_c=38.0
    )
    assert "No readings yet" in parse(svg).find(f"{SVG}desc").text


def test_cmv_chart_is_logarithmic_with_the_action_threshold() -> None:
    results = [
        (datetime(2026, 3, 9, tzinfo=UTC), 0.0),
        (datetime(2026, 3, 16, tzinfo=UTC), 800.0),
        (datetime(2026, 3, 23, tzinfo=UTC), 25_000.0),
    ]
    root = parse(charts.cmv_chart(results, act_above=10_000))
    desc = root.find(f"{SVG}desc").text
    assert "latest 25,000 copies/mL, rising" in desc and "Logarithmic" in desc
    labels = [t.text for t in root.findall(f"{SVG}text")]
    assert "10,000" in labels and "100,000" in labels and "act above 10,000" in labels


def test_timeline_marks_each_status_and_holds() -> None:
    start = date(2026, 3, 2)
    doses = [
        charts.DoseMark(start, "given", "Dose 1"),
        charts.DoseMark(start + timedelta(days=2), "missed", "Dose 2"),
        charts.DoseMark(start + timedelta(days=4), "scheduled", "Dose 3"),
        charts.DoseMark(start + timedelta(days=11), "scheduled", "Dose 4"),
    ]
    root = parse(
        charts.plan_timeline_chart(
            doses,
            holds=[(start + timedelta(days=5), None)],
            first=start,
            last=start + timedelta(days=20),
            today=start + timedelta(days=6),
        )
    )
    desc = root.find(f"{SVG}desc").text
    assert "1 given, 1 missed, 1 upcoming, 1 past and not recorded; 1 hold(s)" in desc
    titles = [t.text for t in root.iter(f"{SVG}title")]
    assert "On hold from 7 Mar (still on hold)" in titles
    assert "today" in [t.text for t in root.findall(f"{SVG}text")]


def test_adherence_chart_counts_confirmations() -> None:
    days = [(date(2026, 3, 1), 2, 2), (date(2026, 3, 2), 2, 1), (date(2026, 3, 3), 0, 0)]
    root = parse(charts.adherence_chart(days))
    assert root.find(f"{SVG}desc").text == "3 of 4 pill reminders confirmed over 3 days."
    assert "2 Mar: 1 of 2 confirmed" in [t.text for t in root.iter(f"{SVG}title")]
