"""Schemas of the data-rights routes (issue 16, item 6): the record export and the erasure.

Kept beside :mod:`backend.schemas` in a module of their own. The export's sections are
described by :func:`backend.services.rights.export_record` and ``docs/data-protection.md``;
the models here name the fixed head of each document and let its sections through.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from backend.schemas import Strict

#: The word an admin types to confirm an erasure (API body, page form, not the CLI: a flag).
ERASE_CONFIRMATION = "ERASE"


class RecordOut(BaseModel):
    """A patient's whole record, format ``mab-companion/patient-record``."""

    model_config = ConfigDict(extra="allow")

    format: Literal["mab-companion/patient-record"]
    format_version: int
    export_id: str
    exported_at: str
    patient: dict[str, Any]


class FhirBundleOut(BaseModel):
    """A patient's whole record as a FHIR R4 Bundle of type ``collection``."""

    model_config = ConfigDict(extra="allow")

    resourceType: Literal["Bundle"]  # FHIR's own name
    type: Literal["collection"]
    timestamp: str
    entry: list[dict[str, Any]]


class ErasureIn(Strict):
    """Erase a patient's contact details, irreversibly: ``confirm`` must be "ERASE"."""

    confirm: Literal["ERASE"]


class ErasureOut(BaseModel):
    """What an erasure did, and the pseudonym to note in the hospital's own file."""

    patient_id: int
    pseudonym: str
    erased_at: datetime
    cancelled_sms: int
    revoked_calendar_links: int
    rows_scrubbed: dict[str, int]
