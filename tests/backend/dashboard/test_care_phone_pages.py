"""No patient SMS without the team's care phone, on the care-team pages.

Enrolling with SMS consent or ticking it on the edit form is refused (409, the form shown
again with the refusal by the consent box) while the team has no care phone; on the Team
page the number is not removed while active patients have SMS consent (409, by the
field), but may be changed, and a team that has none may still save its on-call number.
"""

from __future__ import annotations

import html

from sqlalchemy import update
from sqlmodel import select

from backend.services.care_phone import SET_CARE_PHONE_FIRST
from reminders.data.models import Patient, Team
from tests.backend.dashboard.conftest import post_form, sign_in
from tests.conftest import reread

TEAM = "Hématologie — Cliniques universitaires Saint-Luc"
FORM = {
    "display_name": "Marie-Thérèse Vandenbroucke-Delacroix",
    "phone": "0470 55 66 77",
    "timezone": "Europe/Brussels",
    "language": "fr",
    "pill_times": "08:00, 20:00",
}


def text(response) -> str:
    return html.unescape(response.get_data(as_text=True))


def test_enrolment_and_edit_with_sms_are_refused_until_the_team_has_a_care_phone(
    client, team_user, session
) -> None:
    nurse = team_user(TEAM, "nurse", care_phone=None)
    assert sign_in(client, nurse.email).status_code == 302

    refused = post_form(client, "/patients/new", {**FORM, "sms_consent": "on"})

    assert refused.status_code == 409
    page = text(refused)
    assert 'id="f-sms_consent-error"' in page
    assert SET_CARE_PHONE_FIRST[0].upper() + SET_CARE_PHONE_FIRST[1:] in page
    assert "Marie-Thérèse Vandenbroucke-Delacroix" in page  # what was typed is kept
    reread(session)
    assert session.exec(select(Patient)).all() == []

    enrolled = post_form(client, "/patients/new", FORM)
    assert enrolled.status_code == 302
    reread(session)
    [patient] = session.exec(select(Patient)).all()
    assert patient.sms_consent is False

    edited = post_form(client, f"/patients/{patient.id}/edit", {**FORM, "sms_consent": "on"})
    assert edited.status_code == 409 and 'id="f-sms_consent-error"' in text(edited)
    reread(session)
    assert session.get(Patient, patient.id).sms_consent is False


def test_the_care_phone_is_not_removed_while_patients_have_sms(
    client, team_user, make_patient, session
) -> None:
    admin = team_user(TEAM, "admin", care_phone="+32 2 764 11 11")
    patient = make_patient(admin.team_id)  # SMS consent given
    assert sign_in(client, admin.email).status_code == 302

    removed = post_form(client, "/admin/team", {"care_phone": "", "oncall_phone": ""}, "/admin")

    assert removed.status_code == 409
    page = text(removed)
    assert 'id="phones-f-care_phone-error"' in page
    assert "1 active patient(s) of this team have SMS consent" in page
    reread(session)
    assert session.get(Team, admin.team_id).care_phone == "+3227641111"

    changed = post_form(
        client, "/admin/team", {"care_phone": "02 764 22 22", "oncall_phone": ""}, "/admin"
    )
    assert changed.status_code == 302
    reread(session)
    assert session.get(Team, admin.team_id).care_phone == "+3227642222"

    # Once no active patient has SMS consent, the number may go.
    session.exec(update(Patient).where(Patient.id == patient.id).values(sms_consent=False))
    session.commit()
    cleared = post_form(client, "/admin/team", {"care_phone": "", "oncall_phone": ""}, "/admin")
    assert cleared.status_code == 302
    reread(session)
    assert session.get(Team, admin.team_id).care_phone is None


def test_a_team_without_a_number_may_still_save_its_on_call_number(
    client, team_user, make_patient, session
) -> None:
    """A team from before the rule (patients with SMS, no care phone): saving the on-call
    number is no removal, and the fallback for urgent pages must never be held up."""
    admin = team_user(TEAM, "admin", care_phone="+32 2 764 11 11")
    make_patient(admin.team_id)
    session.exec(update(Team).where(Team.id == admin.team_id).values(care_phone=None))
    session.commit()
    assert sign_in(client, admin.email).status_code == 302

    saved = post_form(
        client, "/admin/team", {"care_phone": "", "oncall_phone": "0470 99 99 99"}, "/admin"
    )

    assert saved.status_code == 302
    reread(session)
    assert session.get(Team, admin.team_id).oncall_phone == "+32470999999"
