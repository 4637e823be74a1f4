"""SMS gateways: the real twilio client against the Twilio-compatible fake, and the console.

Every Twilio test goes over real HTTP on 127.0.0.1 through ``twilio.rest.Client``; nothing
is mocked, so URL rewriting, auth, form encoding and error parsing are all exercised.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

from reminders.gateways import (
    ConsoleGateway,
    GatewayAuthError,
    PermanentSendError,
    SendError,
    SendResult,
    SmsGateway,
    TransientSendError,
    TwilioGateway,
    _BaseUrlHttpClient,
    _retry_after,
    gateway_from_config,
    status_callback_url,
)
from tests.twilio_fake import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    FAKE_MESSAGING_SERVICE_SID,
    FROM_QUEUE_FULL,
    FROM_VALID,
    TO_INVALID,
    TO_NO_PERMISSION,
    TO_NOT_MOBILE,
    TO_OPTED_OUT,
    TO_UNROUTABLE,
    FakeTwilio,
    wait_until,
)

PATIENT = "+32470123456"
BODY = "Reminder: your rituximab infusion is tomorrow at 09:00. Reply OK."
CALLBACK = "https://companion.test/twilio/status"


@pytest.fixture
def fake(fake_twilio: FakeTwilio) -> FakeTwilio:
    """The shared fake Twilio server, under a short name."""
    return fake_twilio


@pytest.fixture
def make_gateway(fake: FakeTwilio) -> Iterator[Callable[..., TwilioGateway]]:
    """Build TwilioGateways pointed at ``fake``; their connection pools are closed after."""
    built: list[TwilioGateway] = []

    def factory(**overrides: Any) -> TwilioGateway:
        options: dict[str, Any] = {
            "account_sid": FAKE_ACCOUNT_SID,
            "auth_token": FAKE_AUTH_TOKEN,
            "from_number": FROM_VALID,
            "api_base_url": fake.base_url,
            "timeout": 0.5,
        }
        options.update(overrides)
        gateway = TwilioGateway(**options)
        built.append(gateway)
        return gateway

    yield factory
    for gateway in built:
        gateway.close()


@pytest.fixture
def gateway(make_gateway: Callable[..., TwilioGateway]) -> TwilioGateway:
    """A gateway with a from number and a short timeout."""
    return make_gateway()


# --- success paths ---------------------------------------------------------------------


def test_message_is_accepted_and_recorded(fake: FakeTwilio, gateway: TwilioGateway) -> None:
    result = gateway.send(PATIENT, BODY, status_callback=CALLBACK)

    assert isinstance(result, SendResult)
    assert result.provider_sid.startswith("SM") and len(result.provider_sid) == 34
    assert result.status == "queued"
    [message] = fake.messages
    assert message["sid"] == result.provider_sid
    assert message["to"] == PATIENT
    assert message["from"] == FROM_VALID
    assert message["body"] == BODY
    assert message["status_callback"] == CALLBACK
    assert message["messaging_service_sid"] is None
    assert fake.bodies_to(PATIENT) == [BODY]
    assert fake.stats["accepted"] == 1


def test_unicode_body_and_no_status_callback(fake: FakeTwilio, gateway: TwilioGateway) -> None:
    body = "Température ≥ 38 °C ? Répondez FIÈVRE 🌡"
    gateway.send(PATIENT, body)
    [message] = fake.messages
    assert message["body"] == body
    assert message["status_callback"] is None


def test_messaging_service_sid_is_sent_instead_of_from(
    fake: FakeTwilio, make_gateway: Callable[..., TwilioGateway]
) -> None:
    gateway = make_gateway(from_number=None, messaging_service_sid=FAKE_MESSAGING_SERVICE_SID)
    result = gateway.send(PATIENT, BODY, status_callback=CALLBACK)

    [message] = fake.messages
    assert message["messaging_service_sid"] == FAKE_MESSAGING_SERVICE_SID
    assert message["from"] is None
    # Like Twilio: through a service without a From, the message is "accepted" first.
    assert result.status == "accepted"


def test_messaging_service_wins_when_both_are_configured(
    fake: FakeTwilio, make_gateway: Callable[..., TwilioGateway]
) -> None:
    gateway = make_gateway(messaging_service_sid=FAKE_MESSAGING_SERVICE_SID)
    gateway.send(PATIENT, BODY)
    [message] = fake.messages
    assert message["messaging_service_sid"] == FAKE_MESSAGING_SERVICE_SID
    assert message["from"] is None


def test_gateway_satisfies_the_protocol(gateway: TwilioGateway) -> None:
    assert isinstance(gateway, SmsGateway)
    assert isinstance(ConsoleGateway(), SmsGateway)
    assert gateway.name == "twilio"


def test_concurrent_sends_share_one_gateway(fake: FakeTwilio, gateway: TwilioGateway) -> None:
    numbers = [f"+3247000{i:04d}" for i in range(200)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda n: gateway.send(n, f"hello {n}"), numbers))

    assert len({r.provider_sid for r in results}) == 200
    recorded = {m["to"]: m["body"] for m in fake.messages}
    assert recorded == {n: f"hello {n}" for n in numbers}


# --- errors ----------------------------------------------------------------------------


def test_wrong_auth_token_is_an_auth_error(
    fake: FakeTwilio, make_gateway: Callable[..., TwilioGateway]
) -> None:
    gateway = make_gateway(auth_token="not-the-token")
    with pytest.raises(GatewayAuthError) as caught:
        gateway.send(PATIENT, BODY)

    # Never retried (a PermanentSendError), but distinguishable: the account is wrong.
    assert isinstance(caught.value, PermanentSendError)
    assert caught.value.code == "20003"
    assert caught.value.http_status == 401
    assert fake.messages == []
    assert fake.stats["unauthorized"] == 1


def test_wrong_account_sid_is_permanent(
    fake: FakeTwilio, make_gateway: Callable[..., TwilioGateway]
) -> None:
    gateway = make_gateway(account_sid="AC" + "f" * 32)
    with pytest.raises(PermanentSendError):
        gateway.send(PATIENT, BODY)
    assert fake.messages == []


def test_server_error_is_transient_and_the_next_send_works(
    fake: FakeTwilio, gateway: TwilioGateway
) -> None:
    fake.fail_next(1, "500")
    with pytest.raises(TransientSendError) as caught:
        gateway.send(PATIENT, BODY)
    assert caught.value.http_status == 500
    assert caught.value.code == "20500"
    assert caught.value.retry_after is None

    gateway.send(PATIENT, BODY)
    assert fake.bodies_to(PATIENT) == [BODY]


def test_rate_limit_is_transient_with_retry_after(fake: FakeTwilio, gateway: TwilioGateway) -> None:
    fake.retry_after_seconds = 7
    fake.fail_next(1, "429")
    with pytest.raises(TransientSendError) as caught:
        gateway.send(PATIENT, BODY)
    assert caught.value.code == "20429"
    assert caught.value.http_status == 429
    assert caught.value.retry_after == 7.0
    assert fake.messages == []


def test_answer_slower_than_the_timeout_is_transient(
    fake: FakeTwilio, gateway: TwilioGateway
) -> None:
    fake.set_faults(0.0, slow_seconds=1.0)
    fake.fail_next(1, "slow")
    with pytest.raises(TransientSendError) as caught:
        gateway.send(PATIENT, BODY)
    assert "0.5 s" in caught.value.reason
    assert fake.stats["fault_slow"] == 1
    # The default slow fault never took effect; the pool recovers on the next send.
    gateway.send(PATIENT, "second")
    assert fake.bodies_to(PATIENT) == ["second"]


def test_slow_answer_may_still_have_been_accepted(fake: FakeTwilio, gateway: TwilioGateway) -> None:
    fake.set_faults(0.0, slow_seconds=0.8, slow_accepts=True)
    fake.fail_next(1, "slow")
    with pytest.raises(TransientSendError):
        gateway.send(PATIENT, BODY)
    # Twilio took it although the client gave up: a retry would deliver it twice.
    assert wait_until(lambda: fake.bodies_to(PATIENT) == [BODY], timeout=2.0)


def test_dropped_connection_is_transient(fake: FakeTwilio, gateway: TwilioGateway) -> None:
    gateway.send(PATIENT, "warm the pool")  # the drop then hits a reused keep-alive connection
    fake.fail_next(1, "drop")
    with pytest.raises(TransientSendError) as caught:
        gateway.send(PATIENT, BODY)
    assert caught.value.code is None and caught.value.http_status is None
    gateway.send(PATIENT, "after")
    assert fake.bodies_to(PATIENT) == ["warm the pool", "after"]


def test_unreachable_server_is_transient(make_gateway: Callable[..., TwilioGateway]) -> None:
    with FakeTwilio() as other:
        dead_url = other.base_url
    gateway = make_gateway(api_base_url=dead_url)
    with pytest.raises(TransientSendError):
        gateway.send(PATIENT, BODY)


@pytest.mark.parametrize(
    ("number", "code", "opted_out"),
    [
        (TO_INVALID, "21211", False),
        (TO_NOT_MOBILE, "21614", False),
        (TO_OPTED_OUT, "21610", True),
        (TO_UNROUTABLE, "21612", False),
        (TO_NO_PERMISSION, "21408", False),
        ("0470 12 34 56", "21211", False),
    ],
)
def test_recipient_errors_are_permanent(
    fake: FakeTwilio, gateway: TwilioGateway, number: str, code: str, opted_out: bool
) -> None:
    with pytest.raises(PermanentSendError) as caught:
        gateway.send(number, BODY)

    error = caught.value
    assert not isinstance(error, GatewayAuthError)
    assert error.code == code
    assert error.http_status == 400
    assert error.opted_out is opted_out
    # Twilio's own message quotes the number; ours must not, nor may it be chained.
    assert number not in str(error) and BODY not in str(error)
    assert error.__cause__ is None and error.__context__ is None
    assert fake.messages == []


def test_full_sender_queue_is_transient(make_gateway: Callable[..., TwilioGateway]) -> None:
    gateway = make_gateway(from_number=FROM_QUEUE_FULL)
    with pytest.raises(TransientSendError) as caught:
        gateway.send(PATIENT, BODY)
    assert caught.value.code == "21611"


def test_missing_body_is_permanent(gateway: TwilioGateway) -> None:
    with pytest.raises(PermanentSendError) as caught:
        gateway.send(PATIENT, "")
    assert caught.value.code == "21602"


def test_logs_carry_no_number_and_no_body(
    fake: FakeTwilio, gateway: TwilioGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gateway.send(PATIENT, BODY, status_callback=CALLBACK)
    for number in (TO_INVALID, TO_OPTED_OUT):
        with pytest.raises(PermanentSendError):
            gateway.send(number, BODY)
    fake.fail_next(1, "500")
    with pytest.raises(TransientSendError):
        gateway.send(PATIENT, BODY)

    assert caplog.records, "the twilio client logs its requests; the check must see them"
    for secret in (PATIENT, TO_INVALID, TO_OPTED_OUT, BODY, FAKE_AUTH_TOKEN):
        assert secret not in caplog.text


def test_repr_hides_the_token(gateway: TwilioGateway) -> None:
    assert FAKE_AUTH_TOKEN not in repr(gateway)


# --- fault injection -------------------------------------------------------------------


def _outcomes(gateway: TwilioGateway, n: int) -> list[str]:
    outcomes = []
    for i in range(n):
        try:
            gateway.send(PATIENT, f"message {i}")
            outcomes.append("ok")
        except SendError as exc:
            outcomes.append(f"{type(exc).__name__}:{exc.code}")
    return outcomes


def test_fault_rate_is_close_to_the_setting_and_deterministic(
    fake: FakeTwilio, gateway: TwilioGateway
) -> None:
    fake.set_faults(0.3, kinds=("500", "429", "drop"), seed=42)
    first = _outcomes(gateway, 200)
    stats = fake.stats

    failures = sum(1 for o in first if o != "ok")
    assert abs(failures / 200 - 0.3) < 0.07
    assert all(o == "ok" or o.startswith("TransientSendError") for o in first)
    assert failures == stats["fault_500"] + stats["fault_429"] + stats["fault_drop"]
    assert min(stats["fault_500"], stats["fault_429"], stats["fault_drop"]) > 0
    assert len(fake.messages) == stats["accepted"] == 200 - failures

    fake.clear()
    fake.set_faults(0.3, kinds=("500", "429", "drop"), seed=42)
    assert _outcomes(gateway, 200) == first


def test_fault_settings_are_validated(fake: FakeTwilio) -> None:
    with pytest.raises(ValueError):
        fake.set_faults(1.5)
    with pytest.raises(ValueError):
        fake.set_faults(0.1, kinds=("teapot",))
    with pytest.raises(ValueError):
        fake.fail_next(1, "teapot")


# --- console ---------------------------------------------------------------------------


def test_console_gateway_prints_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    result = ConsoleGateway().send(PATIENT, BODY, status_callback=CALLBACK)

    out = capsys.readouterr().out
    assert PATIENT in out and BODY in out and result.provider_sid in out
    assert result.provider_sid.startswith("CONSOLE") and len(result.provider_sid) == 39
    assert result.status == "sent"


def test_console_gateway_blocks_do_not_interleave() -> None:
    stream = io.StringIO()
    gateway = ConsoleGateway(stream=stream)
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        barrier.wait()
        for j in range(25):
            gateway.send(f"+3247{i:03d}{j:04d}", f"line one {i}-{j}\nline two {i}-{j}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    blocks = stream.getvalue().split("----- SMS (console gateway, not sent) -----\n")[1:]
    assert len(blocks) == 200
    for block in blocks:
        to = block.split("\n", 1)[0].removeprefix("To:   ")
        i, j = int(to[5:8]), int(to[8:])
        assert f"line one {i}-{j}\nline two {i}-{j}\n" in block


# --- configuration ---------------------------------------------------------------------


def _twilio_config(fake: FakeTwilio, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": FAKE_ACCOUNT_SID,
        "TWILIO_AUTH_TOKEN": FAKE_AUTH_TOKEN,
        "TWILIO_FROM_NUMBER": FROM_VALID,
        "TWILIO_MESSAGING_SERVICE_SID": None,
        "TWILIO_API_BASE_URL": fake.base_url,
        "TWILIO_TIMEOUT_SECONDS": 2.0,
    }
    config.update(overrides)
    return config


@pytest.mark.parametrize("backend", [None, "", "console", " Console "])
def test_config_selects_the_console_by_default(backend: str | None) -> None:
    assert isinstance(gateway_from_config({"SMS_BACKEND": backend}), ConsoleGateway)
    assert isinstance(gateway_from_config({}), ConsoleGateway)


def test_config_builds_a_working_twilio_gateway(fake: FakeTwilio) -> None:
    gateway = gateway_from_config(_twilio_config(fake))
    assert isinstance(gateway, TwilioGateway)
    assert gateway.timeout == 2.0
    try:
        gateway.send(PATIENT, BODY)
    finally:
        gateway.close()
    assert fake.bodies_to(PATIENT) == [BODY]


def test_config_accepts_a_messaging_service_instead_of_a_number(fake: FakeTwilio) -> None:
    config = _twilio_config(
        fake, TWILIO_FROM_NUMBER="", TWILIO_MESSAGING_SERVICE_SID=FAKE_MESSAGING_SERVICE_SID
    )
    gateway = gateway_from_config(config)
    assert isinstance(gateway, TwilioGateway)
    assert gateway.messaging_service_sid == FAKE_MESSAGING_SERVICE_SID
    gateway.close()


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        ({"TWILIO_ACCOUNT_SID": None}, "TWILIO_ACCOUNT_SID"),
        ({"TWILIO_AUTH_TOKEN": "  "}, "TWILIO_AUTH_TOKEN"),
        ({"TWILIO_FROM_NUMBER": None}, "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID"),
        ({"TWILIO_TIMEOUT_SECONDS": 0}, "TWILIO_TIMEOUT_SECONDS"),
        ({"TWILIO_TIMEOUT_SECONDS": "soon"}, "TWILIO_TIMEOUT_SECONDS"),
        ({"TWILIO_API_BASE_URL": "127.0.0.1:8765"}, "TWILIO_API_BASE_URL"),
        ({"SMS_BACKEND": "carrier-pigeon"}, "SMS_BACKEND"),
    ],
)
def test_config_errors_name_the_key(
    fake: FakeTwilio, overrides: dict[str, Any], named: str
) -> None:
    with pytest.raises(ValueError, match=named):
        gateway_from_config(_twilio_config(fake, **overrides))


def test_config_error_does_not_echo_the_token(fake: FakeTwilio) -> None:
    with pytest.raises(ValueError) as caught:
        gateway_from_config(_twilio_config(fake, TWILIO_FROM_NUMBER=None))
    assert FAKE_AUTH_TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "base", ["https://companion.example.org", "https://companion.example.org/"]
)
def test_status_callback_url(base: str) -> None:
    assert status_callback_url(base) == "https://companion.example.org/twilio/status"


def test_status_callback_url_needs_a_base() -> None:
    with pytest.raises(ValueError, match="PUBLIC_BASE_URL"):
        status_callback_url("")


# --- small pieces ------------------------------------------------------------------------


def test_base_url_rewrite_keeps_path_and_query() -> None:
    client = _BaseUrlHttpClient(
        base_url="http://127.0.0.1:8765/proxy/", timeout=1, max_connections=2
    )
    url = f"https://api.twilio.com/2010-04-01/Accounts/{FAKE_ACCOUNT_SID}/Messages.json?PageSize=5"
    assert client.rewrite(url) == (
        f"http://127.0.0.1:8765/proxy/2010-04-01/Accounts/{FAKE_ACCOUNT_SID}/Messages.json?PageSize=5"
    )
    untouched = _BaseUrlHttpClient(base_url=None, timeout=1, max_connections=2)
    assert untouched.rewrite(url) == url


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert _retry_after({"Retry-After": "3"}) == 3.0
    assert _retry_after({"Retry-After": "-1"}) == 0.0
    assert _retry_after({}) is None and _retry_after(None) is None
    assert _retry_after({"Retry-After": "whenever"}) is None
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=120), usegmt=True)
    assert 100 < (_retry_after({"Retry-After": later}) or 0) <= 120


# --- voice calls (on-call pages) ----------------------------------------------------------

CLINICIAN = "+32475112233"
PUBLIC = "https://companion.test"
SPOKEN = "Urgent alert from the patient companion of Hématologie. Press 1 to acknowledge."


def test_a_call_is_placed_with_the_pages_voice_webhooks(
    fake: FakeTwilio, make_gateway: Callable[..., TwilioGateway]
) -> None:
    gateway = make_gateway(public_base_url=PUBLIC + "/")
    result = gateway.call(CLINICIAN, page_id=42, spoken_text=SPOKEN)
    [call] = fake.calls
    assert result.provider_sid == call["sid"] and call["sid"].startswith("CA")
    assert (call["to"], call["from"], call["method"], call["timeout"]) == (
        CLINICIAN,
        FROM_VALID,
        "POST",
        "25",
    )
    assert call["url"] == f"{PUBLIC}/twilio/voice/page/42"
    assert call["status_callback"] == f"{PUBLIC}/twilio/voice/status"
    assert call["status_callback_events"] == ["initiated", "ringing", "answered", "completed"]
    since = datetime.now(UTC) - timedelta(minutes=1)
    assert gateway.find_call(CLINICIAN, since=since) == call["sid"]
    assert gateway.find_call(PATIENT, since=since) is None


def test_a_call_needs_a_caller_number_and_the_public_url(
    fake: FakeTwilio, make_gateway: Callable[..., TwilioGateway]
) -> None:
    service_only = make_gateway(
        from_number=None, messaging_service_sid=FAKE_MESSAGING_SERVICE_SID, public_base_url=PUBLIC
    )
    with pytest.raises(PermanentSendError, match="no caller number"):
        service_only.call(CLINICIAN, page_id=1, spoken_text=SPOKEN)
    with pytest.raises(PermanentSendError, match="PUBLIC_BASE_URL"):
        make_gateway().call(CLINICIAN, page_id=1, spoken_text=SPOKEN)
    voice_number = make_gateway(
        from_number=None,
        messaging_service_sid=FAKE_MESSAGING_SERVICE_SID,
        voice_from_number="+3228001122",
        public_base_url=PUBLIC,
    )
    voice_number.call(CLINICIAN, page_id=1, spoken_text=SPOKEN)
    assert [c["from"] for c in fake.calls] == ["+3228001122"]


def test_call_failures_are_transient_or_permanent_like_messages(
    fake: FakeTwilio, make_gateway: Callable[..., TwilioGateway]
) -> None:
    gateway = make_gateway(public_base_url=PUBLIC)
    with pytest.raises(PermanentSendError) as refused:
        gateway.call(TO_INVALID, page_id=1, spoken_text=SPOKEN)
    assert refused.value.code == "21211" and TO_INVALID not in str(refused.value)
    fake.stop()
    with pytest.raises(TransientSendError) as down:
        gateway.call(CLINICIAN, page_id=1, spoken_text=SPOKEN)
    assert not down.value.maybe_sent
    with pytest.raises(TransientSendError, match="could not list calls"):
        gateway.find_call(CLINICIAN, since=datetime.now(UTC))


def test_config_takes_the_voice_number_and_the_public_url(fake: FakeTwilio) -> None:
    config = {
        **_twilio_config(fake),
        "TWILIO_VOICE_FROM_NUMBER": "+3228001122",
        "PUBLIC_BASE_URL": PUBLIC,
    }
    gateway = gateway_from_config(config)
    try:
        gateway.call(CLINICIAN, page_id=7, spoken_text=SPOKEN)
    finally:
        gateway.close()
    [call] = fake.calls
    assert call["from"] == "+3228001122" and call["url"] == f"{PUBLIC}/twilio/voice/page/7"


def test_console_gateway_prints_the_words_of_a_call(capsys: pytest.CaptureFixture[str]) -> None:
    result = ConsoleGateway().call(CLINICIAN, page_id=9, spoken_text=SPOKEN)
    out = capsys.readouterr().out
    assert "CALL (console gateway, not placed)" in out and SPOKEN in out and CLINICIAN in out
    assert result.provider_sid.startswith("CONSOLECA")
    assert ConsoleGateway().find_call(CLINICIAN, since=datetime.now(UTC)) is None
