"""The treatment calendar from the care-team pages: the printed page and the family's links.

A nurse makes a link (shown once), a phone fetches ``/calendar/<token>.ics`` without signing
in and reads valid iCalendar (parsed by ``icalendar``) whose doses and blood tests are the
planner's; the nurse revokes it and the link is a bare 404, the same as a link that never
existed. Another team's user can neither make nor revoke one. The token is stored only
as its digest. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import icalendar
import pytest
from flask.testing import FlaskClient
from sqlalchemy import text as sql
from sqlmodel import Session, SQLModel, select

from reminders.core.clinical_rules import emergency_fallback, urgent_advice
from reminders.core.planner import EventKind, plan_doses, plan_events
from reminders.core.regimens import get_regimen
from reminders.data.models import AuditEvent, CalendarFeed, Patient, Plan, User
from reminders.specs import load_plan_spec
from tests.backend.dashboard.conftest import post_form, sign_in
from tests.conftest import reread

NAME = "Marie-Françoise Vanden Bossche-Lefèvre"
_LINK = re.compile(r"https://companion\.test/calendar/([A-Za-z0-9_-]{43})\.ics")


def page_text(response) -> str:
    return response.get_data(as_text=True)


@pytest.fixture
def french_patient(
    signed_in: Callable[..., User], treated: Callable[..., tuple[Patient, Plan]]
) -> tuple[User, Patient, Plan]:
    """A nurse signed in, and a French-speaking patient of her team on alemtuzumab s.c."""
    nurse = signed_in("Hématologie — Saint-Luc")
    patient, plan = treated(nurse.team_id, display_name=NAME, language="fr")
    return nurse, patient, plan


def make_link(client: FlaskClient, patient_id: int, label: str = "Téléphone de sa fille"):
    return post_form(
        client,
        f"/patients/{patient_id}/calendar/feeds",
        {"label": label},
        f"/patients/{patient_id}/calendar",
    )


def token_of(response) -> str:
    tokens = set(_LINK.findall(page_text(response)))
    assert len(tokens) == 1, "the answer shows the new link (and no other)"
    return tokens.pop()


def test_a_link_is_shown_once_and_a_phone_reads_the_planners_calendar(
    client: FlaskClient,
    session: Session,
    french_patient: tuple[User, Patient, Plan],
    caplog: pytest.LogCaptureFixture,
) -> None:
    nurse, patient, plan = french_patient
    page = client.get(f"/patients/{patient.id}")
    assert f'href="/patients/{patient.id}/calendar"' in page_text(page)
    with caplog.at_level(logging.DEBUG):
        created = make_link(client, patient.id)
        assert created.status_code == 201, page_text(created)
        token = token_of(created)
        assert "shown only this once" in page_text(created)
        assert f"webcal://companion.test/calendar/{token}.ics" in page_text(created)
        assert created.headers["Cache-Control"] == "no-store"

        phone = client.application.test_client()  # no cookie: a phone's calendar app
        first = phone.get(f"/calendar/{token}.ics")
        second = phone.get(f"/calendar/{token}.ics")
    assert first.status_code == 200, page_text(first)
    assert first.headers["Content-Type"] == "text/calendar; charset=utf-8"
    assert first.headers["Cache-Control"] == "private, no-store"
    assert first.headers["Referrer-Policy"] == "no-referrer"
    assert token not in caplog.text

    # Valid iCalendar, read back by an independent parser.
    calendar = icalendar.Calendar.from_ical(first.data)
    events = list(calendar.walk("VEVENT"))
    spec = load_plan_spec(reread(session), plan, patient)
    now = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
    doses = [d.at_utc for d in plan_doses(spec) if d.at_utc is not None]
    labs = [
        e.at_utc
        for e in plan_events(spec, now - timedelta(days=30), now + timedelta(days=120))
        if e.kind == EventKind.LAB
    ]
    assert sorted(e["DTSTART"].dt for e in events) == sorted(doses + labs)
    uids = [str(e["UID"]) for e in events]
    assert len(set(uids)) == len(uids) == 48
    again = icalendar.Calendar.from_ical(second.data)
    assert [str(e["UID"]) for e in again.walk("VEVENT")] == uids  # stable across fetches
    assert {str(e["SUMMARY"]) for e in events} == {
        "Injection : alemtuzumab, à l'hôpital",
        "Injection : alemtuzumab",
        "Prise de sang (CMV)",
    }
    body = first.data.decode("utf-8")
    assert "+32 2 555 01 23" in body  # the number patients call, as the SMS write it
    # No patient name, no diagnosis, no hospital reference.
    for private in ("Marie", "Vanden", "Lefèvre", get_regimen("alemtuzumab_sc").disease, "CLL"):
        assert private not in body

    # The token is kept only as its digest, in no column of any table, and the fetch is noted.
    feed = reread(session).exec(select(CalendarFeed)).one()
    assert feed.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert feed.label == "Téléphone de sa fille" and feed.created_by == nurse.id
    assert feed.last_fetched_at is not None
    for table in SQLModel.metadata.sorted_tables:
        dump = repr(session.execute(sql(f'SELECT * FROM "{table.name}"')).all())
        assert token not in dump, table.name
    # Not shown again: the links page lists it by its label only.
    listing = page_text(client.get(f"/patients/{patient.id}/calendar"))
    assert token not in listing and "Téléphone de sa fille" in listing
    assert ("create_calendar_feed", f"calendar_feed:{feed.id}") in audit_rows(session, patient)


def audit_rows(session: Session, patient: Patient) -> list[tuple[str, str | None]]:
    rows = reread(session).exec(
        select(AuditEvent).where(AuditEvent.patient_id == patient.id).order_by(AuditEvent.id)
    )
    return [(r.action, r.target) for r in rows]


def test_a_revoked_link_is_a_bare_404_like_one_that_never_existed(
    client: FlaskClient, session: Session, french_patient: tuple[User, Patient, Plan]
) -> None:
    _, patient, _ = french_patient
    token = token_of(make_link(client, patient.id))
    phone = client.application.test_client()
    assert phone.get(f"/calendar/{token}.ics").status_code == 200
    feed = reread(session).exec(select(CalendarFeed)).one()
    revoked = post_form(
        client,
        f"/patients/{patient.id}/calendar/feeds/{feed.id}/revoke",
        {},
        f"/patients/{patient.id}/calendar",
    )
    assert revoked.status_code == 302
    assert "revoked" in page_text(client.get(revoked.headers["Location"]))
    gone = phone.get(f"/calendar/{token}.ics")
    never = phone.get(f"/calendar/{'A' * 43}.ics")
    odd = phone.get("/calendar/not-a-token.ics")
    for answer in (gone, never, odd):
        assert answer.status_code == 404
        assert answer.data == never.data == b"Not found"
        assert answer.headers["Cache-Control"] == "private, no-store"
    assert ("revoke_calendar_feed", f"calendar_feed:{feed.id}") in audit_rows(session, patient)
    # Revoking twice is refused in place; the row keeps its first revocation.
    again = post_form(
        client,
        f"/patients/{patient.id}/calendar/feeds/{feed.id}/revoke",
        {},
        f"/patients/{patient.id}/calendar",
    )
    assert again.status_code == 409 and "revoked already" in page_text(again)


def test_a_discharged_patients_links_stop(
    client: FlaskClient, session: Session, french_patient: tuple[User, Patient, Plan], clock
) -> None:
    nurse, patient, _ = french_patient
    token = token_of(make_link(client, patient.id))
    # Discharged (the discharge service's own rules are tested elsewhere): the row says so.
    stored = reread(session).get(Patient, patient.id)
    stored.discharged_at = clock.now
    stored.discharged_by = nurse.id
    session.add(stored)
    session.commit()
    assert client.application.test_client().get(f"/calendar/{token}.ics").status_code == 404
    refused = make_link(client, patient.id, "Son fils")
    assert refused.status_code == 409 and "discharged" in page_text(refused)


def test_another_teams_user_can_neither_make_nor_revoke_a_link(
    app, session: Session, french_patient: tuple[User, Patient, Plan], team_user
) -> None:
    nurse_client = app.test_client()
    _, patient, _ = french_patient
    sign_in(nurse_client, reread(session).exec(select(User)).first().email)
    token = token_of(make_link(nurse_client, patient.id))
    feed = reread(session).exec(select(CalendarFeed)).one()

    stranger = team_user("Hôpital d'ailleurs")
    other = app.test_client()
    assert sign_in(other, stranger.email).status_code == 302
    page = other.get(f"/patients/{patient.id}/calendar")
    printed = other.get(f"/patients/{patient.id}/calendar/print")
    made = post_form(other, f"/patients/{patient.id}/calendar/feeds", {"label": "Pirate"})
    revoke = post_form(other, f"/patients/{patient.id}/calendar/feeds/{feed.id}/revoke", {})
    for answer in (page, printed, made, revoke):
        assert answer.status_code == 404
        assert NAME not in page_text(answer)
    feeds = reread(session).exec(select(CalendarFeed)).all()
    assert len(feeds) == 1 and feeds[0].revoked_at is None
    assert app.test_client().get(f"/calendar/{token}.ics").status_code == 200
    refused = [
        r
        for r in session.exec(select(AuditEvent).where(AuditEvent.user_id == stranger.id))
        if r.action == "refused_other_team"
    ]
    assert len(refused) == 4 and all(r.team_id == patient.team_id for r in refused)


def test_a_feed_of_another_patient_of_the_team_cannot_be_revoked_through_this_one(
    client: FlaskClient,
    session: Session,
    french_patient: tuple[User, Patient, Plan],
    make_patient,
) -> None:
    nurse, patient, _ = french_patient
    token_of(make_link(client, patient.id))
    feed = reread(session).exec(select(CalendarFeed)).one()
    sibling = make_patient(nurse.team_id, display_name="Jean-Baptiste Van Damme")
    answer = post_form(client, f"/patients/{sibling.id}/calendar/feeds/{feed.id}/revoke", {})
    assert answer.status_code == 404
    assert reread(session).get(CalendarFeed, feed.id).revoked_at is None


def test_a_label_is_required_and_a_patient_has_at_most_five_working_links(
    client: FlaskClient, session: Session, french_patient: tuple[User, Patient, Plan]
) -> None:
    _, patient, _ = french_patient
    empty = make_link(client, patient.id, "   ")
    assert empty.status_code == 422 and 'id="feed-f-label-error"' in page_text(empty)
    for n in range(5):
        assert make_link(client, patient.id, f"Téléphone {n}").status_code == 201
    sixth = make_link(client, patient.id, "Téléphone 6")
    assert sixth.status_code == 409 and "revoke one first" in page_text(sixth)
    assert len(reread(session).exec(select(CalendarFeed)).all()) == 5


@pytest.mark.parametrize("discreet", [False, True])
def test_the_printed_page_is_in_the_patients_language_without_script(
    client: FlaskClient,
    session: Session,
    french_patient: tuple[User, Patient, Plan],
    discreet: bool,
) -> None:
    _, patient, _ = french_patient
    if discreet:
        row = reread(session).get(Patient, patient.id)
        row.discreet = True
        session.add(row)
        session.commit()
    answer = client.get(f"/patients/{patient.id}/calendar/print")
    assert answer.status_code == 200
    html = page_text(answer)
    assert '<html lang="fr">' in html and "<script" not in html
    assert "Mon calendrier de traitement" in html
    assert "Les 6 prochaines semaines, du lundi 2 mars au dimanche 12 avril." in html
    for sentence in (urgent_advice("fr"), emergency_fallback("fr")):
        assert sentence.replace("'", "&#39;") in html
    assert "+32 2 555 01 23" in html
    assert "Prise de sang" in html and "tous les jours" in html
    named = ("alemtuzumab", "cotrimoxazole", "aciclovir", "allopurinol")  # the SMS's names
    assert all((name in html) is not discreet for name in named)
    assert ("print_calendar", f"patient:{patient.id}") in audit_rows(session, patient)
