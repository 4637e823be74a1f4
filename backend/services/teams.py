"""Teams and users: creating them and a user's own profile (API tokens: backend.services.tokens).

A clinician's phone (E.164) is where the on-call pages and calls go, and an ``ACK`` reply
from it acknowledges an alert as them: so one active user per number, and nobody clears
it while they are on the rota.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from backend.auth import hash_password
from backend.schemas import has_control_character, valid_email
from backend.services.patients import normalize_phone
from reminders.core.clinical_rules import LANGUAGES
from reminders.data.errors import Conflict, InvalidInput
from reminders.data.models import OnCallShift, Team, User

ROLES = ("nurse", "physician", "admin")
#: The answer to a number another active user has; it names nobody.
PHONE_TAKEN = (
    "this number is already on another user's profile: each clinician gives their own "
    "mobile (a reply from it acknowledges alerts as them)"
)


def get_or_create_team(
    session: Session, name: str, now: datetime, *, care_phone: str | None = None, region: str = "BE"
) -> Team:
    """The team called ``name``, created if it does not exist yet."""
    name = name.strip()
    if not name:
        raise InvalidInput("team name is empty", field="team")
    team = session.exec(select(Team).where(Team.name == name)).first()
    if team is None:
        phone = normalize_phone(care_phone, region, field="team_phone") if care_phone else None
        team = Team(name=name, care_phone=phone, created_at=now)
        session.add(team)
        session.flush()
    return team


def create_user(
    session: Session,
    *,
    email: str,
    team_name: str,
    role: str,
    now: datetime,
    password: str | None = None,
    name: str = "",
    care_phone: str | None = None,
    region: str = "BE",
    phone: str | None = None,
    language: str = "en",
) -> User:
    """Create a care-team user (and their team if new), with their own phone and language.

    No API token comes with it: a user who needs one creates it on the "API tokens"
    page, where it is shown once (``backend.services.tokens.create_token``).
    """
    try:
        email = valid_email(email)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="email") from exc
    if has_control_character(name) or len(name) > 120:
        raise InvalidInput(
            "a name of at most 120 characters, without control characters", field="name"
        )
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    if session.exec(select(User).where(User.email == email)).first() is not None:
        raise Conflict("a user with this email already exists", field="email")
    if password is not None and len(password) < 10:
        raise InvalidInput("password must have at least 10 characters", field="password")
    own_phone = clinician_phone(session, phone, region) if phone else None
    language = _language(language)
    team = get_or_create_team(session, team_name, now, care_phone=care_phone, region=region)
    user = User(
        team_id=team.id,
        email=email,
        name=name,
        role=role,
        phone=own_phone,
        language=language,
        password_hash=hash_password(password) if password else None,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user


def _language(value: str) -> str:
    if value not in LANGUAGES:
        raise InvalidInput(f"language must be one of {', '.join(LANGUAGES)}", field="language")
    return value


def clinician_phone(
    session: Session, raw: str, region: str, *, other_than: int | None = None
) -> str:
    """``raw`` as E.164 if no other active user has it; InvalidInput or Conflict (field ``phone``)."""
    phone = normalize_phone(raw, region, field="phone")
    taken = select(User.id).where(User.phone == phone, User.is_active.is_(True))
    if other_than is not None:
        taken = taken.where(User.id != other_than)
    if session.exec(taken.limit(1)).first() is not None:
        raise Conflict(PHONE_TAKEN, field="phone")
    return phone


def set_profile(
    session: Session, user: User, changes: Mapping[str, Any], *, region: str, now: datetime
) -> User:
    """Set the user's own ``phone`` (None or "" clears it) and ``language``, as given in ``changes``.

    The phone is refused while the user has a shift running or to come: the rota would
    name someone who cannot be paged (an admin takes them off the rota first).
    """
    if "language" in changes and changes["language"] is not None:
        user.language = _language(changes["language"])
    if "phone" in changes:
        raw = (changes["phone"] or "").strip()
        if not raw:
            on_rota = select(OnCallShift.id).where(
                OnCallShift.user_id == user.id, OnCallShift.ends_at > now
            )
            if session.exec(on_rota.limit(1)).first() is not None:
                raise Conflict(
                    "you are on the on-call rota: a page could not reach you without a phone "
                    "number; ask an admin to take you off the rota first",
                    field="phone",
                )
        user.phone = clinician_phone(session, raw, region, other_than=user.id) if raw else None
    session.add(user)
    return user
