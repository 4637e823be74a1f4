"""The states of outbox messages, check-ins, alerts and plans, and the moves allowed between them.

Each vocabulary is a :class:`~enum.StrEnum` whose values are the strings stored in the
database (a member compares equal to its string, so rows written before the enums
read the same). Each entity's allowed moves are written down once, in
:data:`TRANSITIONS`; :func:`check_transition` refuses any other. The ORM checks every
assignment to a status column (``reminders.data.models`` listens for it) and the engine's
Core statements name the state they leave in their ``WHERE`` clause, so a row that is
no longer in it is left alone.

This module imports nothing but the standard library: the data layer, the engine and
the web all use it. A prophylaxis course's statuses (``CourseStatus``) are the one
vocabulary kept in the pure core, in ``reminders.core.prophylaxis``, because the core's
stop rule and mandatory-prophylaxis check read them and the core imports no other layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum


class OutboxStatus(StrEnum):
    """Where an outbox row (``OutboundMessage.status``) stands."""

    #: Waiting for ``next_attempt_at``; a dispatcher may claim it then.
    PENDING = "pending"
    #: Claimed by a dispatcher (``claimed_by``, ``claimed_at``) and being handed to the gateway.
    SENDING = "sending"
    #: The gateway neither accepted nor refused it (timeout, connection lost after the
    #: request was written): the carrier may have it. Never sent blindly again: once the
    #: lease from ``claimed_at`` has expired, crash recovery asks the gateway
    #: (``find_sent``) and records it ``sent`` if the carrier has it, otherwise puts it back
    #: to ``pending`` at ``next_attempt_at`` (or ``failed`` when its attempts are used up).
    UNCONFIRMED = "unconfirmed"
    #: Accepted by the gateway (``provider_sid``).
    SENT = "sent"
    #: The carrier reported it delivered (status callback).
    DELIVERED = "delivered"
    #: The carrier reported it could not be delivered (status callback).
    UNDELIVERED = "undelivered"
    #: Refused by the gateway for good, or out of attempts: the team is alerted.
    FAILED = "failed"
    #: Its moment passed before it could go out (``not_after``): never sent late.
    MISSED = "missed"
    #: Not to be sent (opt-out, discharge, no consent, no on-call number).
    CANCELLED = "cancelled"


class CheckInState(StrEnum):
    """Where a symptom check-in conversation (``CheckIn.state``) stands."""

    AWAITING_TEMPERATURE = "awaiting_temperature"
    AWAITING_SYMPTOMS = "awaiting_symptoms"
    #: Triaged; ``severity`` holds the result.
    CLOSED = "closed"
    #: Sent twice without an answer: the team was alerted.
    UNANSWERED = "unanswered"


class AlertStatus(StrEnum):
    """Where an alert (``Alert.status``) stands."""

    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


class PlanStatus(StrEnum):
    """A plan's stored status (``Plan.status``); "completed" is derived, never stored."""

    ACTIVE = "active"
    ON_HOLD = "on_hold"
    STOPPED = "stopped"


class Channel(StrEnum):
    """How an outbox row reaches its recipient (``OutboundMessage.channel``)."""

    SMS = "sms"
    #: A phone call through Twilio's Calls API; the row's body is what the call reads out.
    VOICE = "voice"


class OnCallRole(StrEnum):
    """A clinician's place in a team's on-call rota (``OnCallShift.role``)."""

    PRIMARY = "primary"
    BACKUP = "backup"


class PageTarget(StrEnum):
    """Whom an escalation step pages: the rota's primary or backup, or the team's fallback number."""

    PRIMARY = "primary"
    BACKUP = "backup"
    FALLBACK = "fallback"


class AlertEventKind(StrEnum):
    """What a line of an alert's timeline (``AlertEvent.event``) records."""

    #: An escalation step queued a page (SMS or call) to a person or number.
    PAGED = "paged"
    #: A step found nobody to page (no shift, no phone): the next target is tried at once.
    SKIPPED = "skipped"
    #: The carrier reported on a page (``outcome``).
    OUTCOME = "outcome"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"
    #: A reply or key press that acknowledged nothing (unknown code, another team's alert).
    REFUSED = "refused"


class PageOutcome(StrEnum):
    """What became of a page, in the words of the alert's timeline."""

    QUEUED = "queued"
    SENT = "sent"
    DELIVERED = "delivered"
    ANSWERED = "answered"
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: A plan that still sends reminders and has tasks.
OPEN_PLAN_STATUSES: tuple[PlanStatus, ...] = (PlanStatus.ACTIVE, PlanStatus.ON_HOLD)
#: A check-in still waiting for the patient.
OPEN_CHECKIN_STATES: tuple[CheckInState, ...] = (
    CheckInState.AWAITING_TEMPERATURE,
    CheckInState.AWAITING_SYMPTOMS,
)
#: An outbox row the gateway took (the patient may have it).
ACCEPTED_OUTBOX_STATUSES: tuple[OutboxStatus, ...] = (OutboxStatus.SENT, OutboxStatus.DELIVERED)
#: An outbox row a dispatcher or crash recovery may still act on: its delivery details
#: (claim, provider sid, number) are needed until it settles, so retention never trims it.
IN_FLIGHT_OUTBOX_STATUSES: tuple[OutboxStatus, ...] = (
    OutboxStatus.PENDING,
    OutboxStatus.SENDING,
    OutboxStatus.UNCONFIRMED,
)
#: An outbox row whose send is over, whatever its outcome.
SETTLED_OUTBOX_STATUSES: tuple[OutboxStatus, ...] = (
    OutboxStatus.SENT,
    OutboxStatus.DELIVERED,
    OutboxStatus.UNDELIVERED,
    OutboxStatus.FAILED,
)

_O = OutboxStatus
_C = CheckInState
_A = AlertStatus
_P = PlanStatus

#: Per status vocabulary: each state and the states it may move to. Staying in a
#: state is always allowed (a repeated callback, a re-send). A state with no entry
#: is final.
TRANSITIONS: dict[type[StrEnum], Mapping[StrEnum, frozenset[StrEnum]]] = {
    OutboxStatus: {
        # Claimed; or settled at claim time (too late, not allowed to be sent).
        _O.PENDING: frozenset({_O.SENDING, _O.MISSED, _O.CANCELLED}),
        _O.SENDING: frozenset(
            {
                _O.SENT,
                _O.PENDING,  # put back: retry later, credentials refused, dead dispatcher
                _O.UNCONFIRMED,
                _O.FAILED,
                _O.MISSED,  # a retry would come after not_after
            }
        ),
        # Crash recovery's answer from the gateway: it has the message, or not.
        _O.UNCONFIRMED: frozenset({_O.SENT, _O.PENDING, _O.FAILED}),
        # Status callbacks, which may arrive in any order.
        _O.SENT: frozenset({_O.DELIVERED, _O.UNDELIVERED}),
        _O.DELIVERED: frozenset({_O.UNDELIVERED}),
        # Twilio may report on a message it refused after taking it (a sid, then failed).
        _O.FAILED: frozenset({_O.UNDELIVERED}),
        _O.UNDELIVERED: frozenset({_O.DELIVERED}),
    },
    CheckInState: {
        _C.AWAITING_TEMPERATURE: frozenset({_C.AWAITING_SYMPTOMS, _C.CLOSED, _C.UNANSWERED}),
        # A fever in words or a re-check asks for the temperature again.
        _C.AWAITING_SYMPTOMS: frozenset({_C.AWAITING_TEMPERATURE, _C.CLOSED, _C.UNANSWERED}),
    },
    AlertStatus: {
        _A.OPEN: frozenset({_A.ACKNOWLEDGED, _A.RESOLVED}),
        _A.ACKNOWLEDGED: frozenset({_A.RESOLVED}),
    },
    PlanStatus: {
        _P.ACTIVE: frozenset({_P.ON_HOLD, _P.STOPPED}),
        _P.ON_HOLD: frozenset({_P.ACTIVE, _P.STOPPED}),
    },
}

#: The states the code writes new rows in (every other state is reached by a move).
INITIAL: dict[type[StrEnum], frozenset[StrEnum]] = {
    # A planned message whose moment passed while the system was down is stored missed;
    # an answer given in the webhook's own TwiML reply is stored sent.
    OutboxStatus: frozenset({_O.PENDING, _O.MISSED, _O.SENT}),
    CheckInState: frozenset({_C.AWAITING_TEMPERATURE}),
    AlertStatus: frozenset({_A.OPEN}),
    PlanStatus: frozenset({_P.ACTIVE}),
}


class IllegalTransition(ValueError):
    """A status change that :data:`TRANSITIONS` does not allow: a programming error."""


def check_transition(kind: type[StrEnum], old: str | None, new: str) -> None:
    """Raise :class:`IllegalTransition` unless ``old`` -> ``new`` is allowed for ``kind``.

    ``old`` None is a row being built: any state of the vocabulary is accepted (a
    test or an import may write a row as it stands); only moves of a stored row are
    checked against the table.
    """
    try:
        target = kind(new)
    except ValueError:
        raise IllegalTransition(f"{new!r} is not a {kind.__name__}") from None
    if old is None:
        return
    try:
        source = kind(old)
    except ValueError:
        raise IllegalTransition(f"{old!r} is not a {kind.__name__}") from None
    if source is target or target in TRANSITIONS[kind].get(source, frozenset()):
        return
    raise IllegalTransition(f"{kind.__name__}: {source.name} -> {target.name} is not allowed")


def allowed(kind: type[StrEnum], old: str | None, new: str) -> bool:
    """True when :func:`check_transition` accepts ``old`` -> ``new``."""
    try:
        check_transition(kind, old, new)
    except IllegalTransition:
        return False
    return True


class SessionEnd(StrEnum):
    """Why a care-team session (:class:`UserSession`) ended."""

    SIGNED_OUT = "signed_out"
    SIGNED_OUT_EVERYWHERE = "signed_out_everywhere"
    ENDED_BY_ADMIN = "ended_by_admin"
    USER_DEACTIVATED = "user_deactivated"
    IDLE = "idle"
    EXPIRED = "expired"
    #: The same browser signed in again (as anyone) without signing out first.
    REPLACED = "replaced"


class AuditAction(StrEnum):
    """What an audit row records: one vocabulary for the API, the care-team pages and the CLI.

    The same operation has the same name whichever way it was done (viewing a patient
    through ``GET /api/v1/patients/<id>`` or the patient page is ``view_patient``), so
    the audit page reads the same for both channels. ``backend.services.audit.record_audit``
    refuses a name that is not here.
    """

    # Patients.
    LIST_PATIENTS = "list_patients"
    ENROL_PATIENT = "enrol_patient"
    VIEW_PATIENT = "view_patient"
    UPDATE_PATIENT = "update_patient"
    DISCHARGE_PATIENT = "discharge_patient"
    EXPORT_PATIENT = "export_patient"
    VIEW_SCHEDULE = "view_schedule"
    # Labs.
    RECORD_LAB = "record_lab"
    VIEW_LABS = "view_labs"
    # Symptom reports.
    VIEW_REPORTS = "view_reports"
    # Plans and doses.
    START_PLAN = "start_plan"
    VIEW_PLAN = "view_plan"
    HOLD_PLAN = "hold_plan"
    RESUME_PLAN = "resume_plan"
    EXTEND_PLAN = "extend_plan"
    STOP_PLAN = "stop_plan"
    RECORD_DOSE = "record_dose"
    CONFIRM_DOSE_WARNING = "confirm_dose_warning"
    # Prophylaxis courses.
    ADD_PROPHYLAXIS = "add_prophylaxis"
    VIEW_PROPHYLAXIS = "view_prophylaxis"
    CONFIRM_PROPHYLAXIS = "confirm_prophylaxis"
    DECLINE_PROPHYLAXIS = "decline_prophylaxis"
    STOP_PROPHYLAXIS = "stop_prophylaxis"
    # Alerts.
    LIST_ALERTS = "list_alerts"
    VIEW_ALERT = "view_alert"
    ACKNOWLEDGE_ALERT = "acknowledge_alert"
    RESOLVE_ALERT = "resolve_alert"
    # SMS.
    SEND_SMS = "send_sms"
    VIEW_PHONE_SIMULATOR = "view_phone_simulator"
    SIMULATED_REPLY = "simulated_reply"
    # A user asked for another team's patient (answered 404); kept in that patient's team.
    REFUSED_OTHER_TEAM = "refused_other_team"
    # Accounts and the team (no patient).
    LOGIN = "login"
    LOGOUT = "logout"
    CREATE_USER = "create_user"
    CHANGE_ROLE = "change_role"
    ACTIVATE_USER = "activate_user"
    DEACTIVATE_USER = "deactivate_user"
    UPDATE_TEAM_PHONES = "update_team_phones"
    UPDATE_PROFILE = "update_profile"
    # On call and escalation.
    VIEW_ONCALL = "view_oncall"
    EDIT_ONCALL_ROTA = "edit_oncall_rota"
    UPDATE_ESCALATION_POLICY = "update_escalation_policy"
    VIEW_RESPONSE_TIMES = "view_response_times"
    EXPORT_RESPONSE_TIMES = "export_response_times"
    UPDATE_RESPONSE_TARGETS = "update_response_targets"
    # Expected levels (a low-grade temperature the team expects).
    SET_EXPECTED_LEVEL = "set_expected_level"
    END_EXPECTED_LEVEL = "end_expected_level"
    VIEW_EXPECTED_LEVELS = "view_expected_levels"
    CREATE_API_TOKEN = "create_api_token"
    REVOKE_API_TOKEN = "revoke_api_token"
    SIGN_OUT_EVERYWHERE = "sign_out_everywhere"
    END_USER_SESSIONS = "end_user_sessions"
    # The treatment calendar: the printed page and the private feed links (issue 15, item 7).
    PRINT_CALENDAR = "print_calendar"
    VIEW_CALENDAR_FEEDS = "view_calendar_feeds"
    CREATE_CALENDAR_FEED = "create_calendar_feed"
    REVOKE_CALENDAR_FEED = "revoke_calendar_feed"
    # Data rights (issue 16, item 6): the whole record (JSON or FHIR) and the erasure of
    # contact details; admins only.
    EXPORT_RECORD = "export_record"
    ERASE_CONTACT_DETAILS = "erase_contact_details"
    # Operations (issue 16): a copy of the whole database, and the retention jobs run by hand.
    BACKUP_DATABASE = "backup_database"
    RUN_RETENTION = "run_retention"
    # Family contacts and the patient's consent to share with them (issue 15, item 6).
    VIEW_FAMILY_CONTACTS = "view_family_contacts"
    ADD_FAMILY_CONTACT = "add_family_contact"
    UPDATE_FAMILY_CONTACT = "update_family_contact"
    REMOVE_FAMILY_CONTACT = "remove_family_contact"
    RECORD_FAMILY_CONSENT = "record_family_consent"
    WITHDRAW_FAMILY_CONSENT = "withdraw_family_consent"


class AuditChannel(StrEnum):
    """How the action reached the companion."""

    API = "api"
    DASHBOARD = "dashboard"
    CLI = "cli"
    #: An SMS from a clinician's own phone (``ACK`` and the alert's code).
    SMS = "sms"
    #: A key pressed during an on-call voice call.
    PHONE = "phone"


class Recipient(StrEnum):
    """Who an outbox row (``OutboundMessage.recipient``) is for."""

    PATIENT = "patient"
    #: An on-call page: the row carries the clinician's number (``to_phone``).
    CLINICIAN = "clinician"
    #: The team's on-call number.
    ONCALL = "oncall"
    #: A patient's family contact (``reminders.family``): the row carries their number.
    FAMILY = "family"


class ReportedBy(StrEnum):
    """Who sent the words an alert was raised on (``Alert.details["reported_by"]``).

    Absent from an alert raised on the patient's own reply. A page names a family
    report as one, so the clinician knows whom they will reach and who was told to call.
    """

    PATIENT = "patient"
    #: A message from one of the patient's family contacts (``reminders.family_messages``).
    FAMILY = "family"


class ConsentMethod(StrEnum):
    """How the patient gave consent to share with a family contact (``FamilyContact.consent_method``)."""

    #: Said to a care-team member, who recorded it.
    VERBAL = "verbal"
    #: A signed form, kept in the hospital's record.
    WRITTEN = "written"


class FamilyContactState(StrEnum):
    """Whether a family contact gets copies now (derived from the row, never stored)."""

    #: Consent recorded and not withdrawn, no STOP from the contact: copies go out.
    ACTIVE = "active"
    #: The patient withdrew consent: nothing goes out until it is recorded again.
    CONSENT_WITHDRAWN = "consent_withdrawn"
    #: The contact replied STOP: nothing goes out until they reply START.
    OPTED_OUT = "opted_out"
