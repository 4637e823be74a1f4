"""SMS delivery behind one small interface, with named backends.

Two backends implement :class:`SmsGateway`:

* ``console`` (:class:`ConsoleGateway`, the embedded default): prints each SMS to stdout,
  so a developer sees the exact text a patient would receive without any account.
* ``twilio`` (:class:`TwilioGateway`): sends through the real ``twilio`` client. With
  ``api_base_url`` set, every request goes to a Twilio-compatible server instead of
  ``https://api.twilio.com`` (the test fake, a staging stub).

Failures come back as one of two exception families, because the dispatcher's only real
question is "may I try this message again?":

* :class:`TransientSendError`: rate limits, 5xx answers, timeouts, dropped connections.
  Retry later with backoff; ``retry_after`` carries the server's hint when it gave one.
* :class:`PermanentSendError`: the request or the recipient is wrong (invalid, unreachable
  or opted-out number, any other 4xx). Retrying can only repeat the same answer.
  :class:`GatewayAuthError` is the special case where the *account* is wrong (bad token):
  every message would fail the same way, so a dispatcher should stop and alert instead of
  marking each message failed.

Privacy: no exception message built here contains a phone number or a body. Twilio's own
error messages do (``"The 'To' number +32... is not a valid phone number"``), so they are
never copied and never chained (``raise ... from None``): a ``logger.exception`` in a caller
cannot leak them through the traceback.

This module never reads the environment: :func:`gateway_from_config` takes the app config.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http.cookiejar import DefaultCookiePolicy
from typing import Any, Protocol, TextIO, TypedDict, Unpack, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.http.response import Response as TwilioResponse
from twilio.rest import Client
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError

from reminders.metrics import count_twilio_error

__all__ = [
    "OPTED_OUT_CODES",
    "PERMANENT_RECIPIENT_CODES",
    "TRANSIENT_TWILIO_CODES",
    "ConsoleGateway",
    "GatewayAuthError",
    "PermanentSendError",
    "SendError",
    "SendResult",
    "SmsGateway",
    "TransientSendError",
    "TwilioGateway",
    "VoiceUrls",
    "gateway_from_config",
    "status_callback_url",
    "voice_urls",
]

#: Path of the status-callback webhook, appended to ``PUBLIC_BASE_URL``.
STATUS_CALLBACK_PATH = "/twilio/status"
#: Paths of the voice webhooks: a page's TwiML (``/<page id>``) and the calls' progress.
VOICE_PAGE_PATH = "/twilio/voice/page"
VOICE_STATUS_PATH = "/twilio/voice/status"
#: The call progress Twilio reports to the voice status webhook.
CALL_PROGRESS_EVENTS = ("initiated", "ringing", "answered", "completed")
#: How long a page call rings before Twilio gives up ("no-answer"): under a voicemail's
#: usual pick-up of 25-30 s, so an unanswered page is reported as such.
CALL_RING_SECONDS = 25


@dataclass(frozen=True, slots=True)
class VoiceUrls:
    """Where Twilio fetches a page call's TwiML and posts its progress."""

    page: str
    status: str


def voice_urls(public_base_url: str, page_id: int) -> VoiceUrls:
    """The voice webhook URLs of page ``page_id`` (exactly what Twilio will sign)."""
    base = public_base_url.strip().rstrip("/")
    return VoiceUrls(page=f"{base}{VOICE_PAGE_PATH}/{page_id}", status=base + VOICE_STATUS_PATH)


#: Twilio error codes that mean "not now" even though some arrive with HTTP 400:
#: 20429 too many requests, 21611 the sender's outgoing queue is full.
TRANSIENT_TWILIO_CODES: frozenset[int] = frozenset({20429, 21611})

#: Twilio error codes about the recipient, kept here so reasons can name them.
PERMANENT_RECIPIENT_CODES: dict[int, str] = {
    21211: "invalid 'To' phone number",
    21408: "no permission to send to this region",
    21610: "recipient has opted out (replied STOP)",
    21612: "'To' number not reachable via SMS",
    21614: "'To' number is not a mobile number",
}

#: 21610: the recipient replied STOP; Twilio refuses until they reply START.
OPTED_OUT_CODES: frozenset[int] = frozenset({21610})

#: Twilio error codes that mean the credentials or account are wrong, not the message.
_AUTH_CODES: frozenset[int] = frozenset({20003, 20005, 20006})

#: HTTP statuses that are worth retrying besides every 5xx (408 is a server-side timeout).
_TRANSIENT_HTTP_STATUSES: frozenset[int] = frozenset({408, 429})

_DEFAULT_TWILIO_BASE_URL = "https://api.twilio.com"

#: Most URLs :meth:`_BaseUrlHttpClient.rewrite` remembers.
_REWRITE_CACHE_MAX = 64

#: The logger handed to the twilio HTTP client. The library logs every request at INFO
#: (about fifteen lines: URL, headers, and the query string, which for a message-list
#: lookup is the patient's phone number), so a process logging at INFO (the clock, a
#: dispatcher) printed a phone number per reconciliation and spent more time writing
#: those lines than sending. Its warnings still go through.
_HTTP_LOGGER = logging.getLogger(f"{__name__}.twilio_http")
_HTTP_LOGGER.setLevel(logging.WARNING)


@dataclass(frozen=True, slots=True)
class SendResult:
    """What the provider said when it took the message: its id and first status."""

    provider_sid: str
    status: str


class SendError(Exception):
    """A message was not handed over. ``reason`` never contains a number or a body.

    ``code`` is the provider's error code as text (Twilio's ``"21211"``) or ``None`` when
    the failure happened below HTTP (timeout, dropped connection); ``http_status`` is the
    HTTP status when there was one.
    """

    def __init__(
        self, reason: str, *, code: str | None = None, http_status: int | None = None
    ) -> None:
        super().__init__(reason if code is None else f"{reason} (code {code})")
        self.reason = reason
        self.code = code
        self.http_status = http_status


class ProviderDetails(TypedDict, total=False):
    """:class:`SendError`'s ``code`` and ``http_status``, as its subclasses pass them on."""

    code: str | None
    http_status: int | None


class TransientSendError(SendError):
    """Retry later with backoff; ``retry_after`` is the server's hint in seconds, if any.

    ``maybe_sent`` is True when the request may have reached the provider and taken
    effect although no answer came back (a timeout or a dropped connection after the
    request was written, an unreadable 2xx): a blind retry could deliver the message
    twice, so the caller should first ask the provider whether it was accepted.
    """

    def __init__(
        self,
        reason: str,
        *,
        retry_after: float | None = None,
        maybe_sent: bool = False,
        **details: Unpack[ProviderDetails],
    ) -> None:
        super().__init__(reason, **details)
        self.retry_after = retry_after
        self.maybe_sent = maybe_sent


class PermanentSendError(SendError):
    """Never retry: the same request would get the same answer.

    ``opted_out`` is True when the recipient replied STOP (Twilio 21610); the caller
    should record that rather than keep queuing messages to them.
    """

    def __init__(
        self, reason: str, *, opted_out: bool = False, **details: Unpack[ProviderDetails]
    ) -> None:
        super().__init__(reason, **details)
        self.opted_out = opted_out


class GatewayAuthError(PermanentSendError):
    """The account, not the message, is wrong (HTTP 401/403, Twilio 20003).

    A subclass of :class:`PermanentSendError` so it is never retried blindly, but a
    dispatcher should catch it first: every other message would fail the same way, so
    stop the run and alert rather than mark each message failed.
    """


#: Seconds every request to Twilio may take when ``TWILIO_TIMEOUT_SECONDS`` is not set.
DEFAULT_TWILIO_TIMEOUT = 10.0


@runtime_checkable
class SmsGateway(Protocol):
    """Anything that can hand one SMS to a carrier.

    Implementations must be safe to call from several threads at once.
    """

    name: str

    def send(self, to: str, body: str, *, status_callback: str | None = None) -> SendResult:
        """Send ``body`` to ``to`` (E.164); raise a :class:`SendError` subclass on failure."""
        ...

    def call(self, to: str, *, page_id: int, spoken_text: str) -> SendResult:
        """Place a voice call to ``to`` (E.164) for the on-call page ``page_id``.

        What the call says comes from the voice webhook of ``page_id`` (Twilio fetches
        it when the call is answered; ``spoken_text`` is the same words, for a gateway
        that has no webhook, like the console). Raises a :class:`SendError` subclass.
        """
        ...

    def find_call(self, to: str, *, since: datetime) -> str | None:
        """The provider's id of a call to ``to`` placed at or after ``since``, if any.

        Crash recovery's question for a voice page whose outcome is unknown, as
        :meth:`find_sent` is for an SMS.
        """
        ...

    def find_sent(self, to: str, body: str, *, since: datetime) -> str | None:
        """The provider's id of a message ``body`` to ``to`` it accepted at or after ``since``.

        Crash recovery asks this before sending again a message whose outcome is unknown
        (a dead dispatcher's claim, an unconfirmed send). None means the gateway has no
        such message or cannot tell, and the message is retried; a gateway that keeps no
        record returns None. Raises :class:`TransientSendError` or
        :class:`PermanentSendError` when the provider cannot be asked.
        """
        ...


class ConsoleGateway:
    """Prints each SMS as a block of text: the development default, no account needed.

    ``stream`` defaults to whatever ``sys.stdout`` is *at send time*, so output captured
    by a test runner or redirected by a process manager is honoured. A lock keeps the
    blocks of concurrent senders from interleaving.
    """

    name = "console"

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, to: str, body: str, *, status_callback: str | None = None) -> SendResult:
        """Print the message and return a synthetic ``CONSOLE...`` sid with status ``sent``."""
        sid = f"CONSOLE{uuid.uuid4().hex}"
        lines = [
            "----- SMS (console gateway, not sent) -----",
            f"To:   {to}",
            f"SID:  {sid}",
        ]
        if status_callback:
            # Nobody will call it: shown so a developer knows which URL Twilio would use.
            lines.append(f"Status callback (not called): {status_callback}")
        lines += ["", body, "-------------------------------------------", ""]
        self._write("\n".join(lines) + "\n")
        return SendResult(provider_sid=sid, status="sent")

    def call(self, to: str, *, page_id: int, spoken_text: str) -> SendResult:
        """Print the words the call would say and return a synthetic ``CONSOLECA...`` sid."""
        sid = f"CONSOLECA{uuid.uuid4().hex}"
        block = "\n".join(
            [
                "----- CALL (console gateway, not placed) -----",
                f"To:   {to}",
                f"SID:  {sid}",
                f"Page: {page_id}",
                "",
                spoken_text,
                "----------------------------------------------",
                "",
            ]
        )
        self._write(block + "\n")
        return SendResult(provider_sid=sid, status="queued")

    def find_call(self, to: str, *, since: datetime) -> str | None:
        """Always None, as :meth:`find_sent`."""
        return None

    def _write(self, block: str) -> None:
        with self._lock:
            stream = self._stream if self._stream is not None else sys.stdout
            # One write per block so even an unlocked stream shared with others stays readable.
            stream.write(block)
            stream.flush()

    def find_sent(self, to: str, body: str, *, since: datetime) -> str | None:
        """Always None: nothing leaves the machine, so a retry cannot duplicate an SMS.

        A printed block is not remembered (a restarted process could not read it back
        anyway), so crash recovery prints the message again.
        """
        return None


class _BaseUrlHttpClient(TwilioHttpClient):
    """``TwilioHttpClient`` that sends every request to ``base_url`` and remembers headers.

    The twilio library builds absolute URLs (``https://api.twilio.com/2010-04-01/...``) in
    its generated resource classes and hands them to ``http_client.request``; this is the
    one place every request passes through, so rewriting here covers every API. Scheme and
    host are replaced, the path and query are kept; a path in ``base_url`` (a proxy prefix)
    is put in front of the original path.

    The last response's headers are kept per thread, because ``TwilioRestException`` drops
    them and a 429's ``Retry-After`` is needed to back off correctly.
    """

    def __init__(
        self,
        *,
        base_url: str | None,
        timeout: float,
        max_connections: int,
        trust_env: bool = True,
    ) -> None:
        super().__init__(pool_connections=True, timeout=timeout, logger=_HTTP_LOGGER)
        session = self.session
        assert session is not None  # pool_connections=True always creates one
        if trust_env:
            # What requests would look up in the environment on every request (proxy
            # for this host unless NO_PROXY exempts it, CA bundle), looked up once
            # rather than on every send.
            target = base_url or _DEFAULT_TWILIO_BASE_URL
            settings = session.merge_environment_settings(target, {}, None, None, None)
            session.proxies.update(settings["proxies"])
            session.verify = settings["verify"]
        session.trust_env = False
        # One pool per scheme, sized for a dispatcher's thread pool; no urllib3 retries,
        # because retrying a POST may send an SMS twice (the dispatcher decides instead).
        for prefix in ("https://", "http://"):
            session.mount(prefix, HTTPAdapter(pool_maxsize=max_connections, max_retries=0))
        # The API needs no cookies; refusing them keeps the one piece of state that
        # requests would otherwise update per response out of the shared session.
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        self._base: tuple[str, str, str] | None = None
        if base_url:
            parts = urlsplit(base_url)
            self._base = (parts.scheme, parts.netloc, parts.path.rstrip("/"))
        self._local = threading.local()
        #: Rewritten URLs by original: a dispatcher posts to one URL thousands of times,
        #: and splitting and joining it per send is CPU the raw client does not spend.
        #: Bounded: message fetches have one URL each.
        self._rewritten: dict[str, str] = {}

    def rewrite(self, url: str) -> str:
        """``url`` with scheme and host replaced by the base URL's (path and query kept)."""
        if self._base is None:
            return url
        rewritten = self._rewritten.get(url)
        if rewritten is None:
            scheme, netloc, prefix = self._base
            parts = urlsplit(url)
            rewritten = urlunsplit(
                (scheme, netloc, prefix + parts.path, parts.query, parts.fragment)
            )
            if len(self._rewritten) >= _REWRITE_CACHE_MAX:
                self._rewritten.clear()  # a dict shared by threads: clear, never iterate
            self._rewritten[url] = rewritten
        return rewritten

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> TwilioResponse:
        """Send the request to the rewritten URL; remember the response headers.

        Only the URL changes: the other arguments (``params``, ``data``, ``headers``,
        ``auth``, ``timeout``, ``allow_redirects``) go to twilio's client as given.
        """
        self._local.headers = None
        response = super().request(method, self.rewrite(url), *args, **kwargs)
        self._local.headers = response.headers
        return response

    def last_headers(self) -> Mapping[str, str] | None:
        """Headers of the last response received by the calling thread."""
        return getattr(self._local, "headers", None)


class _NoEnvironment(dict[str, str]):
    """An empty environment that is truthy.

    ``twilio.rest.Client`` falls back to ``os.environ`` when ``environment`` is falsy and
    would then pick up ``TWILIO_REGION``/``TWILIO_EDGE`` and reroute requests; settings must
    come from the app config only.
    """

    def __bool__(self) -> bool:
        return True


class TwilioGateway:
    """Sends through the real ``twilio.rest.Client`` (Programmable Messaging API).

    One client, one ``requests`` session and its connection pool are built here and reused
    for every call: keep-alive saves a TLS handshake per message. The gateway is safe to use
    from several threads at once: the twilio resource objects are resolved once in the
    constructor and not mutated afterwards, the session keeps no cookies, urllib3's pool
    hands each thread its own connection (``max_connections`` of them are kept; more
    threads still work but open extra connections), and the only per-call state (the last
    response's headers) is thread-local.

    ``trust_env`` (default True) lets ``requests`` honour the standard proxy and CA-bundle
    variables (``HTTPS_PROXY``, ``NO_PROXY``, ``REQUESTS_CA_BUNDLE``), which hospital networks
    often need. They are read once, when the gateway is built (``requests`` would read them
    again on every request); False ignores them.

    Either ``from_number`` or ``messaging_service_sid`` is required. When both are given,
    the messaging service wins and ``from_number`` is not sent: the service exists to pick
    the sender (and a number outside its pool would be refused).
    """

    name = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        from_number: str | None = None,
        messaging_service_sid: str | None = None,
        api_base_url: str | None = None,
        timeout: float = 10.0,
        *,
        max_connections: int = 32,
        trust_env: bool = True,
        voice_from_number: str | None = None,
        public_base_url: str | None = None,
    ) -> None:
        if not account_sid or not auth_token:
            raise ValueError("TwilioGateway needs an account SID and an auth token")
        if not from_number and not messaging_service_sid:
            raise ValueError("TwilioGateway needs a from number or a messaging service SID")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if api_base_url:
            parts = urlsplit(api_base_url)
            if parts.scheme not in {"http", "https"} or not parts.netloc:
                # Fail at start-up: a bad URL would otherwise fail every single send.
                raise ValueError(f"api_base_url must be an http(s) URL, got {api_base_url!r}")
        self.account_sid = account_sid
        self.from_number = from_number or None
        self.messaging_service_sid = messaging_service_sid or None
        self.voice_from_number = voice_from_number or from_number or None
        self.public_base_url = (public_base_url or "").strip().rstrip("/") or None
        self.api_base_url = (api_base_url or _DEFAULT_TWILIO_BASE_URL).rstrip("/")
        self.timeout = float(timeout)
        self._http = _BaseUrlHttpClient(
            base_url=api_base_url or None,
            timeout=self.timeout,
            max_connections=max_connections,
            trust_env=trust_env,
        )
        self._client = Client(
            account_sid, auth_token, http_client=self._http, environment=_NoEnvironment()
        )
        # Resolved once: the lazy properties on the way are not meant for concurrent first use.
        self._messages = self._client.api.v2010.account.messages
        self._calls = self._client.api.v2010.account.calls

    def __repr__(self) -> str:
        # No token, no numbers: a repr ends up in logs and tracebacks.
        return (
            f"TwilioGateway(account_sid={self.account_sid!r}, api_base_url={self.api_base_url!r})"
        )

    def close(self) -> None:
        """Close the pooled connections (the gateway can still be used; it reconnects)."""
        if self._http.session is not None:
            self._http.session.close()

    def find_sent(self, to: str, body: str, *, since: datetime) -> str | None:
        """The SID of a message with this body Twilio accepted for ``to`` since ``since``, if any.

        A dispatcher that died between Twilio's acceptance and its own record leaves the
        outcome unknown; asking Twilio before sending again avoids a duplicate SMS.
        Twilio filters ``DateSent`` by day, so the day before ``since`` is asked for and
        the creation time is checked here.
        """
        found = self._list(
            "messages",
            lambda: self._messages.list(
                to=to, date_sent_after=since - timedelta(days=1), limit=200
            ),
        )
        for message in found:
            created = message.date_created
            if message.body == body and (
                created is None or created >= since - timedelta(minutes=1)
            ):
                return message.sid
        return None

    def send(self, to: str, body: str, *, status_callback: str | None = None) -> SendResult:
        """Create a Message; map every failure to a transient or permanent :class:`SendError`."""
        sender: dict[str, Any] = (
            {"messaging_service_sid": self.messaging_service_sid}
            if self.messaging_service_sid
            else {"from_": self.from_number}
        )
        if status_callback:
            sender["status_callback"] = status_callback
        message = self._create(lambda: self._messages.create(to=to, body=body, **sender))
        return SendResult(provider_sid=message.sid, status=str(message.status or "queued"))

    def call(self, to: str, *, page_id: int, spoken_text: str) -> SendResult:
        """Create a Call whose TwiML is the voice webhook of page ``page_id``.

        Twilio fetches ``PUBLIC_BASE_URL/twilio/voice/page/<page_id>`` (signed) when the
        call is answered, and posts the call's progress to the voice status webhook.
        Needs a caller number (``TWILIO_VOICE_FROM_NUMBER``, else ``TWILIO_FROM_NUMBER``:
        a messaging service cannot place calls) and the public base URL.
        """
        if not self.voice_from_number:
            raise PermanentSendError("no caller number configured for voice calls")
        if not self.public_base_url:
            raise PermanentSendError("PUBLIC_BASE_URL is needed for voice calls")
        urls = voice_urls(self.public_base_url, page_id)
        call = self._create(
            lambda: self._calls.create(
                to=to,
                from_=self.voice_from_number,
                url=urls.page,
                method="POST",
                status_callback=urls.status,
                status_callback_method="POST",
                status_callback_event=list(CALL_PROGRESS_EVENTS),
                timeout=CALL_RING_SECONDS,
            )
        )
        return SendResult(provider_sid=call.sid, status=str(call.status or "queued"))

    def find_call(self, to: str, *, since: datetime) -> str | None:
        """The SID of a call Twilio placed to ``to`` since ``since`` (a minute's slack), if any."""
        found = self._list(
            "calls",
            lambda: self._calls.list(to=to, start_time_after=since - timedelta(days=1), limit=50),
        )
        for call in found:
            created = call.date_created
            if created is None or created >= since - timedelta(minutes=1):
                return call.sid
        return None

    def _list(self, what: str, fetch: Callable[[], list[Any]]) -> list[Any]:
        """Run one list request; a failure is a :class:`SendError` (no number in it)."""
        try:
            return fetch()
        except (TwilioRestException, TwilioServiceException) as exc:
            raise _from_twilio_error(exc.status, exc.code, self._http.last_headers()) from None
        except (requests.RequestException, json.JSONDecodeError) as exc:
            raise TransientSendError(f"could not list {what} ({type(exc).__name__})") from None

    def _create(self, create: Callable[[], Any]) -> Any:
        """Run one create request (a message or a call); count each failure by its error code."""
        try:
            return self._create_or_raise(create)
        except SendError as error:
            count_twilio_error(error.code, error.http_status)
            raise

    def _create_or_raise(self, create: Callable[[], Any]) -> Any:
        """Run one create request; map every failure to a transient or permanent :class:`SendError`."""
        twilio_error: SendError | None = None
        try:
            created = create()
        except (TwilioRestException, TwilioServiceException) as exc:
            twilio_error = _from_twilio_error(exc.status, exc.code, self._http.last_headers())
        # Transport errors name only the host and path (no number, no body): chained, they
        # tell an operator whether it was a refusal, a reset or a timeout.
        except requests.ConnectTimeout as exc:
            raise TransientSendError(
                f"could not connect to Twilio within {self.timeout:g} s"
            ) from exc
        except requests.Timeout as exc:
            raise TransientSendError(
                f"no answer from Twilio within {self.timeout:g} s (it may still have accepted the message)",
                maybe_sent=True,
            ) from exc
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise TransientSendError(
                f"connection to Twilio failed ({type(exc).__name__})",
                maybe_sent=_request_may_have_arrived(exc),
            ) from exc
        except requests.RequestException as exc:
            raise TransientSendError(f"request to Twilio failed ({type(exc).__name__})") from exc
        except json.JSONDecodeError as exc:
            # A 2xx whose body is not JSON: the message may exist, but we cannot know its sid.
            raise TransientSendError("unreadable answer from Twilio", maybe_sent=True) from exc
        if twilio_error is not None:
            # Raised outside the ``except`` so the TwilioRestException, whose text quotes the
            # phone number, is neither the cause nor the context of what callers log.
            raise twilio_error
        if not created.sid:
            raise TransientSendError("Twilio answered without a sid")
        return created


def _request_may_have_arrived(exc: requests.RequestException) -> bool:
    """False only when no connection was made (refused, unresolvable host): nothing was sent.

    Any other connection failure (reset or closed while waiting for the answer) may have
    happened after Twilio read the request and created the message.
    """
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return not isinstance(reason, NewConnectionError | ConnectTimeoutError)


def _from_twilio_error(
    http_status: int, code: int | None, headers: Mapping[str, str] | None
) -> SendError:
    """Map an HTTP status and Twilio error code to a transient or permanent error."""
    if code == http_status:
        # The twilio library puts the HTTP status in ``code`` when the body had none.
        code = None
    code_text = str(code) if code is not None else None
    if (
        http_status >= 500
        or http_status in _TRANSIENT_HTTP_STATUSES
        or code in TRANSIENT_TWILIO_CODES
    ):
        retry_after = _retry_after(headers)
        if http_status == 429 or code == 20429:
            reason = f"Twilio rate limit (HTTP {http_status})"
        elif code == 21611:
            reason = "the sender's outgoing queue at Twilio is full"
        else:
            reason = f"Twilio temporarily unavailable (HTTP {http_status})"
        return TransientSendError(
            reason, code=code_text, http_status=http_status, retry_after=retry_after
        )
    if http_status in {401, 403} or code in _AUTH_CODES:
        return GatewayAuthError(
            f"Twilio refused the credentials (HTTP {http_status})",
            code=code_text,
            http_status=http_status,
        )
    described = PERMANENT_RECIPIENT_CODES.get(code) if code is not None else None
    reason = described or f"Twilio rejected the message (HTTP {http_status})"
    return PermanentSendError(
        reason,
        code=code_text,
        http_status=http_status,
        opted_out=code in OPTED_OUT_CODES,
    )


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), if there is one."""
    if not headers:
        return None
    raw = headers.get("Retry-After")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _setting(config: Mapping[str, Any], key: str) -> str | None:
    """A config string with blanks treated as unset (an empty env var means "not set")."""
    value = config.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def gateway_from_config(config: Mapping[str, Any]) -> SmsGateway:
    """The gateway named by ``SMS_BACKEND``: ``console`` (default) or ``twilio``.

    Raises ValueError naming the missing or invalid key, so a misconfigured deployment
    fails at start-up instead of at the first reminder.
    """
    backend = (_setting(config, "SMS_BACKEND") or "console").lower()
    if backend == "console":
        return ConsoleGateway()
    if backend != "twilio":
        raise ValueError(f"SMS_BACKEND must be 'console' or 'twilio', got {backend!r}")
    account_sid = _setting(config, "TWILIO_ACCOUNT_SID")
    auth_token = _setting(config, "TWILIO_AUTH_TOKEN")
    from_number = _setting(config, "TWILIO_FROM_NUMBER")
    service_sid = _setting(config, "TWILIO_MESSAGING_SERVICE_SID")
    if account_sid is None:
        raise ValueError("SMS_BACKEND=twilio needs TWILIO_ACCOUNT_SID")
    if auth_token is None:
        raise ValueError("SMS_BACKEND=twilio needs TWILIO_AUTH_TOKEN")
    if from_number is None and service_sid is None:
        raise ValueError(
            "SMS_BACKEND=twilio needs TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"
        )
    raw_timeout = config.get("TWILIO_TIMEOUT_SECONDS")
    try:
        timeout = DEFAULT_TWILIO_TIMEOUT if raw_timeout in (None, "") else float(raw_timeout)
    except (TypeError, ValueError):
        raise ValueError(f"TWILIO_TIMEOUT_SECONDS must be a number, got {raw_timeout!r}") from None
    if timeout <= 0:
        raise ValueError(f"TWILIO_TIMEOUT_SECONDS must be positive, got {timeout!r}")
    voice_from = _setting(config, "TWILIO_VOICE_FROM_NUMBER")
    base_url = _setting(config, "TWILIO_API_BASE_URL")
    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"TWILIO_API_BASE_URL must be an http(s) URL, got {base_url!r}")
    return TwilioGateway(
        account_sid,
        auth_token,
        from_number=from_number,
        messaging_service_sid=service_sid,
        api_base_url=base_url,
        timeout=timeout,
        voice_from_number=voice_from,
        public_base_url=_setting(config, "PUBLIC_BASE_URL"),
    )


def status_callback_url(public_base_url: str) -> str:
    """The status-callback URL Twilio should POST delivery updates to.

    It must be exactly the URL Twilio signs, so a trailing slash on the base is dropped.
    """
    base = (public_base_url or "").strip().rstrip("/")
    if not base:
        raise ValueError("PUBLIC_BASE_URL is required to build the status callback URL")
    return base + STATUS_CALLBACK_PATH
