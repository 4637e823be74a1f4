"""``flask reminders run-due --now``: one pass as of an injected instant."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlmodel import select

from reminders.data.models import OutboundMessage
from tests.conftest import reread


def test_run_due_sends_what_is_due_at_the_given_instant(
    app, session, make_user, make_patient, make_plan, clock, capsys
) -> None:
    clock.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    user, _ = make_user()
    patient = make_patient(user.team_id)
    make_plan(patient, "alemtuzumab_sc", date(2026, 3, 2))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reminders", "run-due", "--now", "2026-03-02T07:30:00+01:00"])
    assert result.exit_code == 0, result.output
    summary = dict(item.split("=") for item in result.output.strip().splitlines()[-1].split())
    assert int(summary["sent"]) >= 2 and int(summary["planned"]) > 0
    reread(session)
    sent = session.exec(select(OutboundMessage).where(OutboundMessage.status == "sent")).all()
    assert {"welcome", "dose_reminder_morning"} <= {m.kind for m in sent}
    assert all(m.provider_sid.startswith("CONSOLE") for m in sent)


def test_run_due_refuses_an_instant_without_an_offset(app) -> None:
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reminders", "run-due", "--now", "2026-03-02T07:30:00"])
    assert result.exit_code == 2 and "offset" in result.output
    assert runner.invoke(args=["reminders", "run-due", "--now", "yesterday"]).exit_code == 2
