"""Twilio webhooks: incoming SMS, delivery status callbacks, and on-call page calls.

Every request must carry a valid ``X-Twilio-Signature`` computed over
``PUBLIC_BASE_URL`` + the request path (and query) and the POST parameters;
anything else is refused with 403 before the database is touched. Incoming SMS
are answered with TwiML; a repeated ``MessageSid`` (Twilio retrying a webhook whose
answer it never got) gets the same answer as the first delivery and changes nothing
(``reminders.conversations.stored_answer``).

The answer's ``<Message>`` carries an ``action`` URL, ``/twilio/status?reply=<the
incoming MessageSid>``: Twilio sends the status callbacks of the message it makes from
the answer there, the first one links Twilio's sid to the stored reply, and the reply
(the urgent advice among them) is tracked like any outbound SMS. The answer to a number
nobody has is not stored as an outbound row (it has no team): its first callback only
marks that SMS as answered (``reminders.unknown_senders.note_answer_sent``).
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import urlencode, urlparse
from xml.sax.saxutils import escape

from flask import Blueprint, Flask, Response, abort, current_app, request
from sqlalchemy import update
from sqlmodel import select
from twilio.request_validator import RequestValidator, add_port, compare, remove_port

from backend.api import request_now
from backend.db import get_session
from backend.schemas import CONTROL_CHARACTERS
from backend.services.paging import (
    acknowledge_by_key,
    acknowledge_by_sms,
    page_language,
    page_of_call,
)
from reminders.conversations import handle_inbound_sms, reply_key
from reminders.core.oncall_text import parse_ack, voice_words
from reminders.data.models import Alert, OutboundMessage
from reminders.data.statuses import AlertStatus, OutboxStatus, PageOutcome, allowed
from reminders.escalation import CALL_OUTCOMES, record_page_outcome
from reminders.gateways import VOICE_PAGE_PATH
from reminders.optout import block_for_delivery_error
from reminders.unknown_senders import note_answer_sent

logger = logging.getLogger(__name__)

webhooks = Blueprint("twilio", __name__, url_prefix="/twilio")

#: Twilio's delivery states, in the order they can follow each other.
FINAL_STATUSES = {"delivered", "undelivered", "failed", "read"}


def signed_url() -> str:
    """The URL Twilio signed: our public base URL plus the path and query we received."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    query = request.query_string.decode("latin-1")
    return f"{base}{request.path}" + (f"?{query}" if query else "")


def verify_twilio_signature() -> None:
    """Abort with 403 unless the request is signed with our Twilio auth token."""
    token = current_app.config.get("TWILIO_AUTH_TOKEN")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        abort(403)
    if not signature_matches(token, signed_url(), _FlatForm(request.form.to_dict()), signature):
        logger.warning("refused a webhook with a bad signature on %s", request.path)
        abort(403)


class _FlatForm(dict[str, str]):
    """The form's first value of each field, as ``RequestValidator.validate`` is given it.

    ``compute_signature`` asks each field for ``getall``, then ``getlist``, and only then
    indexes a plain dict: two exceptions per field per signature (19 fields).
    """

    def getall(self, name: str) -> list[str]:
        """The one value of ``name`` (the validator's MultiDict protocol)."""
        return [self[name]]


def signature_matches(token: str, url: str, params: dict[str, str], signature: str) -> bool:
    """``RequestValidator(token).validate(url, params, signature)``, computing one HMAC when it can.

    ``validate`` signs the URL without and with its port and accepts either, computing
    both; the answer is the same when the second is computed only if the first fails.
    (Form parameters only: no ``bodySHA256`` JSON bodies, no algorithm header.)
    """
    validator = RequestValidator(token)
    parsed = urlparse(url)
    for candidate in (remove_port(parsed), add_port(parsed)):
        if compare(validator.compute_signature(candidate, params), signature):
            return True
    return False


_TWIML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>'


#: What ElementTree escapes in an attribute value beyond ``&``, ``<`` and ``>``.
_ATTRIBUTE_ENTITIES = {'"': "&quot;", "\n": "&#10;", "\r": "&#13;", "\t": "&#09;"}


def twiml(message: str | None, action: str | None = None) -> Response:
    """A TwiML answer, with one message (reported to ``action`` when given) or none.

    Written by hand: twilio's ``MessagingResponse`` builds and serialises an
    ElementTree for these fixed shapes. The bytes are the same as its
    ``str()`` encoded in UTF-8: ElementTree escapes ``&``, ``<`` and ``>`` in text
    (``escape``), also ``"`` and line breaks in attributes, and writes what UTF-8
    cannot encode as character references.
    """
    if message:
        attributes = f' action="{escape(action, _ATTRIBUTE_ENTITIES)}"' if action else ""
        xml = (
            f"{_TWIML_DECLARATION}<Response><Message{attributes}>{escape(message)}"
            "</Message></Response>"
        )
    else:
        xml = f"{_TWIML_DECLARATION}<Response />"
    return Response(xml.encode("utf-8", "xmlcharrefreplace"), mimetype="application/xml")


def reply_status_url(provider_sid: str) -> str | None:
    """Where Twilio reports the message it makes from our answer to ``provider_sid``.

    The status webhook with the incoming MessageSid in its (signed) query; None without
    a public base URL (Twilio could not reach us, and signatures could not be checked).
    """
    base = (current_app.config.get("PUBLIC_BASE_URL") or "").rstrip("/")
    if not base:
        return None
    return f"{base}{webhooks.url_prefix}/status?{urlencode({'reply': provider_sid})}"


def form_value(name: str) -> str:
    """A webhook parameter with its control characters removed (after the signature check).

    A patient's "38,9" followed by a NUL is still "38,9": the message is cleaned and
    handled, never refused nor lost (a refusal would make Twilio retry, then drop it).
    """
    return CONTROL_CHARACTERS.sub("", request.form.get(name, ""))


def _required(name: str) -> str:
    value = form_value(name).strip()
    if not value:
        abort(400, description=f"missing {name}")
    return value


@webhooks.post("/sms")
def incoming_sms() -> Response:
    """An SMS: answer at once in TwiML (a repeated MessageSid: the same answer).

    ``ACK <code>`` from a care-team member's own phone acknowledges that alert
    (:func:`backend.services.paging.acknowledge_by_sms`); everything else, and an
    ``ACK`` from any other number, is a patient's message.
    """
    verify_twilio_signature()
    session = get_session()
    provider_sid = _required("MessageSid")[:64]
    from_phone = _required("From")[:20]
    body = form_value("Body")
    code = parse_ack(body)
    if code is not None:
        answer = acknowledge_by_sms(session, from_phone, code, request_now())
        if answer is not None:
            session.commit()
            return twiml(answer)
    result = handle_inbound_sms(
        session, provider_sid=provider_sid, from_phone=from_phone, body=body, now=request_now()
    )
    session.commit()
    return twiml(result.reply, reply_status_url(provider_sid))


@webhooks.post("/status")
def delivery_status() -> Any:
    """A delivery status callback: record it on the outbound message (idempotent).

    ``?reply=<incoming MessageSid>``: the callback of the message Twilio made from our
    TwiML answer to that SMS; its first callback links Twilio's sid to the stored reply.
    """
    session, sid, status = _status_callback("MessageSid", "MessageStatus")
    message = _message_with_sid(session, sid)
    reply_to = request.args.get("reply", "")
    if message is None:
        message = _link_twiml_reply(session, reply_to, sid)
    if message is None:
        # The answer to an unknown number has no outbox row: its message was made, so a
        # retry of that SMS gets nothing more (reminders.unknown_senders).
        if _MESSAGE_SID.match(reply_to) and note_answer_sent(session, reply_to):
            session.commit()
        return "", 204
    now = request_now()
    if message.provider_status not in FINAL_STATUSES:
        message.provider_status = status
    # A callback never moves a row against the transition table (a late or odd report
    # on a row in another state is kept in provider_status only): never a 500 to Twilio.
    if status == "delivered" and message.delivered_at is None:
        message.delivered_at = now
        if allowed(OutboxStatus, message.status, OutboxStatus.DELIVERED):
            message.status = OutboxStatus.DELIVERED
    elif status in ("undelivered", "failed"):
        code = form_value("ErrorCode")[:20] or None
        message.error_code = code
        if allowed(OutboxStatus, message.status, OutboxStatus.UNDELIVERED):
            message.status = OutboxStatus.UNDELIVERED
        # An opt-out at the carrier or an unreachable number: the one opt-out policy
        # (reminders.optout) blocks the patient, or stops a family contact's copies,
        # and tells the care team.
        block_for_delivery_error(session, message, code, now)
    if status in FINAL_STATUSES:
        outcome = PageOutcome.DELIVERED if status in ("delivered", "read") else PageOutcome.FAILED
        record_page_outcome(session, message, outcome, now)
    session.add(message)
    session.commit()
    return "", 204


def _status_callback(sid_field: str, status_field: str) -> tuple[Any, str, str]:
    """A status callback's signature checked, then (session, the sid it reports on, its status)."""
    verify_twilio_signature()
    sid = _required(sid_field)[:64]
    status = _required(status_field)[:20]
    return get_session(), sid, status


def _message_with_sid(session: Any, sid: str) -> OutboundMessage | None:
    """The outbox row Twilio knows as ``sid`` (a message or a call), if any."""
    return session.exec(select(OutboundMessage).where(OutboundMessage.provider_sid == sid)).first()


def _say(voice_language: str, text: str) -> str:
    return f'<Say language="{escape(voice_language, _ATTRIBUTE_ENTITIES)}">{escape(text)}</Say>'


def voice_twiml(*elements: str) -> Response:
    """A TwiML voice answer made of the given elements."""
    xml = f"{_TWIML_DECLARATION}<Response>{''.join(elements)}</Response>"
    return Response(xml.encode("utf-8", "xmlcharrefreplace"), mimetype="application/xml")


def _gather(page_id: int, voice_language: str, *texts: str) -> str:
    """A one-key prompt that posts the key to the page's key webhook (an absolute, signed URL)."""
    base = current_app.config["PUBLIC_BASE_URL"].rstrip("/")
    action = f"{base}{VOICE_PAGE_PATH}/{page_id}/key"
    said = "".join(_say(voice_language, text) for text in texts)
    return (
        f'<Gather numDigits="1" action="{escape(action, _ATTRIBUTE_ENTITIES)}" method="POST" '
        f'timeout="{KEY_WAIT_SECONDS}">{said}</Gather>'
    )


#: Seconds a page call waits for a key after its prompt.
KEY_WAIT_SECONDS = 8


def _signed_page_request(page_id: int) -> tuple[Any, OutboundMessage, Alert]:
    """Check the signature; the session, voice page ``page_id`` and its alert (else 404)."""
    verify_twilio_signature()
    session = get_session()
    found = page_of_call(session, page_id)
    if found is None:
        abort(404)
    return session, *found


@webhooks.post("/voice/page/<int:page_id>")
def voice_page(page_id: int) -> Response:
    """The words of page call ``page_id`` (Twilio fetches them when the call is answered).

    The alert is read as it is now: already acknowledged or closed, the call says so
    and hangs up; open, it reads the page (twice, once the prompt is heard) and asks
    for the key 1.
    """
    session, page, alert = _signed_page_request(page_id)
    language = page_language(session, page)
    if alert.status != AlertStatus.OPEN:
        key = "call_already" if alert.status == AlertStatus.ACKNOWLEDGED else "call_not_open"
        return voice_twiml(_say(*voice_words(language, key)))
    voice_language, no_key = voice_words(language, "call_no_key")
    return voice_twiml(
        _gather(page_id, voice_language, page.body, page.body), _say(voice_language, no_key)
    )


@webhooks.post("/voice/page/<int:page_id>/key")
def voice_page_key(page_id: int) -> Response:
    """A key pressed on page call ``page_id``: 1 acknowledges as the clinician called."""
    session, page, alert = _signed_page_request(page_id)
    answer = acknowledge_by_key(session, page, alert, form_value("Digits"), request_now())
    session.commit()
    if answer is None:  # another key: ask once more
        language = page_language(session, page)
        voice_language, no_key = voice_words(language, "call_no_key")
        prompt = voice_words(language, "call_prompt")[1]
        return voice_twiml(_gather(page_id, voice_language, prompt), _say(voice_language, no_key))
    return voice_twiml(_say(answer.voice_language, answer.text))


@webhooks.post("/voice/status")
def voice_status() -> Any:
    """A page call's progress: its outbox row and its alert's timeline (idempotent)."""
    session, sid, status = _status_callback("CallSid", "CallStatus")
    message = _message_with_sid(session, sid)
    if message is None:
        return "", 204
    now = request_now()
    message.provider_status = status
    if status in ("in-progress", "completed"):
        record_page_outcome(session, message, PageOutcome.ANSWERED, now)
    if status == "completed":
        if message.delivered_at is None:
            message.delivered_at = now
        if allowed(OutboxStatus, message.status, OutboxStatus.DELIVERED):
            message.status = OutboxStatus.DELIVERED
    elif status in CALL_OUTCOMES:
        message.error_reason = f"call {status}"
        if allowed(OutboxStatus, message.status, OutboxStatus.UNDELIVERED):
            message.status = OutboxStatus.UNDELIVERED
        record_page_outcome(session, message, CALL_OUTCOMES[status], now)
    session.add(message)
    session.commit()
    return "", 204


#: The shape of a MessageSid (Twilio's are "SM" or "MM" and 32 hex digits).
_MESSAGE_SID = re.compile(r"^[A-Za-z0-9]{2,64}$")


def _link_twiml_reply(session: Any, reply_to: str, sid: str) -> OutboundMessage | None:
    """The stored TwiML reply to the SMS ``reply_to``, now linked to Twilio's message ``sid``.

    Only a reply not linked yet is linked, in one conditional UPDATE: should Twilio have
    made two messages from one answer (a retried webhook whose first answer it did get),
    the second's callbacks change nothing, and two callbacks at once cannot both link.
    """
    if not _MESSAGE_SID.match(reply_to):
        return None
    linked = session.execute(
        update(OutboundMessage)
        .where(
            OutboundMessage.dedupe_key == reply_key(reply_to),
            OutboundMessage.provider_sid.is_(None),
        )
        .values(provider_sid=sid)
    )
    if linked.rowcount != 1:
        return None
    return _message_with_sid(session, sid)


def init_app(app: Flask) -> None:
    """Register the webhooks."""
    app.register_blueprint(webhooks)
