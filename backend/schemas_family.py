"""Schemas of a patient's family contacts (issue 15, item 6), for the API and the page.

Kept beside :mod:`backend.schemas` (same base class and checks) in a module of their own.
A contact is added only with the patient's consent (``consent_method``): storing a third
person's number and telling them about the patient needs the patient's agreement first.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, StrictBool

from backend.schemas import Language, Strict
from reminders.data.statuses import ConsentMethod, FamilyContactState


class FamilyContactIn(Strict):
    """A family member to copy, with the patient's consent as recorded now by the caller."""

    name: str = Field(min_length=1, max_length=120, description="the family member's name")
    phone: str = Field(
        min_length=3, max_length=32, description="national or E.164; stored as E.164"
    )
    language: Language | None = Field(
        default=None, description="of the SMS this person gets; null: the patient's language"
    )
    relationship: str = Field(
        min_length=1, max_length=40, description="to the patient, in the team's words (daughter)"
    )
    copies_urgent: StrictBool = Field(
        default=True, description="a copy when the patient is told to call the team now"
    )
    copies_nudges: StrictBool = Field(
        default=True, description="a nudge when two check-ins in a row go unanswered"
    )
    consent_method: ConsentMethod = Field(
        description="how the patient agreed to share with this person (verbal, written)"
    )


class FamilyContactUpdate(Strict):
    """Fields of a contact a care-team user may change; all optional."""

    name: str | None = Field(default=None, min_length=1, max_length=120)
    phone: str | None = Field(default=None, min_length=3, max_length=32)
    language: Language | None = None
    relationship: str | None = Field(default=None, min_length=1, max_length=40)
    copies_urgent: StrictBool | None = None
    copies_nudges: StrictBool | None = None


class ConsentIn(Strict):
    """The patient's consent to share with a contact, recorded (again) by the caller."""

    method: ConsentMethod


class FamilyContactOut(BaseModel):
    """A family contact as the care team sees it, with its state now."""

    id: int
    patient_id: int
    name: str
    phone: str
    language: str
    relationship: str
    copies_urgent: bool
    copies_nudges: bool
    state: FamilyContactState = Field(
        description="active (copies go out), consent_withdrawn, or opted_out (they replied STOP)"
    )
    consent_method: str | None
    consent_recorded_at: datetime | None
    consent_recorded_by: int | None
    consent_withdrawn_at: datetime | None
    consent_withdrawn_by: int | None
    opted_out_at: datetime | None
    created_at: datetime
    updated_at: datetime


class FamilyContactRemoved(BaseModel):
    """A contact removed: its number is deleted and nothing more goes to it."""

    id: int
    removed: bool = True
