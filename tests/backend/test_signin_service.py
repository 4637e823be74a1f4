"""Sign-in throttling against the database (SQLite and PostgreSQL): counts, brakes, races, pruning.

:func:`backend.services.signin.attempt_sign_in` is called directly with a session and an
instant; the counters are read back from ``loginthrottle``. The race tests use one
session per thread on the app's writer engine, as two web workers would.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from itsdangerous import URLSafeSerializer
from sqlalchemy import text
from sqlmodel import Session, select

from backend.db import get_engine
from backend.services.signin import (
    ADDRESS_WIDE,
    Brake,
    SignInAttempt,
    ThrottlePolicy,
    account_key,
    address_key,
    attempt_sign_in,
    device_key,
    read_device_cookie,
)
from reminders.data.db import writer
from reminders.data.models import LoginThrottle, User
from reminders.data.pruning import prune_login_throttle
from reminders.jobs import prune_login_throttle_job
from tests.conftest import reread

SECRET = "test-secret"
PASSWORD = "correct horse battery staple"
WRONG = "Tr0ub4dor&3"
NURSE = "marie-francoise.vandenbossche-lefevre@hopital-saint-luc.example"
HOSPITAL = "192.0.2.10"  # the hospital's shared address (NAT)
HOME = "198.51.100.23"


@pytest.fixture
def nurse(make_user) -> User:
    """A nurse who can sign in."""
    user, _ = make_user(
        team="Hématologie — Cliniques Saint-Luc",
        email=NURSE,
        password=PASSWORD,
        name="Marie-Françoise Van den Bossche-Lefèvre",
    )
    return user


def attempt(
    session: Session,
    now: Any,
    email: str = NURSE,
    password: str = WRONG,
    address: str = HOSPITAL,
    **options: Any,
) -> SignInAttempt:
    """One attempt, committed as the view commits it."""
    result = attempt_sign_in(session, email, password, address, now, secret=SECRET, **options)
    session.commit()
    return result


def pair_row(session: Session, email: str, client_key: str) -> LoginThrottle | None:
    """The stored counters of ``email`` from the client with ``client_key`` (fresh from the DB)."""
    reread(session)
    return session.exec(
        select(LoginThrottle).where(
            LoginThrottle.account_key == account_key(SECRET, email),
            LoginThrottle.address_key == client_key,
        )
    ).first()


def address_row(session: Session, address: str) -> LoginThrottle | None:
    """The stored spraying counter of ``address``."""
    reread(session)
    return session.exec(
        select(LoginThrottle).where(
            LoginThrottle.account_key == ADDRESS_WIDE,
            LoginThrottle.address_key == address_key(SECRET, address),
        )
    ).first()


def test_failures_delay_the_pair_and_a_refused_attempt_checks_and_writes_nothing(
    session, nurse, clock
) -> None:
    for _ in range(4):  # three free failures, and the fourth one still checked
        result = attempt(session, clock.now)
        assert result.user is None and result.wait_seconds == 0
    row = pair_row(session, NURSE, address_key(SECRET, HOSPITAL))
    assert row.failures == 4 and row.retry_after == clock.now + timedelta(seconds=1)
    assert row.first_failure_at == row.last_failure_at == clock.now

    # While the pair waits even the right password is refused, unchecked and unrecorded.
    refused = attempt(session, clock.now, password=PASSWORD)
    assert refused.user is None and refused.wait_seconds == 1
    assert refused.decision.brake is Brake.PAIR and refused.device_cookie is None
    assert pair_row(session, NURSE, address_key(SECRET, HOSPITAL)).failures == 4
    assert address_row(session, HOSPITAL).failures == 4
    assert session.get(User, nurse.id).last_login_at is None

    clock.advance(seconds=1)
    assert attempt(session, clock.now).wait_seconds == 0  # the fifth failure: 2 s now
    assert attempt(session, clock.now).wait_seconds == 2
    clock.advance(seconds=2)
    signed_in = attempt(session, clock.now, password=PASSWORD)
    assert signed_in.user.id == nurse.id and signed_in.device_cookie
    row = pair_row(session, NURSE, address_key(SECRET, HOSPITAL))
    assert (row.failures, row.retry_after, row.first_failure_at) == (0, None, None)
    assert row.last_success_at == clock.now
    # A success resets the pair: three free failures again.
    for _ in range(3):
        assert attempt(session, clock.now).wait_seconds == 0
    assert pair_row(session, NURSE, address_key(SECRET, HOSPITAL)).retry_after is None


def test_an_unknown_email_is_throttled_exactly_like_a_known_one(session, nurse, clock) -> None:
    def answers(email: str, address: str) -> list[tuple[bool, int]]:
        seen = []
        for step in range(8):
            result = attempt(session, clock.now + timedelta(seconds=step), email, WRONG, address)
            seen.append((result.user is None, result.wait_seconds))
        return seen

    known = answers(NURSE, "203.0.113.1")
    unknown = answers("nobody.at.all@hopital-saint-luc.example", "203.0.113.2")
    assert known == unknown
    assert any(wait for _, wait in known)  # the sequence did reach a delay


def test_failures_from_one_address_never_slow_the_same_account_elsewhere(
    session, nurse, clock
) -> None:
    for _ in range(10):  # a stranger at the hospital, waiting out every delay
        result = attempt(session, clock.now)
        clock.advance(seconds=result.wait_seconds)
    assert pair_row(session, NURSE, address_key(SECRET, HOSPITAL)).failures >= 6
    assert attempt(session, clock.now).wait_seconds > 0  # the stranger waits ...
    assert attempt(session, clock.now, address=HOME).wait_seconds == 0  # ... not she
    assert attempt(session, clock.now, password=PASSWORD, address=HOME).user.id == nurse.id


def test_no_email_and_no_address_is_stored_in_clear(session, nurse, clock) -> None:
    attempt(session, clock.now)
    attempt(session, clock.now, "stranger.typed.this@example.org", address="2001:db8:5:6::7")
    attempt(session, clock.now, password=PASSWORD, address=HOME)
    reread(session)
    rows = session.exec(select(LoginThrottle)).all()
    assert len(rows) == 5  # three pairs, two addresses
    stored = repr([row.model_dump() for row in rows])
    for clear in (NURSE, "stranger.typed.this", "hopital", HOSPITAL, HOME, "2001:db8", "192.0"):
        assert clear not in stored


def test_the_spraying_brake_spares_the_nurse_who_signs_in_from_that_address(
    session, nurse, make_user, clock
) -> None:
    policy = ThrottlePolicy(address_failures=5)
    colleague, _ = make_user(
        team="Hématologie — Cliniques Saint-Luc", email="jan.peeters@hopital.example"
    )
    assert attempt(session, clock.now, password=PASSWORD, policy=policy).user.id == nurse.id
    for n in range(5):  # a stranger on the hospital network sprays five accounts
        result = attempt(session, clock.now, f"guess{n}@hopital.example", policy=policy)
        assert result.wait_seconds == 0
    sprayed = attempt(session, clock.now, "guess6@hopital.example", policy=policy)
    assert sprayed.decision.brake is Brake.ADDRESS and sprayed.wait_seconds == 15 * 60
    # A colleague who never signed in from here waits too; from elsewhere she does not.
    assert attempt(session, clock.now, colleague.email, policy=policy).wait_seconds == 15 * 60
    elsewhere = attempt(session, clock.now, colleague.email, address=HOME, policy=policy)
    assert elsewhere.user is None and elsewhere.wait_seconds == 0
    # The nurse signed in from here: her password is checked, right or wrong.
    assert attempt(session, clock.now, policy=policy).wait_seconds == 0
    assert attempt(session, clock.now, password=PASSWORD, policy=policy).user.id == nurse.id
    # The brake lasts the rest of its window only.
    clock.advance(minutes=15)
    assert attempt(session, clock.now, colleague.email, policy=policy).wait_seconds == 0
    assert address_row(session, HOSPITAL).failures == 1  # a new window
    # A success 30 days old no longer vouches for the nurse.
    clock.advance(days=31)
    for n in range(5):
        attempt(session, clock.now, f"again{n}@hopital.example", policy=policy)
    assert attempt(session, clock.now, policy=policy).decision.brake is Brake.ADDRESS


def _without(cookie: str, email: str) -> str:
    """The same browser's cookie with ``email``'s account forgotten (re-signed)."""
    device = read_device_cookie(cookie, SECRET)
    accounts = {k: v for k, v in device.accounts.items() if k != account_key(SECRET, email)}
    return URLSafeSerializer(SECRET, salt="known-device").dumps({"n": device.nonce, "a": accounts})


def test_a_known_browser_signs_in_through_a_strangers_delays_on_a_shared_address(
    session, nurse, make_user, clock
) -> None:
    colleague, _ = make_user(
        team="Hématologie — Cliniques Saint-Luc",
        email="jan.peeters@hopital.example",
        password=PASSWORD,
    )
    cookie = attempt(session, clock.now, password=PASSWORD).device_cookie
    for _ in range(6):  # a stranger behind the same address, waiting out every delay
        clock.advance(seconds=attempt(session, clock.now).wait_seconds)
    assert attempt(session, clock.now, password=PASSWORD).decision.brake is Brake.PAIR
    # Her own browser is its own pair: her password is checked.
    mine = attempt(session, clock.now, password=PASSWORD, device_cookie=cookie)
    assert mine.user.id == nurse.id
    device = read_device_cookie(cookie, SECRET)
    assert pair_row(session, NURSE, device_key(SECRET, device.nonce)).last_success_at == clock.now
    # Her success does not reset the stranger's delays, and a forged cookie changes nothing.
    assert attempt(session, clock.now).wait_seconds > 0
    forged = cookie[:-3] + ("AAA" if not cookie.endswith("AAA") else "BBB")
    assert attempt(session, clock.now, password=PASSWORD, device_cookie=forged).wait_seconds > 0
    # A browser a colleague signed in with does not vouch for her account.
    theirs = attempt(session, clock.now, colleague.email, PASSWORD, device_cookie=cookie)
    assert theirs.user.id == colleague.id  # a shared workstation: the colleague's own pair
    colleagues_only = theirs.device_cookie
    assert read_device_cookie(colleagues_only, SECRET).nonce == device.nonce
    stranger = attempt(session, clock.now, device_cookie=_without(colleagues_only, NURSE))
    assert stranger.decision.brake is Brake.PAIR


def _in_threads(app, calls: list[Callable[[Session], SignInAttempt]]) -> list[SignInAttempt]:
    """Run each call at once in its own thread and session (a web worker each); commit each."""
    engine = writer(get_engine(app))
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(index: int) -> None:
        with Session(engine, expire_on_commit=False) as own:
            barrier.wait(timeout=30)
            try:
                results[index] = calls[index](own)
                own.commit()
            except Exception as exc:  # reported below, with the thread's result
                own.rollback()
                results[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(isinstance(r, Exception) for r in results), results
    return results


def test_concurrent_failures_from_several_workers_are_all_counted(
    app, session, nurse, clock
) -> None:
    other = "jan.peeters@hopital.example"

    def fail(email: str) -> Callable[[Session], SignInAttempt]:
        return lambda own: attempt_sign_in(own, email, WRONG, HOSPITAL, clock.now, secret=SECRET)

    results = _in_threads(app, [fail(NURSE), fail(NURSE), fail(other), fail(other)])
    assert all(r.user is None and r.wait_seconds == 0 for r in results)
    assert pair_row(session, NURSE, address_key(SECRET, HOSPITAL)).failures == 2
    assert pair_row(session, other, address_key(SECRET, HOSPITAL)).failures == 2
    assert address_row(session, HOSPITAL).failures == 4


def test_parallel_guesses_cannot_slip_through_one_delay_together(
    app, session, nurse, clock
) -> None:
    for _ in range(3):
        attempt(session, clock.now)

    def guess(own: Session) -> SignInAttempt:
        return attempt_sign_in(own, NURSE, WRONG, HOSPITAL, clock.now, secret=SECRET)

    results = _in_threads(app, [guess] * 4)
    # One guess was checked (the fourth failure, 1 s delay); the others waited on its lock
    # and then found the pair waiting.
    assert sorted(r.wait_seconds for r in results) == [0, 1, 1, 1]
    assert pair_row(session, NURSE, address_key(SECRET, HOSPITAL)).failures == 4


def test_idle_counters_are_pruned_after_thirty_days(app, session, nurse, clock) -> None:
    old = clock.now
    attempt(session, old, "stranger@example.org")
    attempt(session, old, password=PASSWORD, address=HOME)
    clock.advance(days=29)
    attempt(session, clock.now, password=PASSWORD)  # the hospital pair: used recently
    clock.advance(days=2)
    # 31 days after the first attempts the stranger's pair, the hospital's spraying counter
    # (its last failure) and the home pair (its last success) are idle; the hospital pair
    # signed in 2 days ago.
    pruned = prune_login_throttle(session, clock.now)
    session.commit()
    reread(session)
    left = session.exec(select(LoginThrottle)).all()
    kept = {(row.account_key, row.address_key) for row in left}
    assert (account_key(SECRET, NURSE), address_key(SECRET, HOSPITAL)) in kept
    assert (account_key(SECRET, "stranger@example.org"), address_key(SECRET, HOSPITAL)) not in kept
    assert (ADDRESS_WIDE, address_key(SECRET, HOSPITAL)) not in kept  # its failure: 31 days
    assert pruned == 3 and len(left) == 1
    # The clock's job runs the same clean-up in its own transaction.
    clock.advance(days=31)
    assert prune_login_throttle_job(get_engine(app), clock.now) == 1
    reread(session)
    assert session.execute(text("SELECT COUNT(*) FROM loginthrottle")).scalar_one() == 0
