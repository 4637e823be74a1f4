"""HTML forms: from posted strings to the API's pydantic schemas, and back to messages.

The same schemas validate the JSON API and these forms (``backend.schemas``);
this module only turns form fields into the values those schemas expect
(checkbox -> bool, empty -> None, "70,5" -> 70.5) and pydantic's errors into
short sentences shown next to each field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from werkzeug.datastructures import MultiDict

from backend.config import MAX_API_TOKEN_LIFETIME_DAYS
from backend.schemas import Email, Role, Strict
from reminders.data.errors import ServiceError

M = TypeVar("M", bound=BaseModel)
#: "int_list": checkboxes of whole numbers (several values under one name).
FieldKind = Literal["text", "optional", "bool", "number", "times", "date", "int", "int_list"]

#: Friendlier words for pydantic's error types (the rest keep pydantic's message).
_MESSAGES = {
    "missing": "This field is required.",
    "string_too_short": "Enter a value.",
    "float_parsing": "Enter a number, for example 70.5.",
    "float_type": "Enter a number, for example 70.5.",
    "int_parsing": "Enter a whole number.",
    "int_from_float": "Enter a whole number.",
    "int_type": "Enter a whole number.",  # strict integers: the text was not a whole number
    "time_parsing": "Enter a time as HH:MM, for example 08:00.",
    "time_type": "Enter a time as HH:MM, for example 08:00.",
    "date_parsing": "Enter a date as YYYY-MM-DD.",
    "date_from_datetime_parsing": "Enter a date as YYYY-MM-DD.",
    "date_type": "Enter a date as YYYY-MM-DD.",
    "datetime_parsing": "Enter a date and time.",
    "datetime_from_date_parsing": "Enter a date and time.",
    "literal_error": "Choose one of the options.",
    "enum": "Choose one of the options.",
    "bool_parsing": "Choose yes or no.",
    "bool_type": "Choose yes or no.",
    "extra_forbidden": "This field is not expected here.",
}


@dataclass
class FormState:
    """What a form shows: the values typed (to keep them after an error) and errors by field."""

    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    message: str | None = None  # an error that belongs to no field

    def value(self, name: str, default: Any = "") -> Any:
        """The value to show in field ``name``."""
        value = self.values.get(name)
        return default if value is None else value

    def error(self, name: str) -> str | None:
        """The error of field ``name``, if any."""
        return self.errors.get(name)

    @property
    def invalid(self) -> bool:
        """True when the form has any error."""
        return bool(self.errors or self.message)


_FORM_INTEGER = re.compile(r"^[+-]?\d{1,12}$")


def form_integer(raw: str) -> int | str:
    """A form's whole number as an int (the API's integers are strict); other text unchanged.

    Text that is not a whole number is passed on, so the schema refuses it by name.
    """
    raw = raw.strip()
    return int(raw) if _FORM_INTEGER.match(raw) else raw


def collect(form: MultiDict[str, str], spec: Mapping[str, FieldKind]) -> dict[str, Any]:
    """The fields of ``spec`` from a posted form, converted for pydantic.

    Empty optional fields are left out (so an update does not erase them);
    numbers accept a decimal comma; "times" is a list of HH:MM separated by
    commas or spaces; "int_list" is left out when no box is ticked.
    """
    data: dict[str, Any] = {}
    for name, kind in spec.items():
        if kind == "int_list":
            ticked = form.getlist(name)
            if ticked:
                data[name] = [form_integer(value) for value in ticked]
            continue
        raw = form.get(name, "")
        raw = raw.strip() if isinstance(raw, str) else raw
        if kind == "bool":
            data[name] = form.get(name) in ("on", "1", "true", "yes")
        elif kind == "text":
            data[name] = raw
        elif kind == "times":
            data[name] = [t for t in re.split(r"[\s,;]+", raw) if t]
        elif raw == "":
            continue
        elif kind == "number":
            data[name] = raw.replace(",", ".")
        elif kind == "int":
            data[name] = form_integer(raw)
        else:
            data[name] = raw
    return data


def friendly_errors(error: ValidationError) -> dict[str, str]:
    """One message per field (the first one pydantic gives), in plain words."""
    errors: dict[str, str] = {}
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else "form"
        if name in errors:
            continue
        context = item.get("ctx") or {}
        kind = item["type"]
        if kind in ("greater_than_equal", "greater_than"):
            message = f"Must be at least {context.get('ge', context.get('gt'))}."
        elif kind in ("less_than_equal", "less_than"):
            message = f"Must be at most {context.get('le', context.get('lt'))}."
        elif kind == "string_too_long":
            message = f"Use at most {context.get('max_length')} characters."
        elif kind == "too_long":
            message = f"Give at most {context.get('max_length')} values."
        elif kind == "string_too_short" and context.get("min_length", 1) > 1:
            message = f"Use at least {context['min_length']} characters."
        else:
            message = _MESSAGES.get(kind) or re.sub(r"^Value error, ", "", item["msg"])
            if message and not message.endswith("."):
                message = message[0].upper() + message[1:] + "."
        errors[name] = message
    return errors


def validate(
    model: type[M], data: dict[str, Any], values: Mapping[str, Any]
) -> tuple[M | None, FormState]:
    """Validate ``data`` with ``model``; the state keeps ``values`` (what was typed) for redisplay."""
    state = FormState(values=dict(values))
    try:
        return model.model_validate(data), state
    except ValidationError as exc:
        state.errors = friendly_errors(exc)
        return None, state


def validate_form(
    model: type[M], form: MultiDict[str, str], fields: Mapping[str, FieldKind]
) -> tuple[M | None, FormState]:
    """Validate the posted ``fields`` with ``model``; the state keeps what was typed in them."""
    values = {
        name: form.getlist(name) if kind == "int_list" else form.get(name, "")
        for name, kind in fields.items()
    }
    return validate(model, collect(form, fields), values)


def sentence(text: str) -> str:
    """A service's message as the pages write it: a capital first letter and a full stop."""
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def service_error_state(
    error: ServiceError, values: Mapping[str, Any], fields: set[str]
) -> FormState:
    """A service refusal shown on the form: next to its field when the form has it."""
    state = FormState(values=dict(values))
    if error.field and error.field in fields:
        state.errors[error.field] = sentence(error.message)
    else:
        state.message = sentence(error.message)
    return state


def local_datetime(raw: str, timezone: str) -> datetime | None:
    """A ``datetime-local`` value (patient's local time) as an aware datetime; None if unreadable."""
    try:
        value = datetime.fromisoformat(raw.strip())
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=ZoneInfo(timezone))


# --- inputs that only the pages have ------------------------------------------------------


class LoginIn(Strict):
    """The sign-in form: strings are kept as typed, since a password keeps its spaces."""

    model_config = ConfigDict(str_strip_whitespace=False)

    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=200)


class OneOffSmsIn(Strict):
    """A single SMS typed by a care-team user."""

    body: str = Field(min_length=1, max_length=640)


class SimulatedReplyIn(Strict):
    """A reply typed in the phone simulator, as the patient."""

    body: str = Field(min_length=1, max_length=1600)


class DoseIndexIn(Strict):
    """Which dose of the plan a record is about."""

    index: int = Field(ge=1, le=10_000)


class UserCreateIn(Strict):
    """A new member of the admin's team."""

    email: Email
    name: str = Field(default="", max_length=120)
    role: Role
    password: str = Field(min_length=10, max_length=200)


class RoleIn(Strict):
    """A new role for a team member."""

    role: Role


class TeamPhonesIn(Strict):
    """The number patients call and the on-call number (E.164 after normalising)."""

    care_phone: str | None = Field(default=None, min_length=3, max_length=32)
    oncall_phone: str | None = Field(default=None, min_length=3, max_length=32)


class TokenCreateIn(Strict):
    """A new API token: its name and how many days it works."""

    name: str = Field(min_length=1, max_length=80)
    days: int = Field(ge=1, le=MAX_API_TOKEN_LIFETIME_DAYS)
