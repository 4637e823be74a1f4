"""A seeded month of alerts for the response-time tests, and its figures worked out by hand.

February 2026 in Brussels (UTC+1): ISO weeks 6 to 9, Monday 2 February to Sunday 1 March.
The figures are taken on Monday 2 March 2026 at 10:00 UTC (``tests.conftest.FIXED_NOW``),
so the default period (the 4 full weeks before this one) is exactly this month.

Rota (primary shifts, UTC):
* Marie-Françoise: 2 Feb 07:00 to 16 Feb 07:00;
* Jean-Sébastien: 15 Feb 19:00 to 23 Feb 07:00 (a handover: from 15 Feb 19:00 his shift,
  started later, is the one on call);
* Anaïs: 23 Feb 07:00 to 28 Feb 07:00; nobody after (no rota).
* Jean-Sébastien is also backup all month: a backup is never "the clinician on call".

Alerts (created UTC; minutes to acknowledge / to resolve; the primary on call):

== ======== =================== ========= ========= =================
id severity created (UTC)       ack       resolve   on call
== ======== =================== ========= ========= =================
a1 urgent   1 Feb 23:30         12        95        no rota (Mon 2 Feb 00:30 local: in W06)
a2 urgent   3 Feb 09:00         8         300       Marie-Françoise
a3 high     4 Feb 14:00         600       2000      Marie-Françoise
a4 routine  6 Feb 10:00         3000 (r)  3000      Marie-Françoise
a5 urgent   10 Feb 02:00        25        180       Marie-Françoise
a6 urgent   12 Feb 16:00        15        2880      Marie-Françoise (acknowledged by Anaïs)
a7 high     15 Feb 20:00        1500      1600      Jean-Sébastien (handover)
a8 urgent   17 Feb 08:00        5         60        Jean-Sébastien
a9 urgent   19 Feb 22:00        40        4000      Jean-Sébastien
a10 high    21 Feb 12:00        200       open      Jean-Sébastien
a11 urgent  24 Feb 07:30        10        120       Anaïs
a12 urgent  27 Feb 03:00        open      open      Anaïs
a13 high    1 Mar 09:00         open      open      no rota
a14 routine 1 Mar 20:00         open      open      no rota
== ======== =================== ========= ========= =================

(r): resolved without an acknowledgement; resolving acknowledges it at the same moment.
Left out: an alert of 1 Feb 22:30 UTC (Sun 1 Feb 23:30 local, before the period), one of
1 Mar 23:30 UTC (Mon 2 Mar 00:30 local, after it) and another team's alert of 12 Feb.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from backend.schemas import PatientIn
from backend.services.patients import create_patient
from backend.services.teams import create_user
from reminders.data.alerts import acknowledge_alert, raise_alert, resolve_alert
from reminders.data.models import OnCallShift, Team, User
from reminders.data.statuses import OnCallRole

TEAM = "Hématologie — Cliniques universitaires Saint-Luc"
OTHER_TEAM = "Hématologie — CHU Liège-Sart Tilman"
PASSWORD = "correct horse battery staple"
MARIE = "Marie-Françoise Van den Bossche-Lefèvre"
JEAN = "Jean-Sébastien Dupont-Lemaître"
ANAIS = "Anaïs Verhaegen-Nguyễn"
PATIENTS = ("Éloïse Vandenbroucke-Dæhlie", "Zoë Ménard-d’Hondt")
ADMIN_EMAIL = "marie-francoise.vandenbossche@saintluc.example"
NURSE_EMAIL = "anais.verhaegen@saintluc.example"
OTHER_EMAIL = "benedicte.lheureux@chuliege.example"


def utc(month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """An instant of 2026 in UTC."""
    return datetime(2026, month, day, hour, minute, tzinfo=UTC)


@dataclass
class Month:
    """The seeded team: its users and the alert ids by their name in the table above."""

    team_id: int
    marie: User
    jean: User
    anais: User
    other: User
    alerts: dict[str, int]


#: (name, severity, created, minutes to acknowledge or None, minutes to resolve or None,
#: who acknowledges: "oncall" or a user key). A resolution without acknowledgement: ack None.
ALERTS = (
    ("a1", "urgent", utc(2, 1, 23, 30), 12, 95, "marie"),
    ("a2", "urgent", utc(2, 3, 9), 8, 300, "marie"),
    ("a3", "high", utc(2, 4, 14), 600, 2000, "marie"),
    ("a4", "routine", utc(2, 6, 10), None, 3000, "marie"),
    ("a5", "urgent", utc(2, 10, 2), 25, 180, "marie"),
    ("a6", "urgent", utc(2, 12, 16), 15, 2880, "anais"),
    ("a7", "high", utc(2, 15, 20), 1500, 1600, "jean"),
    ("a8", "urgent", utc(2, 17, 8), 5, 60, "jean"),
    ("a9", "urgent", utc(2, 19, 22), 40, 4000, "jean"),
    ("a10", "high", utc(2, 21, 12), 200, None, "jean"),
    ("a11", "urgent", utc(2, 24, 7, 30), 10, 120, "anais"),
    ("a12", "urgent", utc(2, 27, 3), None, None, None),
    ("a13", "high", utc(3, 1, 9), None, None, None),
    ("a14", "routine", utc(3, 1, 20), None, None, None),
    ("before", "urgent", utc(2, 1, 22, 30), 3, 30, "marie"),
    ("after", "urgent", utc(3, 1, 23, 30), None, None, None),
)


def seed_month(session: Session, now: datetime) -> Month:
    """Create the team, its rota, two patients and the alerts of the table (committed)."""
    created = utc(1, 15, 9)
    marie = create_user(
        session, email=ADMIN_EMAIL, team_name=TEAM, role="admin", now=created,
        password=PASSWORD, name=MARIE, care_phone="+32 2 764 11 11",
    )  # fmt: skip
    jean = create_user(
        session, email="jean-sebastien.dupont@saintluc.example", team_name=TEAM,
        role="physician", now=created, password=PASSWORD, name=JEAN,
    )  # fmt: skip
    anais = create_user(
        session, email=NURSE_EMAIL, team_name=TEAM, role="nurse", now=created,
        password=PASSWORD, name=ANAIS,
    )  # fmt: skip
    other = create_user(
        session, email=OTHER_EMAIL, team_name=OTHER_TEAM, role="admin", now=created,
        password=PASSWORD, name="Bénédicte L’Heureux-Van Acker", care_phone="+32 4 366 71 11",
    )  # fmt: skip
    team_id = marie.team_id
    for user, role, starts, ends in (
        (marie, OnCallRole.PRIMARY, utc(2, 2, 7), utc(2, 16, 7)),
        (jean, OnCallRole.PRIMARY, utc(2, 15, 19), utc(2, 23, 7)),
        (anais, OnCallRole.PRIMARY, utc(2, 23, 7), utc(2, 28, 7)),
        (jean, OnCallRole.BACKUP, utc(1, 31, 0), utc(3, 3, 0)),
    ):
        session.add(
            OnCallShift(
                team_id=team_id, user_id=user.id, role=role, starts_at=starts, ends_at=ends,
                created_by=marie.id, created_at=created,
            )
        )  # fmt: skip
    patients = [
        create_patient(
            session,
            team_id,
            PatientIn(display_name=name, phone=f"+32 470 55 66 7{i}", sms_consent=True),
            created,
            region="BE",
        )
        for i, name in enumerate(PATIENTS)
    ]
    stranger = create_patient(
        session,
        other.team_id,
        PatientIn(display_name="Léopold Dubois-Ørsted", phone="+32 470 55 66 99", sms_consent=True),
        created,
        region="BE",
    )
    users = {"marie": marie, "jean": jean, "anais": anais}
    alerts: dict[str, int] = {}
    for i, (name, severity, at, ack, resolve, by) in enumerate(ALERTS):
        alert = raise_alert(
            session,
            patients[i % 2],
            severity=severity,
            kind="fever" if severity == "urgent" else "symptom",
            reason="Température 38,6 °C et frissons",
            now=at,
        )
        if ack is not None:
            acknowledge_alert(session, alert, users[by].id, at + timedelta(minutes=ack))
        if resolve is not None:
            resolve_alert(
                session,
                alert,
                users[by].id,
                "Rappelée, vue aux urgences",
                at + timedelta(minutes=resolve),
            )
        alerts[name] = alert.id
    # Another team's alert in the period: never in this team's figures.
    alerts["other_team"] = raise_alert(
        session, stranger, severity="urgent", kind="fever", reason="Fièvre", now=utc(2, 12, 16)
    ).id
    team = session.get(Team, team_id)
    assert team.timezone == "Europe/Brussels" and now >= utc(3, 2, 0)
    session.commit()
    return Month(team_id, marie, jean, anais, other, alerts)
