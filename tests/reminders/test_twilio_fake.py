"""The fake Twilio itself: it must look like Twilio to the real client and to webhooks."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask, request
from twilio.base.exceptions import TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from reminders.gateways import TwilioGateway
from tests.twilio_fake import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FROM_VALID,
    FakeTwilio,
    inbound_sms_params,
    num_segments,
    signed_form_post,
)

PATIENT = "+32470123456"


@pytest.fixture
def fake(fake_twilio: FakeTwilio) -> FakeTwilio:
    """The shared fake Twilio server, under a short name."""
    return fake_twilio


@pytest.fixture
def raw_client(fake: FakeTwilio) -> Iterator[Client]:
    """A plain twilio Client whose requests are sent to the fake (no gateway mapping)."""
    gateway = TwilioGateway(
        FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, from_number=FROM_VALID, api_base_url=fake.base_url
    )
    yield gateway._client
    gateway.close()


def test_fetch_returns_the_created_message(fake: FakeTwilio, raw_client: Client) -> None:
    created = raw_client.messages.create(to=PATIENT, from_=FROM_VALID, body="hello")
    fetched = raw_client.messages(created.sid).fetch()

    assert fetched.sid == created.sid
    assert fetched.to == PATIENT and fetched.from_ == FROM_VALID and fetched.body == "hello"
    assert fetched.status == "queued" and fetched.direction == "outbound-api"
    assert fetched.num_segments == "1"
    assert fetched.date_created is not None and fetched.date_created.tzinfo is not None
    assert fake.stats["fetched"] == 1


def test_fetch_of_an_unknown_sid_is_404(raw_client: Client) -> None:
    with pytest.raises(TwilioRestException) as caught:
        raw_client.messages("SM" + "0" * 32).fetch()
    assert caught.value.status == 404 and caught.value.code == 20404


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"to": "", "from_": FROM_VALID, "body": "x"}, 21604),
        ({"to": PATIENT, "from_": FROM_VALID, "body": ""}, 21602),
        ({"to": PATIENT, "body": "x"}, 21603),
        ({"to": PATIENT, "from_": FROM_VALID, "body": "x" * 1601}, 21617),
        ({"to": PATIENT, "messaging_service_sid": "MGnope", "body": "x"}, 21701),
    ],
)
def test_validation_like_twilio(raw_client: Client, fields: dict[str, Any], code: int) -> None:
    with pytest.raises(TwilioRestException) as caught:
        raw_client.messages.create(**fields)
    assert caught.value.status == 400 and caught.value.code == code


def test_unauthenticated_request_gets_twilio_style_401(fake: FakeTwilio) -> None:
    client = Client(FAKE_ACCOUNT_SID, "wrong", http_client=TwilioHttpClient(timeout=2))
    url = f"{fake.base_url}/2010-04-01/Accounts/{FAKE_ACCOUNT_SID}/Messages.json"
    response = client.request("POST", url, data={"To": PATIENT, "Body": "x", "From": FROM_VALID})
    client.http_client.session.close()  # type: ignore[attr-defined]
    assert response.status_code == 401
    assert '"code":20003' in response.text
    assert response.headers["WWW-Authenticate"].startswith("Basic")


@pytest.mark.parametrize(
    ("body", "segments"),
    [("a" * 160, 1), ("a" * 161, 2), ("€" * 80, 1), ("€" * 81, 2), ("é" * 70, 1), ("ł" * 71, 2)],
)
def test_num_segments(body: str, segments: int) -> None:
    assert num_segments(body) == segments


# --- webhook helpers ---------------------------------------------------------------------


def _signature_checking_app() -> Flask:
    app = Flask(__name__)

    @app.post("/twilio/<kind>")
    def hook(kind: str) -> tuple[str, int]:
        valid = RequestValidator(FAKE_AUTH_TOKEN).validate(
            request.url, request.form.to_dict(), request.headers.get("X-Twilio-Signature", "")
        )
        return (request.form.get("Body") or request.form.get("MessageStatus") or ""), (
            200 if valid else 403
        )

    return app


def test_signed_form_post_passes_signature_validation() -> None:
    client = _signature_checking_app().test_client()
    params = inbound_sms_params(PATIENT, "OK", FROM_VALID)
    url = "https://companion.test/twilio/sms"

    good = signed_form_post(client, url, params, FAKE_AUTH_TOKEN)
    bad = signed_form_post(client, url, params, "another-token")

    assert good.status_code == 200 and good.get_data(as_text=True) == "OK"
    assert bad.status_code == 403


def test_inbound_sms_params_look_like_twilio() -> None:
    params = inbound_sms_params(PATIENT, "38.5", FROM_VALID, sid="SM" + "1" * 32)
    assert params["MessageSid"] == params["SmsSid"] == "SM" + "1" * 32
    assert params["From"] == PATIENT and params["To"] == FROM_VALID and params["Body"] == "38.5"
    assert params["AccountSid"] == FAKE_ACCOUNT_SID and params["NumMedia"] == "0"


def test_status_callback_through_a_flask_client(fake: FakeTwilio, raw_client: Client) -> None:
    url = "https://companion.test/twilio/status"
    sid = raw_client.messages.create(
        to=PATIENT, from_=FROM_VALID, body="x", status_callback=url
    ).sid
    client = _signature_checking_app().test_client()

    def post(target: str, params: dict[str, str], headers: dict[str, str]) -> int:
        parts = urllib.parse.urlsplit(target)
        return client.post(
            parts.path, base_url=f"{parts.scheme}://{parts.netloc}", data=params, headers=headers
        ).status_code

    assert fake.send_status_callback(sid, "delivered", post=post) == 200
    assert raw_client.messages(sid).fetch().status == "delivered"


def test_status_callback_over_http(fake: FakeTwilio, raw_client: Client) -> None:
    received: list[tuple[str, dict[str, str], bool]] = []

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers["Content-Length"])).decode()
            form = dict(urllib.parse.parse_qsl(raw))
            url = f"http://{self.headers['Host']}{self.path}"
            ok = RequestValidator(FAKE_AUTH_TOKEN).validate(
                url, form, self.headers["X-Twilio-Signature"]
            )
            received.append((url, form, ok))
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/twilio/status"
        sid = raw_client.messages.create(
            to=PATIENT, from_=FROM_VALID, body="x", status_callback=url
        ).sid
        status = fake.send_status_callback(sid, "undelivered", error_code=30003)
    finally:
        server.shutdown()
        server.server_close()
    assert status == 204
    [(got_url, form, ok)] = received
    assert ok and got_url == url
    assert form["MessageSid"] == sid and form["MessageStatus"] == "undelivered"
    assert form["ErrorCode"] == "30003" and form["To"] == PATIENT
