"""Regimen routes: the catalogue with its sources."""

from __future__ import annotations

from backend.api import api, responses, spec
from backend.schemas import RegimenSummary
from backend.serializers import regimen_summary
from reminders.core.regimens import UnknownRegimen, load_regimens
from reminders.core.regimens import get_regimen as find_regimen
from reminders.data.errors import NotFound

TAGS = ["regimens"]


@api.get("/regimens")
@spec.validate(resp=responses(HTTP_200=list[RegimenSummary]), tags=TAGS)
def list_regimens():
    """Every regimen of the library, with its rules, options and sources."""
    return [regimen_summary(r).model_dump(mode="json") for r in load_regimens().values()]


@api.get("/regimens/<regimen_id>")
@spec.validate(resp=responses(HTTP_200=RegimenSummary), tags=TAGS)
def get_regimen(regimen_id: str):
    """One regimen with its rules and sources."""
    try:
        return regimen_summary(find_regimen(regimen_id))
    except (UnknownRegimen, KeyError) as exc:
        raise NotFound("no such regimen") from exc
