"""Twilio webhooks: incoming SMS and delivery status callbacks.

Every request must carry a valid ``X-Twilio-Signature`` computed over
``PUBLIC_BASE_URL`` + the request path (and query) and the POST parameters;
anything else is refused with 403 before the database is touched. A repeated
``MessageSid`` is acknowledged and ignored. Incoming SMS are answered with TwiML.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlparse
from xml.sax.saxutils import escape

from flask import Blueprint, Flask, Response, abort, current_app, request
from sqlmodel import select
from twilio.request_validator import RequestValidator, add_port, compare, remove_port

from backend.api import request_now
from backend.db import get_session
from backend.models import OutboundMessage, Patient
from backend.schemas import CONTROL_CHARACTERS
from reminders.conversations import handle_inbound_sms
from reminders.dispatch import OPTED_OUT_CODE, UNREACHABLE_CODES
from reminders.outbox import cancel_pending_for_patient

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


def twiml(message: str | None) -> Response:
    """A TwiML answer, with one message or none.

    Written by hand: twilio's ``MessagingResponse`` builds and serialises an
    ElementTree for these two fixed shapes. The bytes are the same as its
    ``str()`` encoded in UTF-8: ElementTree escapes ``&``, ``<`` and ``>`` in text
    (``escape``) and writes what UTF-8 cannot encode as character references.
    """
    if message:
        xml = f"{_TWIML_DECLARATION}<Response><Message>{escape(message)}</Message></Response>"
    else:
        xml = f"{_TWIML_DECLARATION}<Response />"
    return Response(xml.encode("utf-8", "xmlcharrefreplace"), mimetype="application/xml")


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
    """An SMS from a patient: answer at once in TwiML."""
    verify_twilio_signature()
    session = get_session()
    result = handle_inbound_sms(
        session,
        provider_sid=_required("MessageSid")[:64],
        from_phone=_required("From")[:20],
        body=form_value("Body"),
        now=request_now(),
    )
    session.commit()
    return twiml(result.reply)


@webhooks.post("/status")
def delivery_status() -> Any:
    """A delivery status callback: record it on the outbound message (idempotent)."""
    verify_twilio_signature()
    sid = _required("MessageSid")[:64]
    status = _required("MessageStatus")[:20]
    session = get_session()
    message = session.exec(
        select(OutboundMessage).where(OutboundMessage.provider_sid == sid)
    ).first()
    if message is None:
        return "", 204
    now = request_now()
    if message.provider_status not in FINAL_STATUSES:
        message.provider_status = status
    if status == "delivered" and message.delivered_at is None:
        message.delivered_at = now
        message.status = "delivered"
    elif status in ("undelivered", "failed"):
        code = form_value("ErrorCode")[:20] or None
        message.status, message.error_code = "undelivered", code
        _block_patient_if_unreachable(session, message, code, now)
    session.add(message)
    session.commit()
    return "", 204


def _block_patient_if_unreachable(
    session: Any, message: OutboundMessage, code: str | None, now: Any
) -> None:
    if message.recipient != "patient" or message.patient_id is None or code is None:
        return
    patient = session.get(Patient, message.patient_id)
    if code == OPTED_OUT_CODE:
        patient.opted_out, patient.opted_out_at = True, now
    elif code in UNREACHABLE_CODES:
        patient.sms_blocked_reason = f"{UNREACHABLE_CODES[code]} (Twilio {code})"
    else:
        return
    session.add(patient)
    cancel_pending_for_patient(session, patient.id, "patient unreachable or opted out")


def init_app(app: Flask) -> None:
    """Register the webhooks."""
    app.register_blueprint(webhooks)
