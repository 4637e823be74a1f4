"""Login abuse over real HTTP: a stranger's guessing never locks the real user out (issue 12).

Each browser is a ``requests.Session`` of its own (its own cookies) that signs in through
the real form (GET for the CSRF token, then POST). Several client addresses are played
through the loopback server with ``X-Forwarded-For`` on an app that trusts one proxy
(``TRUSTED_PROXY_COUNT=1``), as behind the hospital's reverse proxy. Time is the injected
clock: a stranger who "waits" moves it, nobody sleeps.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest
import requests
from werkzeug.middleware.proxy_fix import ProxyFix

from backend import create_app
from backend.config import default_config, load_environment
from backend.db import get_engine
from backend.services.signin import DEVICE_COOKIE
from tests.security.conftest import PASSWORD, LiveServer, csrf_of, serving

NURSE = "marie-francoise.vandenbossche-lefevre@hopital-saint-luc.example"
TEAM = "Hématologie — Cliniques Saint-Luc"
WARD = "192.0.2.10"  # the hospital's shared address (NAT): the nurse and the stranger
HOME = "198.51.100.23"


class Browser:
    """One browser with its own cookies, at ``address`` (sent as X-Forwarded-For)."""

    def __init__(self, server: LiveServer, address: str | None = None) -> None:
        self.server = server
        self.http = requests.Session()
        self.headers = {"X-Forwarded-For": address} if address else {}

    def sign_in(self, email: str, password: str, **headers: str) -> requests.Response:
        """Open the sign-in form and post it; the answer, without following a redirect."""
        sent = {**self.headers, **headers}
        page = self.http.get(self.server("/login"), headers=sent, timeout=30)
        assert page.status_code == 200, page.status_code
        return self.http.post(
            self.server("/login"),
            data={"email": email, "password": password, "csrf_token": csrf_of(page.text)},
            headers=sent,
            allow_redirects=False,
            timeout=30,
        )


@pytest.fixture
def nurse(make_user):
    """Marie-Françoise, a nurse of the haematology team with a password."""
    user, _ = make_user(
        team=TEAM, email=NURSE, password=PASSWORD, name="Marie-Françoise Van den Bossche-Lefèvre"
    )
    return user


@pytest.fixture
def behind_proxy(worker_app):
    """The app as deployed behind one reverse proxy, served over HTTP."""
    with serving(worker_app(TRUSTED_PROXY_COUNT=1)) as server:
        yield server


def test_a_strangers_200_attempts_do_not_stop_the_nurse_here_or_elsewhere(
    behind_proxy, nurse, clock, caplog
) -> None:
    caplog.set_level(logging.INFO)
    her_browser = Browser(behind_proxy, WARD)
    assert her_browser.sign_in(NURSE, PASSWORD).status_code == 302  # her usual workstation
    assert DEVICE_COOKIE in her_browser.http.cookies
    clock.advance(hours=1)

    stranger = Browser(behind_proxy, WARD)  # on the ward's network, without her cookie
    answers: Counter[int] = Counter()
    waits = []
    for n in range(200):
        response = stranger.sign_in(NURSE, f"guess number {n}")
        answers[response.status_code] += 1
        if response.status_code == 429:
            waits.append(int(response.headers["Retry-After"]))
            if n % 10 == 9 and n < 199:  # now and then the stranger waits out the delay
                clock.advance(seconds=waits[-1])
    assert set(answers) == {401, 429} and answers[401] >= 20, answers
    assert waits[-1] == 15 * 60  # the delays grew to their cap; the account never locked

    # From another address she signs in at once, with a browser that never saw her before.
    assert Browser(behind_proxy, HOME).sign_in(NURSE, PASSWORD).status_code == 302
    # On the ward, her own browser signs in through the stranger's delays ...
    assert her_browser.sign_in(NURSE, PASSWORD).status_code == 302
    # ... and that neither resets nor lifts them for the stranger.
    assert stranger.sign_in(NURSE, PASSWORD).status_code == 429
    # The limit: a browser she never used, on the stranger's address, shares his delay.
    new_browser = Browser(behind_proxy, WARD).sign_in(NURSE, PASSWORD)
    assert new_browser.status_code == 429
    assert "not a lock" in new_browser.text
    # The app's logs name no email and no address (only user ids).
    app_logs = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("backend"))
    assert "signed in" in app_logs
    for secret in (NURSE, WARD, HOME, PASSWORD, "guess number"):
        assert secret not in app_logs


def test_a_forged_forwarded_for_does_not_change_the_address(
    live_server, behind_proxy, nurse
) -> None:
    # No proxy trusted (the default): X-Forwarded-For is ignored, all of this is one client.
    stranger = Browser(live_server)
    for n in range(4):
        forged = {"X-Forwarded-For": f"203.0.113.{n}"}
        assert stranger.sign_in(NURSE, "guess", **forged).status_code == 401
    forged = {"X-Forwarded-For": "203.0.113.99"}
    assert stranger.sign_in(NURSE, PASSWORD, **forged).status_code == 429
    # One proxy trusted: only the hop it appended counts, not what the client put before it.
    stranger = Browser(behind_proxy)
    for n in range(4):
        chain = {"X-Forwarded-For": f"10.0.0.{n}, 203.0.113.7"}
        assert stranger.sign_in(NURSE, "guess", **chain).status_code == 401
    chain = {"X-Forwarded-For": "10.9.9.9, 203.0.113.7"}
    assert stranger.sign_in(NURSE, PASSWORD, **chain).status_code == 429
    # A different last hop is a different client.
    other = {"X-Forwarded-For": "203.0.113.8"}
    assert stranger.sign_in(NURSE, PASSWORD, **other).status_code == 302


def test_delays_grow_and_reset_on_success(live_server, nurse, clock) -> None:
    browser = Browser(live_server)
    for _ in range(4):
        assert browser.sign_in(NURSE, "wrong").status_code == 401
    for expected in (1, 2, 4):
        refused = browser.sign_in(NURSE, PASSWORD)
        assert refused.status_code == 429 and refused.headers["Retry-After"] == str(expected)
        assert "Too many sign-in attempts" in refused.text
        clock.advance(seconds=expected)
        if expected < 4:
            assert browser.sign_in(NURSE, "wrong").status_code == 401
    assert browser.sign_in(NURSE, PASSWORD).status_code == 302
    for _ in range(4):  # reset: three free failures and a checked fourth again
        assert browser.sign_in(NURSE, "wrong").status_code == 401
    assert browser.sign_in(NURSE, PASSWORD).headers["Retry-After"] == "1"


def test_two_workers_share_the_counters(live_server, worker_app, nurse, clock) -> None:
    with serving(worker_app()) as second:
        first_worker, second_worker = Browser(live_server), Browser(second)
        for browser in (first_worker, second_worker, first_worker, second_worker):
            assert browser.sign_in(NURSE, "wrong").status_code == 401
        assert first_worker.sign_in(NURSE, PASSWORD).headers["Retry-After"] == "1"
        assert second_worker.sign_in(NURSE, PASSWORD).headers["Retry-After"] == "1"
        clock.advance(seconds=1)
        assert second_worker.sign_in(NURSE, "wrong").status_code == 401
        assert first_worker.sign_in(NURSE, PASSWORD).headers["Retry-After"] == "2"
        clock.advance(seconds=2)
        assert first_worker.sign_in(NURSE, PASSWORD).status_code == 302
        assert second_worker.sign_in(NURSE, "wrong").status_code == 401  # reset for both


@pytest.mark.slow
def test_spraying_from_the_ward_is_braked_but_not_for_the_nurse_who_works_there(
    behind_proxy, nurse, make_user, clock
) -> None:
    colleague = "an.janssens@hopital-saint-luc.example"
    colleague_password = "another long passphrase"
    make_user(team=TEAM, email=colleague, password=colleague_password)
    assert Browser(behind_proxy, WARD).sign_in(NURSE, PASSWORD).status_code == 302
    clock.advance(days=1)
    sprayer = Browser(behind_proxy, WARD)
    for n in range(50):  # one guess at each of 50 addresses from the staff directory
        response = sprayer.sign_in(f"staff{n}@hopital-saint-luc.example", "Winter2026!")
        assert response.status_code == 401
    braked = sprayer.sign_in("staff50@hopital-saint-luc.example", "Winter2026!")
    assert braked.status_code == 429 and braked.headers["Retry-After"] == str(15 * 60)
    # Someone who never signed in from the ward waits too (not from elsewhere) ...
    fresh = Browser(behind_proxy, WARD)
    assert fresh.sign_in(colleague, colleague_password).status_code == 429
    away = Browser(behind_proxy, HOME)
    assert away.sign_in(colleague, colleague_password).status_code == 302
    # ... but the nurse who signed in from the ward yesterday does not, even on a new browser.
    assert Browser(behind_proxy, WARD).sign_in(NURSE, PASSWORD).status_code == 302
    # The brake ends with its 15-minute window.
    clock.advance(minutes=15)
    assert fresh.sign_in(colleague, colleague_password).status_code == 302


def test_trusted_proxies_come_from_the_environment_and_default_to_none(
    tmp_path, monkeypatch
) -> None:
    assert default_config(str(tmp_path))["TRUSTED_PROXY_COUNT"] == 0
    assert load_environment({"TRUSTED_PROXY_COUNT": "2"}) == {"TRUSTED_PROXY_COUNT": 2}
    assert "TRUSTED_PROXY_COUNT=" in (Path(__file__).parents[2] / ".env.example").read_text(
        encoding="utf-8"
    )
    url = f"sqlite:///{tmp_path / 'proxy.sqlite3'}"
    monkeypatch.setenv("TRUSTED_PROXY_COUNT", "1")
    behind = create_app({"DATABASE_URL": url})
    assert isinstance(behind.wsgi_app, ProxyFix)
    assert (behind.wsgi_app.x_for, behind.wsgi_app.x_proto) == (1, 1)
    monkeypatch.delenv("TRUSTED_PROXY_COUNT")
    direct = create_app({"DATABASE_URL": url})
    assert not isinstance(direct.wsgi_app, ProxyFix)
    with pytest.raises(ValueError, match="TRUSTED_PROXY_COUNT"):
        create_app({"DATABASE_URL": url, "TRUSTED_PROXY_COUNT": -1})
    for app in (behind, direct):
        get_engine(app).dispose()
