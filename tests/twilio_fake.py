"""A Twilio-compatible HTTP server for tests and benchmarks, plus webhook helpers.

:class:`FakeTwilio` serves the part of the Programmable Messaging API the companion uses,
on ``127.0.0.1`` and a free port, so the *real* ``twilio.rest.Client`` can talk to it over
real HTTP (point ``TwilioGateway(api_base_url=fake.base_url)`` at it):

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json`` creates a message: HTTP basic
  auth must be the configured account SID and auth token (else 401, code 20003), the form
  is validated like Twilio does, and the answer is a Twilio-shaped message resource (201).
* ``GET /2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json`` fetches one.

Magic numbers (Twilio's own test-credential values, so the same tests make sense against
Twilio's test account). ``To``:

==================  =====  ==========================================
number              code   meaning
==================  =====  ==========================================
``+15005550001``    21211  invalid phone number
``+15005550002``    21612  Twilio cannot route to this number
``+15005550003``    21408  no permission for this region
``+15005550004``    21610  recipient opted out (replied STOP)
``+15005550009``    21614  not a mobile number, cannot receive SMS
==================  =====  ==========================================

``From``: ``+15005550001`` -> 21212 (invalid), ``+15005550007`` -> 21606 (not owned),
``+15005550008`` -> 21611 (queue full). Unlike Twilio's test account, any other valid
E.164 ``From`` is accepted, so tests can use realistic sender numbers.

Faults are injected per message-create request, deterministically: :meth:`FakeTwilio.fail_next`
forces the next *n* requests to fail, and :meth:`FakeTwilio.set_faults` makes a seeded
fraction fail. The random draws are made under a lock in the order requests arrive, so a
sequential client sees exactly the same sequence for the same seed. Kinds:

* ``"500"``: HTTP 500 with a Twilio JSON error (code 20500).
* ``"429"``: HTTP 429, code 20429 and a ``Retry-After`` header.
* ``"slow"``: sleep ``slow_seconds`` *before* answering (past the client's timeout). With
  ``slow_accepts=False`` (default) the message is then dropped unrecorded and the
  connection closed: the request never took effect. With ``slow_accepts=True`` the message
  is recorded and answered late, which is what happens when Twilio accepts a message but
  the answer is lost: a client that retries sends it twice.
* ``"drop"``: the connection is closed without any response (the message is not recorded).

Built for throughput (benchmarks send tens of thousands of messages): HTTP/1.1 keep-alive,
``TCP_NODELAY``, one ``write`` per response, no per-request logging, daemon threads and a
deep listen backlog.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import math
import random
import re
import socket
import socketserver
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any
from xml.etree import ElementTree

from twilio.request_validator import RequestValidator

if TYPE_CHECKING:
    from flask.testing import FlaskClient
    from werkzeug.test import TestResponse

API_VERSION = "2010-04-01"

#: Credentials the fake accepts unless told otherwise (shaped like Twilio's).
FAKE_ACCOUNT_SID = "AC" + "0" * 31 + "1"
FAKE_AUTH_TOKEN = "0123456789abcdef0123456789abcdef"
FAKE_MESSAGING_SERVICE_SID = "MG" + "0" * 31 + "1"

#: Magic ``To`` numbers and the Twilio error each one produces (HTTP 400).
TO_INVALID = "+15005550001"  # 21211
TO_UNROUTABLE = "+15005550002"  # 21612
TO_NO_PERMISSION = "+15005550003"  # 21408
TO_OPTED_OUT = "+15005550004"  # 21610
TO_NOT_MOBILE = "+15005550009"  # 21614

#: Magic ``From`` numbers: the valid one and those that produce errors (HTTP 400).
FROM_VALID = "+15005550006"
FROM_INVALID = "+15005550001"  # 21212
FROM_NOT_OWNED = "+15005550007"  # 21606
FROM_QUEUE_FULL = "+15005550008"  # 21611

_TO_ERRORS: dict[str, tuple[int, str]] = {
    TO_INVALID: (21211, "The 'To' number {to} is not a valid phone number."),
    TO_UNROUTABLE: (
        21612,
        "The 'To' phone number: {to}, is not currently reachable using the 'From' phone number via SMS.",
    ),
    TO_NO_PERMISSION: (
        21408,
        "Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}.",
    ),
    TO_OPTED_OUT: (21610, "Attempt to send to unsubscribed recipient"),
    TO_NOT_MOBILE: (21614, "'To' number {to} is not a valid mobile number"),
}
_FROM_ERRORS: dict[str, tuple[int, str]] = {
    FROM_INVALID: (
        21212,
        "The 'From' number {from_} is not a valid phone number, shortcode, or alphanumeric sender ID.",
    ),
    FROM_NOT_OWNED: (
        21606,
        "The From phone number {from_} is not a valid, SMS-capable inbound phone number or short code for your account.",
    ),
    FROM_QUEUE_FULL: (
        21611,
        "This 'From' number has exceeded the maximum number of queued messages",
    ),
}

#: Fault kinds understood by :meth:`FakeTwilio.set_faults` and :meth:`FakeTwilio.fail_next`.
FAULT_KINDS: tuple[str, ...] = ("500", "429", "slow", "drop")

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_MESSAGES = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages\.json$")
_MESSAGE = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Messages/(?P<sid>[^/]+)\.json$")
_CALLS = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls\.json$")
_CALL = re.compile(r"^/2010-04-01/Accounts/(?P<account>[^/]+)/Calls/(?P<sid>[^/]+)\.json$")
_MAX_BODY_CHARS = 1600

#: How a simulated call ends (:meth:`FakeTwilio.play_call`): the callee answers (and may
#: press keys), lets it ring out, is busy, or the call fails; the CallStatus Twilio reports.
CALL_OUTCOMES: dict[str, str] = {
    "answer": "completed",
    "no-answer": "no-answer",
    "busy": "busy",
    "failed": "failed",
}

#: A webhook POST: ``post(url, params, headers) -> (HTTP status, body text)``.
WebhookPost = Callable[[str, dict[str, str], dict[str, str]], tuple[int, str]]

# GSM 03.38: the basic set costs one septet per character, the extension set two.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENDED = frozenset("^{}\\[~]|€\f")

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def num_segments(body: str) -> int:
    """SMS segments Twilio would bill for ``body`` (GSM-7 160/153, else UCS-2 70/67)."""
    if all(c in _GSM_BASIC or c in _GSM_EXTENDED for c in body):
        units = len(body) + sum(1 for c in body if c in _GSM_EXTENDED)
        single, multi = 160, 153
    else:
        units = len(body.encode("utf-16-le")) // 2  # astral characters take two units
        single, multi = 70, 67
    if units <= single:
        return 1
    return math.ceil(units / multi)


def _rfc2822(moment: datetime) -> str:
    """Twilio's date format, independent of the process locale."""
    return (
        f"{_DAYS[moment.weekday()]}, {moment.day:02d} {_MONTHS[moment.month - 1]} {moment.year} "
        f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d} +0000"
    )


def _error_payload(status: int, code: int, message: str) -> dict[str, Any]:
    """A Twilio-style (legacy, non RFC-9457) error body."""
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


class _Server(ThreadingHTTPServer):
    """Threading server tuned for many short keep-alive requests."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, address: tuple[str, int], fake: FakeTwilio) -> None:
        self.fake = fake
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can
        # stall for seconds on some machines; the name is never used here.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Shut idle keep-alive connections so their handler threads end now."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the peer
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out or a dropped connection is an expected outcome here,
        # not something to print a traceback for.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Parses the request and hands it to :meth:`FakeTwilio._dispatch`."""

    protocol_version = "HTTP/1.1"  # keep-alive: the client's pool reuses connections
    disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stalls on small answers
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """No per-request logging: it would dominate a benchmark."""

    def do_POST(self) -> None:
        self.server.fake._dispatch(self, "POST")

    def do_GET(self) -> None:
        self.server.fake._dispatch(self, "GET")

    def do_PUT(self) -> None:
        self.server.fake._dispatch(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.fake._dispatch(self, "DELETE")

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def respond(
        self, status: int, payload: Mapping[str, Any], extra: Mapping[str, str] | None = None
    ) -> None:
        """Write status line, headers and JSON body in a single ``write``."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        lines = [
            f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
            f"Date: {self.date_time_string()}",
            "Content-Type: application/json; charset=utf-8",
            f"Content-Length: {len(body)}",
            f"Twilio-Request-Id: RQ{uuid.uuid4().hex}",
        ]
        for name, value in (extra or {}).items():
            lines.append(f"{name}: {value}")
        if self.close_connection:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body)

    def error(
        self, status: int, code: int, message: str, extra: Mapping[str, str] | None = None
    ) -> None:
        self.respond(status, _error_payload(status, code, message), extra)


class FakeTwilio:
    """A Twilio Messaging API stand-in on ``127.0.0.1`` (see the module docstring).

    Use as a context manager, or call :meth:`start` and :meth:`stop`. ``base_url`` is
    ``http://127.0.0.1:<port>`` once started. All methods are thread-safe.
    """

    def __init__(
        self,
        account_sid: str = FAKE_ACCOUNT_SID,
        auth_token: str = FAKE_AUTH_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._address = (host, port)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._messages: list[dict[str, Any]] = []
        self._by_sid: dict[str, dict[str, Any]] = {}
        self._resources: dict[str, dict[str, Any]] = {}
        self._calls: list[dict[str, Any]] = []
        self._call_plans: dict[str, tuple[str, str | None]] = {}
        self._stats: Counter[str] = Counter()
        #: How webhooks (a call's TwiML, key presses, call progress) are posted: None for
        #: real HTTP, or a function such as one going through a Flask test client.
        self.webhook_post: WebhookPost | None = None
        self._expected_auth = self._basic(account_sid, auth_token)
        # Fault injection state (guarded by _lock).
        self._forced: list[str] = []
        self._rate = 0.0
        self._kinds: tuple[str, ...] = FAULT_KINDS
        self._rng = random.Random(0)
        self.slow_seconds = 1.0
        self.slow_accepts = False
        self.retry_after_seconds = 1
        #: Where creation times come from: a test with an injected clock sets its own, so
        #: that Twilio's ``date_created`` and the dispatcher's ``claimed_at`` share one time.
        self.clock: Callable[[], datetime] = lambda: datetime.now(UTC)
        self.base_url = ""

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeTwilio:
        """Bind a free port and serve from a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        self._server = _Server(self._address, self)
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FakeTwilio:{port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake slow handlers and close every connection."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.close_open_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what was received -------------------------------------------------------------

    @property
    def messages(self) -> list[dict[str, Any]]:
        """Accepted messages in arrival order: sid, to, from, body, status_callback, ..."""
        with self._lock:
            return [dict(m) for m in self._messages]

    def bodies_to(self, number: str) -> list[str]:
        """Bodies of the accepted messages sent to ``number``, in arrival order."""
        with self._lock:
            return [m["body"] for m in self._messages if m["to"] == number]

    def message(self, sid: str) -> dict[str, Any] | None:
        """The recorded message with ``sid``, or None."""
        with self._lock:
            found = self._by_sid.get(sid)
            return dict(found) if found else None

    @property
    def stats(self) -> dict[str, int]:
        """Requests counted by outcome.

        Keys: ``requests`` (every request), ``accepted``, ``rejected`` (4xx validation and
        magic numbers), ``unauthorized``, ``not_found``, ``fetched``, and ``fault_500``,
        ``fault_429``, ``fault_slow``, ``fault_drop``.
        """
        with self._lock:
            return dict(self._stats)

    @property
    def calls(self) -> list[dict[str, Any]]:
        """Calls placed, in arrival order: sid, to, from, url, status_callback, status, and
        once played, what was said (``spoken``) and the keys pressed (``digits``)."""
        with self._lock:
            return [dict(c) for c in self._calls]

    def calls_to(self, number: str) -> list[dict[str, Any]]:
        """The calls placed to ``number``, in arrival order."""
        return [c for c in self.calls if c["to"] == number]

    def clear(self) -> None:
        """Forget recorded messages and counters (fault settings are kept)."""
        with self._lock:
            self._calls.clear()
            self._messages.clear()
            self._by_sid.clear()
            self._resources.clear()
            self._stats.clear()

    # --- fault injection ---------------------------------------------------------------

    def set_faults(
        self,
        rate: float,
        kinds: Iterable[str] = FAULT_KINDS,
        *,
        seed: int = 0,
        slow_seconds: float | None = None,
        slow_accepts: bool | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Make a seeded fraction ``rate`` of message-create requests fail.

        Each request draws once from ``random.Random(seed)`` (in arrival order) and, when it
        fails, draws its kind uniformly from ``kinds``. ``rate=0`` turns faults off.
        """
        kinds = tuple(kinds)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"rate must be between 0 and 1, got {rate!r}")
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"kinds must be a non-empty subset of {FAULT_KINDS}, got {kinds!r}")
        with self._lock:
            self._rate = rate
            self._kinds = kinds
            self._rng = random.Random(seed)
            if slow_seconds is not None:
                self.slow_seconds = slow_seconds
            if slow_accepts is not None:
                self.slow_accepts = slow_accepts
            if retry_after is not None:
                self.retry_after_seconds = retry_after

    def fail_next(self, n: int = 1, kind: str = "500") -> None:
        """Make the next ``n`` message-create requests fail with ``kind`` (before any random fault)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {FAULT_KINDS}, got {kind!r}")
        with self._lock:
            self._forced.extend([kind] * n)

    def _next_fault(self) -> str | None:
        with self._lock:
            if self._forced:
                return self._forced.pop(0)
            if self._rate > 0.0 and self._rng.random() < self._rate:
                return self._kinds[self._rng.randrange(len(self._kinds))]
            return None

    # --- status callbacks --------------------------------------------------------------

    def status_callback_params(
        self, sid: str, status: str, *, error_code: int | None = None
    ) -> dict[str, str]:
        """The form Twilio POSTs to a message's StatusCallback when its status changes."""
        record = self.message(sid)
        if record is None:
            raise KeyError(sid)
        params = {
            "ApiVersion": API_VERSION,
            "AccountSid": self.account_sid,
            "MessageSid": sid,
            "SmsSid": sid,
            "MessageStatus": status,
            "SmsStatus": status,
            "To": record["to"],
            "From": record["from"] or "",
        }
        if record.get("messaging_service_sid"):
            params["MessagingServiceSid"] = record["messaging_service_sid"]
        if error_code is not None:
            params["ErrorCode"] = str(error_code)
        return params

    def send_status_callback(
        self,
        sid: str,
        status: str,
        *,
        url: str | None = None,
        error_code: int | None = None,
        post: Callable[[str, dict[str, str], dict[str, str]], int] | None = None,
        timeout: float = 5.0,
    ) -> int:
        """POST a signed status callback for ``sid`` and return the HTTP status received.

        ``url`` defaults to the StatusCallback the message was sent with. ``post`` replaces
        the HTTP call (``post(url, params, headers) -> status``), e.g. to go through a Flask
        test client. The recorded message (and ``GET``) takes the new status.
        """
        params = self.status_callback_params(sid, status, error_code=error_code)
        target = url or (self.message(sid) or {}).get("status_callback")
        if not target:
            raise ValueError(f"message {sid} has no status callback URL")
        with self._lock:
            self._by_sid[sid]["status"] = status
            resource = self._resources[sid]
            resource["status"] = status
            resource["date_updated"] = _rfc2822(self.clock())
            if error_code is not None:
                resource["error_code"] = error_code
        if post is not None:
            return post(target, params, self._signed_headers(target, params))
        return self._post_signed(target, params, timeout=timeout)[0]

    def _signed_headers(self, url: str, params: Mapping[str, str]) -> dict[str, str]:
        return {
            "X-Twilio-Signature": RequestValidator(self.auth_token).compute_signature(
                url, dict(params)
            ),
            "Content-Type": "application/x-www-form-urlencoded",
        }

    def _post_signed(
        self, url: str, params: Mapping[str, str], *, timeout: float = 5.0
    ) -> tuple[int, str]:
        """POST ``params`` to a webhook ``url``, signed as Twilio signs; (status, body text)."""
        params = dict(params)
        headers = self._signed_headers(url, params)
        if self.webhook_post is not None:
            return self.webhook_post(url, params, headers)
        request = urllib.request.Request(
            url, data=urllib.parse.urlencode(params).encode(), headers=headers, method="POST"
        )
        # No proxies from the environment: test traffic must stay on this machine.
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(request, timeout=timeout) as response:
                return int(response.status), response.read().decode("utf-8")
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read().decode("utf-8", "replace")

    # --- voice calls -------------------------------------------------------------------

    def on_call(self, number: str, outcome: str, digits: str | None = None) -> None:
        """Play every later call to ``number`` at once, in a thread: ``outcome`` of
        :data:`CALL_OUTCOMES`, pressing ``digits`` when answered. Without it a call stays
        ringing until the test plays it (:meth:`play_call`)."""
        if outcome not in CALL_OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(CALL_OUTCOMES)}, got {outcome!r}")
        with self._lock:
            self._call_plans[number] = (outcome, digits)

    def play_call(
        self, sid: str, outcome: str = "answer", digits: str | None = None
    ) -> dict[str, Any]:
        """Play call ``sid`` as Twilio would, and return its record.

        ``answer``: the call's TwiML URL is fetched (signed), its ``<Say>`` texts kept in
        ``spoken``; with ``digits`` and a ``<Gather>``, the keys are posted to the
        gather's ``action`` (signed) and its answer's ``<Say>`` texts kept too. Then the
        status callback reports ``completed``; for ``no-answer``, ``busy`` and ``failed``
        only the status callback is posted. Webhook answers' HTTP statuses are kept in
        ``webhook_statuses``.
        """
        if outcome not in CALL_OUTCOMES:
            raise ValueError(f"outcome must be one of {sorted(CALL_OUTCOMES)}, got {outcome!r}")
        with self._lock:
            record = next((c for c in self._calls if c["sid"] == sid), None)
            if record is None:
                raise KeyError(sid)
            record = dict(record)
        statuses: list[int] = []
        spoken: list[str] = []
        pressed = None
        params = self._call_params(record, "in-progress")
        if outcome == "answer":
            status, answer = self._post_signed(record["url"], params)
            statuses.append(status)
            gather = None
            if status == 200:
                gather = ElementTree.fromstring(answer.encode("utf-8")).find("Gather")
                # A key pressed during the <Gather> ends it: what follows is never heard.
                heard = gather if digits and gather is not None else None
                spoken += _said(answer) if heard is None else _said(ElementTree.tostring(heard))
            if digits and gather is not None:
                action = urllib.parse.urljoin(record["url"], gather.get("action") or "")
                status, answer = self._post_signed(
                    action, {**params, "Digits": digits, "FinishedOnKey": ""}
                )
                statuses.append(status)
                pressed = digits
                if status == 200:
                    spoken += _said(answer)
        final = CALL_OUTCOMES[outcome]
        with self._lock:
            stored = next(c for c in self._calls if c["sid"] == sid)
            stored.update(status=final, spoken=spoken, digits=pressed)
            self._resources[sid]["status"] = final
        if record.get("status_callback"):
            done = self._call_params(record, final)
            if outcome == "answer":
                done["CallDuration"] = "21"
            statuses.append(self._post_signed(record["status_callback"], done)[0])
        with self._lock:
            stored["webhook_statuses"] = statuses
            return dict(stored)

    def _call_params(self, record: Mapping[str, Any], status: str) -> dict[str, str]:
        """The form Twilio posts to a call's webhooks."""
        return {
            "AccountSid": self.account_sid,
            "ApiVersion": API_VERSION,
            "CallSid": record["sid"],
            "CallStatus": status,
            "Called": record["to"],
            "Caller": record["from"],
            "Direction": "outbound-api",
            "From": record["from"],
            "To": record["to"],
        }

    def _calls_resource(self, handler: _Handler, method: str, path: str, raw: bytes) -> None:
        """``POST .../Calls.json`` places a call; ``GET`` lists (To, StartTime>) or fetches one."""
        if method == "POST" and _CALLS.match(path):
            self._create_call(handler, raw)
            return
        if method != "GET":
            handler.error(405, 20004, "Method not allowed")
            return
        one = _CALL.match(path)
        with self._lock:
            if one is not None:
                resource = self._resources.get(one["sid"])
                found = [dict(resource)] if resource else []
            else:
                query = urllib.parse.parse_qs(
                    handler.path.split("?", 1)[1] if "?" in handler.path else ""
                )
                to = (query.get("To") or [None])[0]
                found = [
                    dict(self._resources[c["sid"]])
                    for c in reversed(self._calls)
                    if to is None or c["to"] == to
                ]
        if one is not None:
            if not found:
                handler.error(404, 20404, f"The requested resource {path} was not found")
                return
            handler.respond(200, found[0])
            return
        handler.respond(200, _list_page("calls", found, path))

    def _create_call(self, handler: _Handler, raw: bytes) -> None:
        """Validate a call-create form like Twilio, record the call, and play it if told to."""
        form = urllib.parse.parse_qs(raw.decode("utf-8"), keep_blank_values=True)

        def field(name: str) -> str:
            return (form.get(name) or [""])[0]

        to, from_, url = field("To"), field("From"), field("Url")
        if not to:
            handler.error(400, 21201, "No 'To' number is specified")
            return
        if not from_:
            handler.error(400, 21213, "No 'From' number is specified")
            return
        if not url and not field("Twiml") and not field("ApplicationSid"):
            handler.error(400, 21205, "Url parameter is required.")
            return
        if to in _TO_ERRORS or not _E164.match(to):
            handler.error(400, 21211, f"The 'To' number {to} is not a valid phone number.")
            return
        if not _E164.match(from_):
            handler.error(400, 21212, f"The 'From' number {from_} is not a valid phone number.")
            return
        sid = "CA" + uuid.uuid4().hex
        stamp = _rfc2822(self.clock())
        resource = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "date_created": stamp,
            "date_updated": stamp,
            "direction": "outbound-api",
            "from": from_,
            "from_formatted": from_,
            "sid": sid,
            "start_time": None,
            "end_time": None,
            "status": "queued",
            "to": to,
            "to_formatted": to,
            "uri": f"/{API_VERSION}/Accounts/{self.account_sid}/Calls/{sid}.json",
        }
        record = {
            "sid": sid,
            "to": to,
            "from": from_,
            "url": url,
            "method": field("Method") or "POST",
            "status_callback": field("StatusCallback") or None,
            "status_callback_events": form.get("StatusCallbackEvent", []),
            "timeout": field("Timeout") or None,
            "status": "queued",
            "spoken": [],
            "digits": None,
        }
        with self._lock:
            self._calls.append(record)
            self._resources[sid] = resource
            self._stats["calls"] += 1
            plan = self._call_plans.get(to)
        handler.respond(201, resource)
        if plan is not None:
            threading.Thread(
                target=self.play_call, args=(sid, *plan), name=f"call-{sid[:8]}", daemon=True
            ).start()

    def answer_twiml(self, answer: str, inbound: Mapping[str, str]) -> list[str]:
        """Act on a webhook's TwiML answer as Twilio does; return the sids of the messages made.

        Each ``<Message>`` becomes a message from the number the SMS was sent to
        (``inbound["To"]``) to its sender (``inbound["From"]``), unless it names ``to``
        or ``from``. Its ``action`` URL (or the older ``statusCallback``) is where the
        message's status callbacks go (:meth:`send_status_callback`), as for a message
        created with ``StatusCallback`` through the API. No ``<Message>``: no message.
        """
        sids = []
        for element in ElementTree.fromstring(answer.encode("utf-8")).iter("Message"):
            resource = self._record(
                to=element.get("to") or inbound["From"],
                from_=element.get("from") or inbound["To"],
                body=element.text or "",
                service="",
                status_callback=element.get("action") or element.get("statusCallback"),
                direction="outbound-reply",
            )
            sids.append(resource["sid"])
        return sids

    # --- request handling --------------------------------------------------------------

    @staticmethod
    def _basic(user: str, password: str) -> str:
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    def _count(self, outcome: str) -> None:
        with self._lock:
            self._stats[outcome] += 1

    def _dispatch(self, handler: _Handler, method: str) -> None:
        """Route one request; every branch answers (or deliberately does not)."""
        body = handler.read_body()
        path = handler.path.split("?", 1)[0]
        self._count("requests")
        create = _MESSAGES.match(path) if method == "POST" else None
        if create is not None:
            fault = self._next_fault()
            # A slow request that Twilio accepts anyway comes back False and goes on, late.
            if fault is not None and self._inject(handler, fault):
                return
        if not hmac.compare_digest(handler.headers.get("Authorization", ""), self._expected_auth):
            self._count("unauthorized")
            handler.error(
                401,
                20003,
                "Authenticate",
                {"WWW-Authenticate": 'Basic realm="Twilio API"'},
            )
            return
        call_path = _CALLS.match(path) or _CALL.match(path)
        if call_path is not None and call_path["account"] == self.account_sid:
            self._calls_resource(handler, method, path, body)
            return
        fetch = _MESSAGE.match(path) if method == "GET" else None
        listing = _MESSAGES.match(path) if method == "GET" else None
        if listing is not None and listing["account"] == self.account_sid:
            self._list(handler, handler.path.split("?", 1)[1] if "?" in handler.path else "", path)
            return
        match = create or fetch
        if match is None or match["account"] != self.account_sid:
            self._count("not_found")
            if method not in {"GET", "POST"}:
                handler.error(405, 20004, "Method not allowed")
                return
            handler.error(404, 20404, f"The requested resource {path} was not found")
            return
        if fetch is not None:
            with self._lock:
                resource = self._resources.get(fetch["sid"])
                resource = dict(resource) if resource else None
            if resource is None:
                self._count("not_found")
                handler.error(404, 20404, f"The requested resource {path} was not found")
                return
            self._count("fetched")
            handler.respond(200, resource)
            return
        self._create(handler, body)

    def _list(self, handler: _Handler, query: str, path: str) -> None:
        """``GET .../Messages.json`` filtered like Twilio by ``To`` and ``DateSent>`` (one page)."""
        params = urllib.parse.parse_qs(query)
        to = (params.get("To") or [None])[0]
        after_text = (params.get("DateSent>") or [None])[0]
        after = datetime.fromisoformat(after_text.replace("Z", "+00:00")) if after_text else None
        if after is not None and after.tzinfo is None:
            after = after.replace(tzinfo=UTC)
        with self._lock:
            found = [
                dict(self._resources[r["sid"]])
                for r in reversed(self._messages)  # newest first, as Twilio lists
                if (to is None or r["to"] == to) and (after is None or r["received_at"] >= after)
            ]
        self._count("listed")
        handler.respond(200, _list_page("messages", found, path))

    def _inject(self, handler: _Handler, fault: str) -> bool:
        """Apply ``fault``; True when the request is finished (answered or dropped)."""
        self._count(f"fault_{fault}")
        if fault == "500":
            handler.error(500, 20500, "An internal server error has occurred")
            return True
        if fault == "429":
            handler.error(
                429, 20429, "Too Many Requests", {"Retry-After": str(self.retry_after_seconds)}
            )
            return True
        if fault == "slow":
            # Event.wait instead of sleep so stop() wakes slow handlers at once.
            self._stopping.wait(self.slow_seconds)
            if self.slow_accepts and not self._stopping.is_set():
                return False
        # "drop", or a slow request that never took effect: close without an answer.
        handler.close_connection = True
        return True

    def _record(
        self,
        *,
        to: str,
        from_: str,
        body: str,
        service: str,
        status_callback: str | None,
        direction: str,
    ) -> dict[str, Any]:
        """Record an accepted message and return its resource (as Twilio answers it)."""
        sid = "SM" + uuid.uuid4().hex
        now = self.clock()
        stamp = _rfc2822(now)
        # Through a messaging service without a From, Twilio answers "accepted": the
        # sender is picked later from the service's pool.
        status = "queued" if from_ else "accepted"
        base = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        resource: dict[str, Any] = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": stamp,
            "date_sent": None,
            "date_updated": stamp,
            "direction": direction,
            "error_code": None,
            "error_message": None,
            "from": from_ or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": str(num_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": status,
            "subresource_uris": {"media": f"{base}/Media.json"},
            "to": to,
            "uri": f"{base}.json",
        }
        record = {
            "sid": sid,
            "to": to,
            "from": from_ or None,
            "body": body,
            "status_callback": status_callback,
            "messaging_service_sid": service or None,
            "status": status,
            "received_at": now,
        }
        with self._lock:
            self._messages.append(record)
            self._by_sid[sid] = record
            self._resources[sid] = resource
            self._stats["accepted"] += 1
        return resource

    def _create(self, handler: _Handler, raw: bytes) -> None:
        """Validate a message-create form like Twilio and record the message."""
        form = urllib.parse.parse_qs(raw.decode("utf-8"), keep_blank_values=True)
        to = (form.get("To") or [""])[0]
        from_ = (form.get("From") or [""])[0]
        body = (form.get("Body") or [""])[0]
        service = (form.get("MessagingServiceSid") or [""])[0]
        status_callback = (form.get("StatusCallback") or [None])[0]

        def reject(code: int, message: str) -> None:
            self._count("rejected")
            handler.error(400, code, message)

        if not to:
            return reject(21604, "A 'To' phone number is required.")
        if not from_ and not service:
            return reject(
                21603, "A 'From' or 'MessagingServiceSid' parameter is required to send a message"
            )
        if not body and "MediaUrl" not in form and "ContentSid" not in form:
            return reject(21602, "Message body is required.")
        if len(body) > _MAX_BODY_CHARS:
            return reject(21617, "The concatenated message body exceeds the 1600 character limit.")
        if service and not _SERVICE_SID.match(service):
            return reject(21701, f"The Messaging Service Sid {service} is invalid.")
        if from_:
            if from_ in _FROM_ERRORS:
                code, text = _FROM_ERRORS[from_]
                return reject(code, text.format(from_=from_))
            if not _E164.match(from_):
                return reject(
                    21212,
                    f"The 'From' number {from_} is not a valid phone number, shortcode, or alphanumeric sender ID.",
                )
        if to in _TO_ERRORS:
            code, text = _TO_ERRORS[to]
            return reject(code, text.format(to=to))
        if not _E164.match(to):
            return reject(21211, f"The 'To' number {to} is not a valid phone number.")

        resource = self._record(
            to=to,
            from_=from_,
            body=body,
            service=service,
            status_callback=status_callback,
            direction="outbound-api",
        )
        handler.respond(201, resource)
        return None


# --- webhook helpers (inbound SMS, status callbacks) through a Flask test client ---------


def _list_page(key: str, found: list[dict[str, Any]], path: str) -> dict[str, Any]:
    """One page of a Twilio list answer holding every resource found under ``key``."""
    return {
        key: found,
        "end": max(len(found) - 1, 0),
        "first_page_uri": path,
        "next_page_uri": None,
        "page": 0,
        "page_size": max(len(found), 50),
        "previous_page_uri": None,
        "start": 0,
        "uri": path,
    }


def _said(twiml: str | bytes) -> list[str]:
    """The texts of every ``<Say>`` of a TwiML document (or element), in order."""
    raw = twiml.encode("utf-8") if isinstance(twiml, str) else twiml
    return [(element.text or "").strip() for element in ElementTree.fromstring(raw).iter("Say")]


def twilio_signature(url: str, params: Mapping[str, str], auth_token: str) -> str:
    """``X-Twilio-Signature`` for a form POST of ``params`` to ``url``."""
    return RequestValidator(auth_token).compute_signature(url, dict(params))


def signed_form_post(
    client: FlaskClient, url: str, params: Mapping[str, str], auth_token: str
) -> TestResponse:
    """POST ``params`` to the full ``url`` with a valid Twilio signature, via a Flask test client.

    The signature covers the full URL, so the request is made with that URL's scheme and
    host (``base_url``) for the app to see the same URL Twilio signed.
    """
    parts = urllib.parse.urlsplit(url)
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    return client.post(
        path,
        base_url=f"{parts.scheme}://{parts.netloc}",
        data=dict(params),
        headers={"X-Twilio-Signature": twilio_signature(url, params, auth_token)},
    )


def inbound_sms_params(
    from_: str,
    body: str,
    to: str,
    sid: str | None = None,
    *,
    account_sid: str = FAKE_ACCOUNT_SID,
    messaging_service_sid: str | None = None,
) -> dict[str, str]:
    """The form Twilio POSTs to the messaging webhook when an SMS arrives."""
    sid = sid or "SM" + uuid.uuid4().hex
    params = {
        "ToCountry": "",
        "ToState": "",
        "SmsMessageSid": sid,
        "NumMedia": "0",
        "ToCity": "",
        "FromZip": "",
        "SmsSid": sid,
        "FromState": "",
        "SmsStatus": "received",
        "FromCity": "",
        "Body": body,
        "FromCountry": "",
        "To": to,
        "ToZip": "",
        "NumSegments": str(num_segments(body)),
        "MessageSid": sid,
        "AccountSid": account_sid,
        "From": from_,
        "ApiVersion": API_VERSION,
    }
    if messaging_service_sid:
        params["MessagingServiceSid"] = messaging_service_sid
    return params


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes (for asynchronous senders)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()
