"""``deploy/``: the Grafana dashboard and the Prometheus alert rules name only metrics the app
exports, the rules are valid YAML with the shape Prometheus loads (and pass ``promtool``
where it is installed), and the dashboard shows every metric the app exports.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from reminders.data.models import CheckIn, PlanningPass
from reminders.metrics import events

DEPLOY = Path(__file__).parents[2] / "deploy"
RULES = DEPLOY / "prometheus-alerts.yml"
DASHBOARD = DEPLOY / "grafana-dashboard.json"
TOKEN = "p8Qm3vTz0bWcY7rKx2LhN5sJd9GfA1eU4oRiMkVt6yE"
#: Series Prometheus makes itself (not the app's).
PROMETHEUS_OWN = {"up"}
#: The rules every operator needs (issue 16): stuck outbox, clock, urgent alert, Twilio.
REQUIRED_ALERTS = {
    "CompanionOutboxStuck",
    "CompanionClockNotRunning",
    "CompanionUrgentAlertUnacknowledged",
    "CompanionTwilioErrorRate",
}
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def metric_names(expression: str) -> set[str]:
    """The series an expression selects: our ``companion_`` names, and Prometheus's own."""
    names = set(re.findall(r"\bcompanion_[a-z_]+\b", expression))
    names |= {name for name in PROMETHEUS_OWN if re.search(rf"\b{name}\{{", expression)}
    return names


def rule_expressions() -> dict[str, str]:
    document = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    rules = [rule for group in document["groups"] for rule in group["rules"]]
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in {"critical", "warning"}
        assert rule["annotations"]["summary"]
    return {rule["alert"]: rule["expr"] for rule in rules}


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.fixture
def exported(app, client, session, make_user, make_patient, clock) -> set[str]:
    """Every series name one scrape exports, with a planning pass and a settled check-in
    in the database and every event metric built."""
    app.config["METRICS_TOKEN"] = TOKEN
    user, _ = make_user()
    patient = make_patient(user.team_id)
    session.add(PlanningPass(planned_at=clock.now, planned_from=clock.now, planned_until=clock.now))
    session.add(
        CheckIn(
            patient_id=patient.id,
            event_key="checkin:1",
            state="closed",
            opened_at=clock.now - timedelta(hours=2),
            last_prompt_at=clock.now - timedelta(hours=2),
        )
    )
    session.commit()
    events()  # built on first use: a fresh process has not sent anything yet
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    return {
        family.name + suffix
        for family in text_string_to_metric_families(text)
        # A one-process registry also exports each series' creation time (multiprocess
        # mode does not): not a metric anyone charts.
        if not family.name.endswith("_created")
        for suffix in SUFFIXES[family.type]
    }


def test_the_alert_rules_cover_what_an_operator_must_know() -> None:
    assert set(rule_expressions()) >= REQUIRED_ALERTS


def test_every_metric_the_rules_and_the_dashboard_use_is_exported(exported) -> None:
    for name, expression in rule_expressions().items():
        assert metric_names(expression) - PROMETHEUS_OWN <= exported, name
    for expression in dashboard_expressions():
        assert metric_names(expression) <= exported, expression


def test_the_dashboard_shows_every_metric_the_app_exports(exported) -> None:
    shown = set().union(*(metric_names(e) for e in dashboard_expressions()))
    families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in exported}
    shown_families = {re.sub(r"_(total|bucket|count|sum)$", "", name) for name in shown}
    assert families <= shown_families


def test_the_dashboard_reads_its_prometheus_from_a_variable() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "mab-companion"
    sources = {panel["datasource"]["uid"] for panel in dashboard["panels"]}
    assert sources == {"${datasource}"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))


def promtool() -> str:
    """Debian's promtool (scripts/test installs it); a local run without it skips, CI fails."""
    found = shutil.which("promtool")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is not installed (scripts/test installs Debian's prometheus)")
        pytest.skip("promtool is not installed")
    return found


def test_promtool_accepts_the_rules() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_fire_on_a_stuck_outbox_a_stopped_clock_an_unanswered_alert_and_errors() -> None:
    """``deploy/prometheus-alerts.test.yml``: series in, the alerts expected out."""
    result = subprocess.run(
        [promtool(), "test", "rules", str(DEPLOY / "prometheus-alerts.test.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
