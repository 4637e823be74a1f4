"""An SMS over its segment budget shows in what operators read: ``reminders dispatch --once``.

The dispatcher still sends it; its warning names the row and the template only, and the
pass's line counts it (``over_budget``), with no text and no phone number (issue 15, item 4).
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta

from sqlmodel import select

from reminders.core.regimens import get_regimen
from reminders.core.templates import get_template, render, segments
from reminders.data.models import OutboundMessage
from reminders.outbox import insert_ignoring_duplicates, outbox_row
from tests.conftest import reread
from tests.reminders.conftest import dispatcher_environment


def test_dispatch_once_reports_the_sms_over_budget_without_their_text(
    database_url, session, make_user, make_patient, fake_twilio
) -> None:
    user, _ = make_user()
    patient = make_patient(user.team_id, language="fr", sms_consent=False)
    patient.sms_consent = True
    patient.quiet_start = patient.quiet_end  # the real clock: no quiet hours to wait for
    session.add(patient)
    session.commit()
    # The regimen's sentences for the care team, not the SMS's short names: two segments.
    long = render(
        "premedication_reminder",
        "fr",
        time="08:00",
        premedication="; ".join(i.text for i in get_regimen("alemtuzumab_iv").premedication.items),
        drug="alemtuzumab",
    )
    assert segments(long).segments > get_template("premedication_reminder", "fr").max_segments
    due = datetime.now(UTC) - timedelta(minutes=1)
    rows = [
        outbox_row(
            team_id=patient.team_id,
            patient_id=patient.id,
            kind=kind,
            body=body,
            dedupe_key=f"budget:{kind}",
            now=due,
        )
        for kind, body in (
            ("premedication_reminder", long),
            ("pill_taken_ack", render("pill_taken_ack", "fr")),
        )
    ]
    insert_ignoring_duplicates(session, rows)
    session.commit()

    done = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "backend", "reminders", "dispatch", "--once"],
        env=dispatcher_environment(database_url, fake_twilio.base_url),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert len(fake_twilio.messages) == 2  # still sent
    assert "premedication_reminder takes 2 segments, over its budget of 1" in output
    assert "'sent': 2" in output and "'over_budget': 1" in output  # the pass's line
    assert "paracetamol" not in output and "Rappel" not in output
    assert patient.phone not in output and patient.phone.removeprefix("+") not in output
    sent = reread(session).exec(select(OutboundMessage.status)).all()
    assert set(sent) == {"sent"}
