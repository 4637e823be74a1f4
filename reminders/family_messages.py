"""What a patient's family contact texts: STOP and START for their own copies, and messages.

Reached from :func:`reminders.conversations.handle_inbound_sms` when no active patient has
the sending number and a family contact of an active patient does (a number that is both
an active patient's and a contact's is the patient's: the patient's own replies must
never be taken for a relative's).

* STOP (any of the words the patient's STOP honours) stops only this number's copies; the
  patient's SMS go on. No answer, as for a patient: the carrier confirms a STOP.
* START gives them back (while the patient's consent stands), with a confirmation.
* HELP gets what they receive and how to stop it.
* Anything else goes to the team's queue as a family message (kind ``family_message``,
  high: a person reads it). It is read with the same parser and triage as a patient's
  reply ("il a du mal à respirer", "hij heeft koorts en rillingen", "she is confused"):
  a finding the triage calls urgent (or pages for) is raised as an urgent alert of the
  triage's kind, paged like a patient's (``reminders.followups.raise_urgent_alert``), and
  the family member is told to call the team now or the emergency number.

A number listed for several active patients acts for each of them: a STOP stops every
copy to it, and a message goes to each patient's team (one alert per patient), since
nothing says which patient it is about and a red flag must not be lost.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session

from reminders.checkins import triage_context
from reminders.core.parser import Intent, ParsedReply
from reminders.core.triage import Severity, triage_report
from reminders.data.alerts import raise_alert
from reminders.data.family_contacts import (
    contact_state,
    record_contact_opt_in,
    record_contact_opt_out,
)
from reminders.data.models import FamilyContact, Patient, Team
from reminders.data.plans import current_plan
from reminders.data.statuses import FamilyContactState, ReportedBy
from reminders.family import render_for_contact
from reminders.followups import raise_urgent_alert
from reminders.inbound import Answer, StoredInbound, reply_key
from reminders.rendering import PatientContext, patient_context

#: The alert kind of a message from a family contact that the triage finds nothing urgent in.
FAMILY_MESSAGE_KIND = "family_message"

Contacts = list[tuple[FamilyContact, Patient, Team]]


def family_intent(parsed: ParsedReply) -> str:
    """The stored intent of a family contact's message (``InboundMessage.intent``)."""
    if parsed.opts_out:
        return "family_opt_out"
    if parsed.opts_in and parsed.intent is Intent.OPT_IN:
        return "family_opt_in"
    if parsed.intent is Intent.HELP:
        return "family_help"
    return "family_message"


def handle_family_sms(
    session: Session,
    contacts: Contacts,
    inbound: StoredInbound,
    parsed: ParsedReply,
    now: datetime,
) -> tuple[PatientContext, FamilyContact, Answer] | None:
    """Act on a family contact's message; the answer (and whose words it is in), or None."""
    intent = family_intent(parsed)
    if intent == "family_opt_out":
        for contact, _, _ in contacts:
            record_contact_opt_out(session, contact, now)
        return None
    if intent == "family_opt_in":
        for contact, _, _ in contacts:
            record_contact_opt_in(session, contact, now)
        active = [c for c in contacts if contact_state(c[0]) is FamilyContactState.ACTIVE]
        return _answer(session, active[0], "family_opted_in") if active else None
    if intent == "family_help":
        return _answer(session, contacts[0], "family_info")
    # One alert per patient the number is a contact of; the answer is the most urgent one.
    urgent = []
    for found in contacts:
        if _forward(session, found, inbound, parsed, now):
            urgent.append(found)
    if urgent:
        return _answer(session, urgent[0], "family_urgent_reply")
    return _answer(session, contacts[0], "family_message_ack")


def _answer(
    session: Session, found: tuple[FamilyContact, Patient, Team], template: str
) -> tuple[PatientContext, FamilyContact, Answer]:
    contact, patient, _ = found
    context = patient_context(session, patient)
    return context, contact, (template, render_for_contact(context, contact, template))


def _forward(
    session: Session,
    found: tuple[FamilyContact, Patient, Team],
    inbound: StoredInbound,
    parsed: ParsedReply,
    now: datetime,
) -> bool:
    """Raise the family message about one patient; True when it was urgent (and paged)."""
    contact, patient, _ = found
    symptoms = frozenset(parsed.symptoms) | parsed.red_flags
    plan = current_plan(session, patient.id)
    tcontext = triage_context(session, patient, plan, now, parsed.temperature_c)
    decision = triage_report(parsed.temperature_c, symptoms, tcontext)
    urgent = decision.severity is Severity.URGENT or decision.notify_on_call
    who = f"Message from family contact ({contact.relationship})"
    details = {
        "reported_by": ReportedBy.FAMILY,
        "family_contact_id": contact.id,
        "inbound_id": inbound.id,
        "needs_review": True,
        "temperature_c": parsed.temperature_c,
        "symptoms": sorted(symptoms),
        "rule_ids": list(decision.rule_ids),
        "red_flags": list(decision.red_flags),
        "reply_key": reply_key(inbound.provider_sid),
    }
    source = "family contact SMS, read with the patient's triage rules"
    if urgent:
        source += f" ({'; '.join(decision.sources)})"
    fields = {
        "details": details,
        "dedupe_key": f"family_message:{inbound.provider_sid}:{contact.id}",
        "source": source[:200],
    }
    if urgent:
        raise_urgent_alert(
            session,
            patient,
            now,
            kind=str(decision.alert_kind),
            reason=f"URGENT, {who}: {decision.summary}. Message: {inbound.body}"[:500],
            **fields,
        )
        return True
    raise_alert(
        session,
        patient,
        severity="high",
        kind=FAMILY_MESSAGE_KIND,
        reason=f"{who}: {inbound.body}"[:500],
        now=now,
        **fields,
    )
    return False
