"""Rendering a message for a patient: the patient's context and the template's values.

Every SMS to a patient is rendered here, in the patient's language and honouring
discreet mode: the planning pass's reminders (:mod:`reminders.planning`), the
conversation's replies (:mod:`reminders.conversations`) and the follow-ups
(:mod:`reminders.followups`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property, lru_cache
from types import MappingProxyType
from typing import Any

import phonenumbers
from sqlmodel import Session

from reminders.core.labels import get_label, short_name
from reminders.core.planner import EventKind, PlannedEvent
from reminders.core.regimens import get_regimen, premedication_label_keys
from reminders.core.regions import get_region
from reminders.core.templates import render, resolve_language, team_name_for_sms
from reminders.data.models import Patient, Plan, Team
from reminders.data.plans import current_plan

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PatientContext:
    """What rendering needs to know about a patient and their team.

    ``plan`` is the patient's current plan that ``drug`` was read from, kept so
    that a reply needing it again (triage, the symptom menu) does not query it again.
    """

    patient: Patient
    team: Team
    drug: str | None
    plan: Plan | None = None

    @cached_property
    def patient_values(self) -> Mapping[str, Any]:
        """The placeholders that name the patient and the team (the same in every message).

        Computed once per context: a pass renders a few messages per patient.

        ``team_phone`` is None for a team without a care phone: ``render`` then names the
        emergency number of the reader's region, as such (never the team's name, which
        a patient told to "call your care team now on ..." cannot dial). That should not
        happen (``backend.services.care_phone`` refuses SMS consent in such a team, and
        the removal of the number while any patient has it; ``doctor`` reports it), so
        each time it does is logged, with ids only.
        """
        team = self.team
        patient = self.patient
        if not team.care_phone:
            logger.warning(
                "team %s has no care phone: SMS for patient %s name the emergency number",
                team.id,
                patient.id,
            )
        # render() spells every value in GSM-7: "Loïc" is "Loic" in the SMS (the stored
        # name is unchanged), and the message stays 160 characters a segment.
        team_name = team_name_for_sms(team.name)
        return MappingProxyType(
            {
                "first_name": patient.display_name.split()[0]
                if patient.display_name.strip()
                else "",
                "team_name": team_name,
                "team_phone": display_phone(team.care_phone) if team.care_phone else None,
                "drug": short_name(self.drug, self.language),
                "patient_ref": f"P{patient.id}",
                "place": team_name,
            }
        )

    @cached_property
    def language(self) -> str:
        """The language the patient's messages are written in."""
        return resolve_language(self.patient.language)


def sms_allowed(patient: Patient) -> bool:
    """True when the patient may get SMS: consent, no opt-out, a reachable number, in care,
    contact details not erased."""
    return (
        patient.sms_consent
        and not patient.opted_out
        and patient.sms_blocked_reason is None
        and patient.discharged_at is None
        and patient.erased_at is None
    )


@lru_cache(maxsize=4096)
def display_phone(e164: str) -> str:
    """A phone number as people read it (+32 2 555 01 23), still GSM-7 and dialable."""
    # Cached: every message names its team's number, and a pass renders thousands of
    # messages for a few dozen teams; phonenumbers parses slowly.
    try:
        return phonenumbers.format_number(
            phonenumbers.parse(e164), phonenumbers.PhoneNumberFormat.INTERNATIONAL
        )
    except phonenumbers.NumberParseException:
        return e164


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def template_values(context: PatientContext, event: PlannedEvent | None = None) -> dict[str, Any]:
    """Values for every template placeholder (each template uses the ones it needs)."""
    values = dict(context.patient_values)
    if event is None:
        return values
    details = event.details
    local = event.local
    language = context.language
    values.update(
        {
            # Formatted by hand: a pass formats thousands of times, and strftime is slow.
            "time": f"{local.hour:02d}:{local.minute:02d}",
            "date": f"{local.day:02d}/{local.month:02d}",
            # Only the dose the regimen gives an observation time for has one (and
            # only its template asks for it): no number made up here.
            "observation_hours": _number(details.get("observation_hours")),
        }
    )
    # Medicines and tests by their short names in the patient's language (labels.toml).
    if event.kind == EventKind.PREMEDICATION:
        values["premedication"] = premedication_text(details.get("items") or (), language)
    elif event.kind in (EventKind.SUPPORTIVE, EventKind.PROPHYLAXIS):
        values["medicine"] = short_name(details.get("drug"), language)
    elif event.kind == EventKind.LAB:
        values["lab"] = short_name(details.get("name"), language)
    return values


def premedication_text(items: Iterable[str], language: str) -> str:
    """The premedication of a dose (the regimen's item texts) by their short names."""
    keys = premedication_label_keys()
    return ", ".join(
        get_label(keys[item]).text(language) if item in keys else item for item in items
    )


def render_for(
    context: PatientContext, template: str, event: PlannedEvent | None = None, **extra: Any
) -> str:
    """Render ``template`` in the patient's language, honouring discreet mode."""
    values = template_values(context, event)
    values.update(extra)
    # Without a known drug the discreet wording reads naturally ("your treatment").
    discreet = context.patient.discreet or not context.drug
    patient = context.patient
    return render(
        template, patient.language, discreet=discreet, region=get_region(patient.region), **values
    )


def drug_name(plan: Plan | None) -> str | None:
    """The drug of ``plan``'s regimen, or None (no plan, or a regimen no longer in the library)."""
    if plan is None:
        return None
    try:
        return get_regimen(plan.regimen_id).drug
    except KeyError:
        return None


def patient_context(session: Session, patient: Patient) -> PatientContext:
    """The rendering context of one patient (team, current plan and its drug)."""
    team = session.get(Team, patient.team_id)
    plan = current_plan(session, patient.id)
    return PatientContext(patient, team, drug_name(plan), plan)
