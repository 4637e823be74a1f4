"""Teams and users: creating them (API tokens are issued separately: backend.services.tokens)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, select

from backend.auth import hash_password
from backend.schemas import has_control_character, valid_email
from backend.services.patients import normalize_phone
from reminders.data.errors import Conflict, InvalidInput
from reminders.data.models import Team, User

ROLES = ("nurse", "physician", "admin")


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
) -> User:
    """Create a care-team user (and their team if new).

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
    team = get_or_create_team(session, team_name, now, care_phone=care_phone, region=region)
    user = User(
        team_id=team.id,
        email=email,
        name=name,
        role=role,
        password_hash=hash_password(password) if password else None,
        created_at=now,
    )
    session.add(user)
    session.flush()
    return user
