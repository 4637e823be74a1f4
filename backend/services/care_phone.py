"""The team's care phone: no patient is given SMS while their team has none.

Every SMS to a patient tells them to call the team's care phone ("Questions? Call ...",
"call your care team now on ..."), so the rule is kept where SMS start and where the
number could go:

* a patient is enrolled with SMS consent, or their consent is turned on, only while
  their team has a care phone (:func:`require_care_phone`; API 409, dashboard form);
* a team's care phone is not removed while an active patient of the team has SMS
  consent (:func:`refuse_removal`); it may be changed.

Nothing else starts patient SMS: a plan, a prophylaxis course or a START reply plans
them only for a patient with consent (``reminders.planning``, ``sms_allowed`` in
``reminders.rendering``), who passed this gate. Teams that broke the rule before it
existed are reported by ``flask --app backend doctor`` (:func:`teams_without_care_phone`);
their SMS name the emergency number instead (``reminders.core.templates.render``).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, func, or_
from sqlmodel import Session, select

from reminders.data.errors import Conflict
from reminders.data.models import Patient, Team

#: The refusal of SMS to a patient of a team without a care phone (the field: the form's).
SET_CARE_PHONE_FIRST = (
    "set the team's care phone first (Team settings, 'Number patients call'): every SMS "
    "tells the patient to call it; an admin of the team sets it"
)
#: The refusal to remove the number while patients have SMS.
CARE_PHONE_IN_USE = (
    "{count} active patient(s) of this team have SMS consent, and every SMS tells them to "
    "call this number: give another number instead, or turn their SMS consent off first"
)


def has_sms() -> ColumnElement[bool]:
    """The patients whose SMS name their team's care phone: consent given, in care, not erased.

    An opted-out or unreachable patient counts: a START reply or a new number gives them
    SMS again without anyone from the team being asked.
    """
    return (
        Patient.sms_consent.is_(True)
        & Patient.discharged_at.is_(None)
        & Patient.erased_at.is_(None)
    )


def _no_care_phone() -> ColumnElement[bool]:
    return or_(Team.care_phone.is_(None), Team.care_phone == "")


def sms_patient_count(session: Session, team_id: int) -> int:
    """How many active patients of ``team_id`` have SMS consent."""
    query = select(func.count()).select_from(Patient).where(Patient.team_id == team_id, has_sms())
    return int(session.exec(query).one())


def require_care_phone(session: Session, team_id: int) -> None:
    """Conflict (field ``sms_consent``) when ``team_id`` has no care phone.

    The team's row is read FOR SHARE until the commit, so that an admin removing the
    number at the same moment waits for this enrolment and then counts it (nurses
    enrolling together do not wait for each other). SQLite's write transaction already
    serialises writers.
    """
    phone = session.exec(
        select(Team.care_phone).where(Team.id == team_id).with_for_update(read=True)
    ).first()
    if not phone:
        raise Conflict(SET_CARE_PHONE_FIRST, field="sms_consent")


def refuse_removal(session: Session, team: Team, new_care_phone: str | None) -> None:
    """Conflict (field ``care_phone``) when the change removes the number patients with SMS call.

    Only a removal is refused: a team that has no number yet may save its other settings
    (the on-call fallback number) as before. The team's row is locked (FOR NO KEY UPDATE:
    rows that merely refer to the team are not held up) before the count, so that an
    enrolment with SMS under way is either counted or sees the number gone.
    """
    if new_care_phone or not team.care_phone:
        return
    session.exec(select(Team.id).where(Team.id == team.id).with_for_update(key_share=True))
    count = sms_patient_count(session, team.id)
    if count:
        raise Conflict(CARE_PHONE_IN_USE.format(count=count), field="care_phone")


def teams_without_care_phone(session: Session) -> list[tuple[int, str, int]]:
    """Teams with no care phone and active patients with SMS consent: (id, name, how many)."""
    rows = session.exec(
        select(Team.id, Team.name, func.count(Patient.id))
        .join(Patient, Patient.team_id == Team.id)
        .where(_no_care_phone(), has_sms())
        .group_by(Team.id, Team.name)
        .order_by(Team.id)
    ).all()
    return [(int(team_id), name, int(count)) for team_id, name, count in rows]
