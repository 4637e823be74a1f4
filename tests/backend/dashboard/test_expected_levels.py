"""Expected levels on the patient page: note, show, end; quieted readings marked; audited.

Issue 14, item 7 (hazard H-55), on SQLite and PostgreSQL, through the real pages and the
real SMS conversation.
"""

from __future__ import annotations

import html
from datetime import timedelta

from sqlmodel import select

from reminders.conversations import handle_inbound_sms
from reminders.data.models import AuditEvent, ExpectedLevel, SymptomReport
from tests.backend.dashboard.conftest import post_form
from tests.conftest import reread

REASON = "Perfusion de rituximab ce matin : fièvre légère attendue"


def page_of(client, patient) -> str:
    return html.unescape(client.get(f"/patients/{patient.id}").get_data(as_text=True))


def note(client, patient, **overrides):
    values = {"up_to_c": "37,8", "expires_at": "2026-03-03T09:00", "reason": REASON}
    return post_form(
        client,
        f"/patients/{patient.id}/expected-level",
        {**values, **overrides},
        page=f"/patients/{patient.id}",
    )


def sms(session, patient, body, now, sid):
    reread(session)  # a fresh transaction: the pages wrote meanwhile
    handle_inbound_sms(session, provider_sid=sid, from_phone=patient.phone, body=body, now=now)
    session.commit()


def test_a_nurse_notes_a_level_sees_the_quieted_reading_marked_and_ends_it(
    client, session, signed_in, make_patient, clock
) -> None:
    nurse = signed_in()
    nurse.name = "Marie-Françoise Van den Bossche-Lefèvre"
    session.add(nurse)
    session.commit()
    patient = make_patient(nurse.team_id, display_name="Anne-Sophie Dubois-Verhaegen")
    form = page_of(client, patient)
    assert 'id="expected-title"' in form and "Note expected level" in form
    assert 'value="2026-03-03T11:00"' in form  # until this time tomorrow, Brussels time

    saved = note(client, patient)
    assert saved.status_code == 302, saved.get_data(as_text=True)
    reread(session)
    level = session.exec(select(ExpectedLevel)).one()
    assert (level.up_to_c, level.reason, level.created_by) == (37.8, REASON, nurse.id)
    assert level.expires_at.isoformat() == "2026-03-03T08:00:00+00:00"  # 09:00 in Brussels
    shown = page_of(client, patient)
    assert "Expected up to 37.8 °C" in shown and REASON in shown and nurse.name in shown

    sms(session, patient, "37.7", clock.now + timedelta(minutes=5), "SMquiet")
    sms(session, patient, "37.9", clock.now + timedelta(minutes=10), "SMloud")
    shown = page_of(client, patient)
    reports = {r.temperature_c: r.id for r in session.exec(select(SymptomReport)).all()}
    # The quieted reading is marked with the reason and who noted it; the other is not.
    assert f'expected</span> <span class="small">{REASON}, noted by {nurse.name}' in shown
    assert shown.count(f'data-expected-level="{level.id}"') == 2  # the level and one reading
    assert reports.keys() == {37.7, 37.9}

    clock.advance(minutes=15)  # within the session's idle limit
    ended = post_form(
        client, f"/patients/{patient.id}/expected-level/end", {}, page=f"/patients/{patient.id}"
    )
    assert ended.status_code == 302
    shown = page_of(client, patient)
    assert "Note expected level" in shown and "Earlier levels (1)" in shown
    assert f"ended by {nurse.name}" in shown
    # Still marked: the reading was quieted while the level was in force.
    assert f"{REASON}, noted by {nurse.name}: no re-check" in shown
    reread(session)
    rows = session.exec(select(AuditEvent).where(AuditEvent.patient_id == patient.id)).all()
    changes = [(r.action, r.target, r.channel) for r in rows if "expected" in r.action]
    assert changes == [
        ("set_expected_level", f"expected_level:{level.id}", "dashboard"),
        ("end_expected_level", f"expected_level:{level.id}", "dashboard"),
    ]


def test_a_fever_level_is_refused_on_the_form_naming_the_field(
    client, session, signed_in, make_patient
) -> None:
    nurse = signed_in()
    patient = make_patient(nurse.team_id)
    for value, words in (("38,0", "below 38.0 C"), ("38.4", "below 38.0 C"), ("37", "37.5")):
        refused = note(client, patient, up_to_c=value)
        assert refused.status_code == 422
        text = html.unescape(refused.get_data(as_text=True))
        assert 'href="#expected-f-up_to_c"' in text and words in text
        assert f'value="{value}"' in text  # what was typed is shown again
    for fields, name in (
        ({"expires_at": "2026-03-20T09:00"}, "expires_at"),
        ({"expires_at": "not a date"}, "expires_at"),
        ({"reason": ""}, "reason"),
    ):
        refused = note(client, patient, **fields)
        assert refused.status_code == 422
        assert f'href="#expected-f-{name}"' in refused.get_data(as_text=True)
    reread(session)
    assert session.exec(select(ExpectedLevel)).all() == []
    actions = {r.action for r in session.exec(select(AuditEvent)).all()}
    assert "set_expected_level" not in actions


def test_a_second_level_and_ending_nothing_are_refused_politely(
    client, signed_in, make_patient
) -> None:
    nurse = signed_in()
    patient = make_patient(nurse.team_id)
    url = f"/patients/{patient.id}/expected-level/end"
    nothing = post_form(client, url, {}, page=f"/patients/{patient.id}")
    assert nothing.status_code == 409
    assert "No expected level is in force" in nothing.get_data(as_text=True)
    assert note(client, patient).status_code == 302
    # The form is gone while a level is in force; a second post is refused.
    second = note(client, patient, up_to_c="37.6")
    assert second.status_code == 409 and "end it before noting another" in second.get_data(
        as_text=True
    )


def test_another_teams_patient_is_a_404_and_changes_nothing(
    client, session, make_user, signed_in, make_patient
) -> None:
    owner, _ = make_user(team="Team A")
    patient = make_patient(owner.team_id)
    signed_in(team="Team B")
    assert note(client, patient).status_code == 404
    url = f"/patients/{patient.id}/expected-level/end"
    assert post_form(client, url, {}, page="/patients").status_code == 404
    reread(session)
    assert session.exec(select(ExpectedLevel)).all() == []
    refused = session.exec(
        select(AuditEvent).where(AuditEvent.action == "refused_other_team")
    ).all()
    assert {(r.team_id, r.patient_id) for r in refused} == {(owner.team_id, patient.id)}
