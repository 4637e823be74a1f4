"""The triage queue never drops alerts silently: urgent first, paged, with the total shown."""

from __future__ import annotations

import re
from datetime import timedelta

from backend.dashboard.queries import QUEUE_PAGE_SIZE
from reminders.data.models import Alert

NAME = "Marie-Françoise Van den Bossche-Lefèvre"
_ALERT_IDS = re.compile(r'data-alert-id="(\d+)"')


def _fill(session, team_id: int, patient_id: int, now) -> set[int]:
    """250 unresolved alerts: 240 older high ones, then 10 urgent ones, the newest."""
    alerts = [
        Alert(
            team_id=team_id,
            patient_id=patient_id,
            severity="high",
            kind="checkin_unanswered",
            reason=f"Symptom check-in not answered ({n})",
            created_at=now - timedelta(hours=5, minutes=n),
        )
        for n in range(240)
    ] + [
        Alert(
            team_id=team_id,
            patient_id=patient_id,
            severity="urgent",
            kind="fever",
            reason=f"Temperature 38.{n} °C reported by SMS",
            created_at=now - timedelta(minutes=n),
        )
        for n in range(10)
    ]
    session.add_all(alerts)
    session.commit()
    return {a.id for a in alerts if a.severity == "urgent"}


def test_250_alerts_show_urgent_first_and_say_how_many_wait(
    client, session, signed_in, make_patient, clock
) -> None:
    user = signed_in()
    patient = make_patient(user.team_id, display_name=NAME)
    urgent = _fill(session, user.team_id, patient.id, clock.now)

    first = client.get("/queue")
    assert first.status_code == 200
    html = first.get_data(as_text=True)
    shown = [int(i) for i in _ALERT_IDS.findall(html)]
    assert len(shown) == QUEUE_PAGE_SIZE == 200
    assert set(shown[:10]) == urgent  # every urgent alert on the first page, on top
    assert "250 open alerts" in html and "Showing 1–200 of 250." in html
    assert 'href="/queue?page=2"' in html

    second = client.get("/queue?page=2").get_data(as_text=True)
    rest = [int(i) for i in _ALERT_IDS.findall(second)]
    assert len(rest) == 50 and not set(rest) & set(shown)
    assert "Showing 201–250 of 250." in second and 'href="/queue?page=1"' in second
    assert "page=3" not in second


def test_a_short_queue_has_no_pages_and_a_bad_page_is_the_first(
    client, session, signed_in, make_patient, clock
) -> None:
    user = signed_in()
    patient = make_patient(user.team_id, display_name=NAME)
    session.add(
        Alert(
            team_id=user.team_id,
            patient_id=patient.id,
            severity="urgent",
            kind="fever",
            reason="Temperature 39.1 °C reported by SMS",
            created_at=clock.now,
        )
    )
    session.commit()
    for url in ("/queue", "/queue?page=abc", "/queue?page=-3"):
        response = client.get(url)
        html = response.get_data(as_text=True)
        assert response.status_code == 200, url
        assert len(_ALERT_IDS.findall(html)) == 1 and "Showing" not in html
    beyond = client.get("/queue?page=9").get_data(as_text=True)
    assert _ALERT_IDS.findall(beyond) == [] and "Back to the first page" in beyond
    assert "Showing" not in beyond
