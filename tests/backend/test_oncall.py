"""The on-call rota, "on call now", a clinician's profile and the team's escalation policy.

Services of ``backend/services/oncall.py`` and ``backend/services/teams.py`` on SQLite and
PostgreSQL: local times in Europe/Brussels across both DST changes of 2026 (29 March,
02:00 -> 03:00; 25 October, 03:00 -> 02:00), handovers, deactivated clinicians,
refusals naming their field, and team isolation. Who is on call is always read back
through ``reminders.data.oncall.on_call``, the definition the engine pages by.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session, select

from backend.dashboard.team_admin import set_active
from backend.services.oncall import (
    MAX_SHIFT,
    add_shift,
    edit_shift,
    get_shift,
    list_rota,
    on_call_summary,
    remove_shift,
    reset_policy,
    set_policy,
    set_timezone,
)
from backend.services.teams import create_user, set_profile
from reminders.core.escalation import default_policy, policy_to_dict
from reminders.data.errors import Conflict, InvalidInput, NotFound
from reminders.data.models import OnCallShift, Team, User
from reminders.data.oncall import on_call, team_policy
from reminders.data.statuses import OnCallRole
from tests.conftest import FIXED_NOW

ANNE = "Dr Anne-Sophie Vandenbroucke-Lefèvre"
BRAM = "Bram Van den Heuvel-Dubois"
CLAIRE = "Claire-Marie Ngoy-Wauters"
PRIMARY, BACKUP = OnCallRole.PRIMARY, OnCallRole.BACKUP


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def ward(session: Session, make_user: Callable[..., Any]) -> dict[str, Any]:
    """Team "Hématologie — Saint-Luc": an admin and three clinicians with phones; another team."""
    admin, _ = make_user(team="Hématologie — Saint-Luc", role="admin", name="Admin Saint-Luc")
    anne, _ = make_user(
        team="Hématologie — Saint-Luc", role="physician", name=ANNE, phone="+32 470 11 22 33"
    )
    bram, _ = make_user(team="Hématologie — Saint-Luc", name=BRAM, phone="0470 22 33 44")
    claire, _ = make_user(team="Hématologie — Saint-Luc", name=CLAIRE, phone="+32470334455")
    stranger, _ = make_user(team="Onco-hématologie — CHU Liège", phone="+32 470 99 88 77")
    team = session.get(Team, admin.team_id)
    return {
        "team": team,
        "admin": admin,
        "anne": anne,
        "bram": bram,
        "claire": claire,
        "stranger": stranger,
    }


def shift(
    session: Session,
    ward: dict[str, Any],
    who: str,
    role: OnCallRole,
    starts: datetime,
    ends: datetime,
    now: datetime = FIXED_NOW,
) -> tuple[OnCallShift, list[str]]:
    made = add_shift(
        session,
        ward["team"],
        user_id=ward[who].id,
        role=role,
        starts_at=starts,
        ends_at=ends,
        actor=ward["admin"],
        now=now,
    )
    session.commit()
    return made


def who(session: Session, team: Team, role: OnCallRole, at: datetime) -> str | None:
    held = on_call(session, team.id, role, at)
    return held[1].name if held else None


# --- local times across the DST changes ---------------------------------------------------


def test_a_time_the_clocks_skip_moves_to_the_change_and_a_handover_there_is_seamless(
    session: Session, ward: dict[str, Any]
) -> None:
    # Sunday 29 March 2026: at 02:00 CET the clocks go to 03:00 CEST (01:00 UTC).
    night, notes = shift(
        session, ward, "anne", PRIMARY, datetime(2026, 3, 28, 20, 0), datetime(2026, 3, 29, 2, 30)
    )
    assert (night.starts_at, night.ends_at) == (utc(2026, 3, 28, 19, 0), utc(2026, 3, 29, 1, 0))
    assert notes == [
        "End: 02:30 does not exist on Sun 29 Mar 2026 in Europe/Brussels (the clocks go "
        "forward), so it is 03:00 CEST."
    ]
    day, notes = shift(
        session, ward, "bram", PRIMARY, datetime(2026, 3, 29, 2, 30), datetime(2026, 3, 29, 8, 0)
    )
    assert day.starts_at == night.ends_at == utc(2026, 3, 29, 1, 0)
    assert day.ends_at == utc(2026, 3, 29, 6, 0)  # 08:00 CEST
    assert len(notes) == 1 and notes[0].startswith("Start: 02:30 does not exist")
    team = ward["team"]
    assert who(session, team, PRIMARY, utc(2026, 3, 29, 0, 59, 59)) == ANNE
    assert who(session, team, PRIMARY, utc(2026, 3, 29, 1, 0)) == BRAM
    # The night 20:00 -> 08:00 is eleven hours long that night.
    full, notes = shift(
        session, ward, "claire", BACKUP, datetime(2026, 3, 28, 20, 0), datetime(2026, 3, 29, 8, 0)
    )
    assert full.ends_at - full.starts_at == timedelta(hours=11) and notes == []


def test_a_time_the_clocks_repeat_is_its_first_occurrence_and_the_night_is_thirteen_hours(
    session: Session, ward: dict[str, Any], clock
) -> None:
    clock.now = utc(2026, 10, 20, 9, 0)
    # Sunday 25 October 2026: at 03:00 CEST the clocks go back to 02:00 CET (01:00 UTC).
    night, notes = shift(
        session,
        ward,
        "anne",
        PRIMARY,
        datetime(2026, 10, 24, 20, 0),
        datetime(2026, 10, 25, 2, 30),
        now=clock.now,
    )
    assert night.ends_at == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, the first of the two
    assert notes == [
        "End: 02:30 happens twice on Sun 25 Oct 2026 in Europe/Brussels (the clocks go "
        "back); the first one is used, 02:30 CEST."
    ]
    after, _ = shift(
        session,
        ward,
        "bram",
        PRIMARY,
        datetime(2026, 10, 25, 2, 30),
        datetime(2026, 10, 25, 8, 0),
        now=clock.now,
    )
    assert after.starts_at == night.ends_at
    assert after.ends_at == utc(2026, 10, 25, 7, 0)  # 08:00 CET
    team = ward["team"]
    assert who(session, team, PRIMARY, utc(2026, 10, 25, 0, 29)) == ANNE
    assert who(session, team, PRIMARY, utc(2026, 10, 25, 1, 30)) == BRAM  # 02:30 CET
    full, _ = shift(
        session,
        ward,
        "claire",
        BACKUP,
        datetime(2026, 10, 24, 20, 0),
        datetime(2026, 10, 25, 8, 0),
        now=clock.now,
    )
    assert full.ends_at - full.starts_at == timedelta(hours=13)


def test_an_instant_with_its_offset_is_taken_as_it_is(
    session: Session, ward: dict[str, Any]
) -> None:
    made, notes = shift(
        session,
        ward,
        "anne",
        PRIMARY,
        datetime(2026, 3, 29, 2, 30, tzinfo=UTC),
        datetime(2026, 3, 29, 20, 0, tzinfo=UTC),
    )
    assert (made.starts_at, made.ends_at, notes) == (
        utc(2026, 3, 29, 2, 30),
        utc(2026, 3, 29, 20, 0),
        [],
    )


def test_a_rota_in_another_zone_reads_local_times_there_and_keeps_stored_instants(
    session: Session, ward: dict[str, Any]
) -> None:
    made, _ = shift(
        session, ward, "anne", PRIMARY, datetime(2026, 3, 3, 8, 0), datetime(2026, 3, 3, 20, 0)
    )
    set_timezone(session, ward["team"], " America/New_York ")
    session.commit()
    assert ward["team"].timezone == "America/New_York"
    assert session.get(OnCallShift, made.id).starts_at == utc(2026, 3, 3, 7, 0)
    later, _ = shift(
        session, ward, "bram", PRIMARY, datetime(2026, 3, 4, 8, 0), datetime(2026, 3, 4, 20, 0)
    )
    assert later.starts_at == utc(2026, 3, 4, 13, 0)  # 08:00 EST
    for bad in ("Europe/Atlantis", "", "../../etc/passwd", "UTC\x00"):
        with pytest.raises(InvalidInput) as refused:
            set_timezone(session, ward["team"], bad)
        assert refused.value.field == "timezone"


# --- who is on call -----------------------------------------------------------------------


def test_at_a_handover_overlap_the_shift_that_started_last_is_on_call(
    session: Session, ward: dict[str, Any]
) -> None:
    shift(session, ward, "anne", PRIMARY, datetime(2026, 3, 2, 8, 0), datetime(2026, 3, 2, 20, 30))
    shift(session, ward, "bram", PRIMARY, datetime(2026, 3, 2, 20, 0), datetime(2026, 3, 3, 8, 30))
    team = ward["team"]
    assert who(session, team, PRIMARY, utc(2026, 3, 2, 18, 59)) == ANNE  # 19:59 local
    assert who(session, team, PRIMARY, utc(2026, 3, 2, 19, 0)) == BRAM  # 20:00: handed over
    assert who(session, team, PRIMARY, utc(2026, 3, 2, 19, 20)) == BRAM
    assert who(session, team, PRIMARY, utc(2026, 3, 3, 7, 30)) is None  # 08:30: nobody


def test_a_deactivated_clinicians_shift_covers_nothing_and_the_summary_says_so(
    session: Session, ward: dict[str, Any], clock
) -> None:
    shift(session, ward, "anne", PRIMARY, datetime(2026, 3, 2, 8, 0), datetime(2026, 3, 2, 20, 0))
    team = ward["team"]
    assert who(session, team, PRIMARY, clock.now) == ANNE
    set_active(session, ward["anne"], False, ward["admin"], clock.now)
    session.commit()
    assert on_call(session, team.id, PRIMARY, clock.now) is None
    summary = on_call_summary(session, team, clock.now)
    assert summary.primary is None
    assert "Nobody is primary now." in summary.warnings
    (line,) = list_rota(session, team, clock.now, clock.now + timedelta(days=1))
    assert line.user.name == ANNE and line.covers is False


def test_on_call_now_names_both_roles_the_fallback_and_the_gaps_of_the_next_24_hours(
    session: Session, ward: dict[str, Any], clock
) -> None:
    team = ward["team"]
    team.oncall_phone = "+3227641111"
    shift(session, ward, "anne", PRIMARY, datetime(2026, 3, 2, 8, 0), datetime(2026, 3, 2, 20, 0))
    shift(session, ward, "bram", PRIMARY, datetime(2026, 3, 2, 20, 0), datetime(2026, 3, 3, 8, 0))
    shift(session, ward, "claire", BACKUP, datetime(2026, 3, 2, 8, 0), datetime(2026, 3, 2, 18, 0))
    summary = on_call_summary(session, team, clock.now)  # Monday 11:00 in Brussels
    assert summary.primary.user.name == ANNE and summary.primary.until == utc(2026, 3, 2, 19, 0)
    assert summary.backup.user.name == CLAIRE
    assert summary.fallback_phone == "+3227641111"
    # The primary is covered until Tuesday 08:00 (beyond the 24 hours: from 07:00 UTC).
    assert summary.gaps == {PRIMARY: utc(2026, 3, 3, 7, 0), BACKUP: utc(2026, 3, 2, 17, 0)}
    assert summary.warnings == [
        "Nobody is primary from Tue 3 Mar 08:00 CET.",
        "Nobody is backup from Mon 2 Mar 18:00 CET.",
    ]
    # Another team's rota is theirs alone.
    other = session.get(Team, ward["stranger"].team_id)
    assert on_call_summary(session, other, clock.now).primary is None
    assert list_rota(session, other, clock.now, clock.now + timedelta(days=14)) == []


def test_a_team_without_fallback_number_and_an_on_call_without_phone_are_warned(
    session: Session, ward: dict[str, Any], clock
) -> None:
    team = ward["team"]
    shift(session, ward, "anne", PRIMARY, datetime(2026, 3, 2, 8, 0), datetime(2026, 3, 3, 8, 0))
    # A phone removed behind the service's back (an old import): the summary still says it.
    ward["anne"].phone = None
    session.commit()
    warnings = on_call_summary(session, team, clock.now).warnings
    assert f"{ANNE} is primary but has no phone number: pages go to the next step." in warnings
    assert "The team has no fallback number: set it on the Team page." in warnings


# --- refusals -------------------------------------------------------------------------------


def refusal(session: Session, call: Callable[[], Any]) -> tuple[type, str | None, str]:
    with pytest.raises((InvalidInput, Conflict, NotFound)) as refused:
        call()
    session.rollback()
    return type(refused.value), refused.value.field, refused.value.message


def test_shifts_are_refused_with_the_field_at_fault_and_nothing_is_written(
    session: Session, ward: dict[str, Any], clock
) -> None:
    team = ward["team"]
    morning, evening = datetime(2026, 3, 3, 8, 0), datetime(2026, 3, 3, 20, 0)

    def attempt(who: str, role: Any = PRIMARY, starts=morning, ends=evening) -> Any:
        user_id = ward[who].id if isinstance(who, str) else who
        return lambda: add_shift(
            session,
            team,
            user_id=user_id,
            role=role,
            starts_at=starts,
            ends_at=ends,
            actor=ward["admin"],
            now=clock.now,
        )

    assert refusal(session, attempt("anne", ends=morning))[:2] == (InvalidInput, "ends_at")
    assert refusal(session, attempt("anne", starts=evening, ends=morning))[:2] == (
        InvalidInput,
        "ends_at",
    )
    too_long = attempt("anne", ends=morning + MAX_SHIFT + timedelta(minutes=1))
    assert refusal(session, too_long)[:2] == (InvalidInput, "ends_at")
    over = attempt("anne", starts=datetime(2026, 3, 1, 8, 0), ends=datetime(2026, 3, 1, 20, 0))
    assert refusal(session, over) == (InvalidInput, "ends_at", "this shift would already be over")
    assert refusal(session, attempt("anne", role="chief"))[:2] == (InvalidInput, "role")
    # Another team's clinician and a user that exists nowhere read alike.
    assert (
        refusal(session, attempt("stranger"))
        == refusal(session, attempt(987654))
        == (
            InvalidInput,
            "user_id",
            "no such member of your team",
        )
    )
    # Nobody without a phone: they could not be paged.
    kind, field, message = refusal(session, attempt("admin"))
    assert (kind, field) == (Conflict, "user_id")
    assert "Admin Saint-Luc has no phone number on their profile" in message
    set_active(session, ward["claire"], False, ward["admin"], clock.now)
    session.commit()
    assert refusal(session, attempt("claire")) == (
        InvalidInput,
        "user_id",
        f"{CLAIRE} is deactivated and cannot be on call",
    )
    # The backup is somebody else than the primary.
    shift(session, ward, "anne", PRIMARY, morning, evening)
    kind, field, message = refusal(
        session, attempt("anne", role=BACKUP, ends=morning.replace(hour=9))
    )
    assert (kind, field) == (Conflict, "user_id")
    assert message == f"{ANNE} is primary during this time; the backup must be someone else"
    assert len(session.exec(select(OnCallShift)).all()) == 1


def test_editing_and_removing_keep_the_record_of_who_was_on_call(
    session: Session, ward: dict[str, Any], clock
) -> None:
    team = ward["team"]
    running, _ = shift(
        session, ward, "anne", PRIMARY, datetime(2026, 3, 2, 8, 0), datetime(2026, 3, 2, 20, 0)
    )
    coming, _ = shift(
        session, ward, "bram", PRIMARY, datetime(2026, 3, 4, 8, 0), datetime(2026, 3, 4, 20, 0)
    )
    edited, notes = edit_shift(
        session,
        team,
        coming,
        {"user_id": ward["claire"].id, "ends_at": datetime(2026, 3, 4, 21, 0)},
        clock.now,
    )
    session.commit()
    assert (edited.user_id, edited.ends_at, notes) == (
        ward["claire"].id,
        utc(2026, 3, 4, 20, 0),
        [],
    )
    assert remove_shift(session, coming, clock.now) == "deleted"
    session.commit()
    assert session.get(OnCallShift, coming.id) is None
    # A running shift is ended now, not erased.
    assert remove_shift(session, running, clock.now) == "ended"
    session.commit()
    assert session.get(OnCallShift, running.id).ends_at == clock.now
    assert who(session, team, PRIMARY, clock.now) is None
    clock.advance(hours=1)
    ended = session.get(OnCallShift, running.id)
    with pytest.raises(Conflict, match="stays in the record"):
        remove_shift(session, ended, clock.now)
    with pytest.raises(Conflict, match="stays in the record"):
        edit_shift(session, team, ended, {"ends_at": datetime(2026, 3, 2, 23, 0)}, clock.now)
    # Another team's shift is not found from this team.
    other = session.get(Team, ward["stranger"].team_id)
    with pytest.raises(NotFound):
        get_shift(session, other.id, running.id)


# --- a clinician's own profile -----------------------------------------------------------------


def test_a_profile_keeps_one_e164_phone_per_active_clinician_and_a_known_language(
    session: Session, ward: dict[str, Any], clock
) -> None:
    bram: User = ward["bram"]
    assert bram.phone == "+32470223344"  # "0470 22 33 44" read in Belgium
    set_profile(
        session, bram, {"phone": "0032 470 55 66 77", "language": "nl"}, region="BE", now=clock.now
    )
    session.commit()
    assert (bram.phone, bram.language) == ("+32470556677", "nl")
    for changes, field, kind in [
        ({"phone": "12"}, "phone", InvalidInput),
        ({"phone": "+32 470 55 66 77 ext. 12"}, "phone", InvalidInput),
        ({"phone": "+32 470 11 22 33"}, "phone", Conflict),  # Anne's
        ({"language": "de"}, "language", InvalidInput),
    ]:
        assert refusal(
            session,
            lambda changes=changes: set_profile(session, bram, changes, region="BE", now=clock.now),
        )[:2] == (kind, field)
    assert (bram.phone, bram.language) == ("+32470556677", "nl")
    # A deactivated clinician's old number may be given to someone else.
    set_active(session, ward["anne"], False, ward["admin"], clock.now)
    set_profile(session, bram, {"phone": "+32 470 11 22 33"}, region="BE", now=clock.now)
    session.commit()
    assert bram.phone == "+32470112233"


def test_a_clinician_on_the_rota_cannot_clear_their_phone(
    session: Session, ward: dict[str, Any], clock
) -> None:
    claire: User = ward["claire"]
    made, _ = shift(
        session, ward, "claire", BACKUP, datetime(2026, 3, 5, 8, 0), datetime(2026, 3, 5, 20, 0)
    )
    kind, field, message = refusal(
        session, lambda: set_profile(session, claire, {"phone": None}, region="BE", now=clock.now)
    )
    assert (kind, field) == (Conflict, "phone") and "on the on-call rota" in message
    assert session.get(User, claire.id).phone == "+32470334455"
    remove_shift(session, session.get(OnCallShift, made.id), clock.now)
    set_profile(session, claire, {"phone": ""}, region="BE", now=clock.now)
    session.commit()
    assert session.get(User, claire.id).phone is None


def test_create_user_stores_the_phone_as_e164_and_the_language(session: Session, clock) -> None:
    user = create_user(
        session,
        email="anne-sophie.vandenbroucke@saintluc.example",
        team_name="Hématologie — Saint-Luc",
        role="physician",
        now=clock.now,
        name=ANNE,
        phone="0470 12 12 12",
        language="fr",
    )
    assert (user.phone, user.language, user.name) == ("+32470121212", "fr", ANNE)
    with pytest.raises(InvalidInput) as refused:
        create_user(
            session, email="x@saintluc.example", team_name="T", role="nurse", now=clock.now,
            language="de",
        )  # fmt: skip
    assert refused.value.field == "language"


# --- the team's escalation policy ----------------------------------------------------------------


def test_a_team_keeps_its_own_valid_policy_and_the_defaults_otherwise(
    session: Session, ward: dict[str, Any]
) -> None:
    team = ward["team"]
    assert team_policy(team) == (default_policy(), True)
    own = {
        "steps": [
            {"after_minutes": 0, "target": "primary", "channels": ["sms", "voice"]},
            {"after_minutes": 5, "target": "backup", "channels": ["voice"]},
            {"after_minutes": 10, "target": "fallback", "channels": ["voice"]},
        ],
        "repeat_every_minutes": 10,
    }
    set_policy(session, team, own)
    session.commit()
    session.expire_all()
    policy, is_default = team_policy(session.get(Team, team.id))
    assert (policy_to_dict(policy), is_default) == (own, False)
    # The defaults typed out again are the defaults (later changes to them apply).
    set_policy(session, team, policy_to_dict(default_policy()))
    assert team.escalation_policy is None
    set_policy(session, team, own)
    reset_policy(session, team)
    assert team_policy(team) == (default_policy(), True)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"steps": []}, "steps"),
        ({"repeat_every_minutes": 0}, "repeat_every_minutes"),
        (
            {"steps": [{"after_minutes": 5, "target": "fallback", "channels": ["sms"]}]},
            "steps[0].after_minutes",
        ),
        (
            {
                "steps": [
                    {"after_minutes": 0, "target": "primary", "channels": ["sms"]},
                    {"after_minutes": 0, "target": "fallback", "channels": ["sms"]},
                ]
            },
            "steps[1].after_minutes",
        ),
        (
            {"steps": [{"after_minutes": 0, "target": "chief", "channels": ["sms"]}]},
            "steps[0].target",
        ),
        (
            {"steps": [{"after_minutes": 0, "target": "fallback", "channels": ["fax"]}]},
            "steps[0].channels",
        ),
        # No step pages the number that is always answered (hazard H-ROTA-3).
        ({"steps": [{"after_minutes": 0, "target": "primary", "channels": ["sms"]}]}, "steps"),
    ],
)
def test_a_policy_is_refused_naming_its_field_and_the_team_keeps_its_own(
    session: Session, ward: dict[str, Any], change: dict[str, Any], field: str
) -> None:
    team = ward["team"]
    data = {**policy_to_dict(default_policy()), **change}
    with pytest.raises(InvalidInput) as refused:
        set_policy(session, team, data)
    assert refused.value.field == field
    assert team.escalation_policy is None
