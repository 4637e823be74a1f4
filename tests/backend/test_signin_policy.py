"""The sign-in throttling policy on its own: delays, the decision, keys and device cookies.

No database and no app: :func:`backend.services.signin.decide` and its helpers are pure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from backend.services.signin import (
    DEVICE_ACCOUNTS,
    POLICY,
    AddressState,
    Brake,
    KnownDevice,
    PairState,
    ThrottlePolicy,
    account_key,
    address_key,
    client_network,
    decide,
    device_cookie_after_sign_in,
    device_key,
    read_device_cookie,
    retry_after_failure,
)

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
SECRET = "test-secret"
EMAIL = "marie-francoise.vandenbossche-lefevre@hopital-saint-luc.example"


def test_three_free_failures_then_delays_double_up_to_fifteen_minutes() -> None:
    delays = [POLICY.delay_after(n).total_seconds() for n in range(0, 17)]
    assert delays == [0, 0, 0, 0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 900, 900, 900]
    assert POLICY.delay_after(10**9) == timedelta(minutes=15)  # no overflow, still the cap
    assert retry_after_failure(3, NOW) is None
    assert retry_after_failure(4, NOW) == NOW + timedelta(seconds=1)


@given(st.integers(min_value=0, max_value=10**6))
def test_delays_never_shrink_and_never_pass_the_cap(failures: int) -> None:
    assert POLICY.delay_after(failures) <= POLICY.delay_after(failures + 1) <= POLICY.max_delay


def test_a_waiting_pair_is_refused_until_its_instant() -> None:
    pair = PairState(failures=5, retry_after=NOW + timedelta(seconds=2))
    refused = decide(pair, AddressState(), NOW)
    assert not refused.allowed and refused.wait_seconds == 2 and refused.brake is Brake.PAIR
    almost = decide(pair, AddressState(), NOW + timedelta(seconds=1, milliseconds=1))
    assert almost.wait_seconds == 1  # rounded up: Retry-After never says 0 while waiting
    assert decide(pair, AddressState(), NOW + timedelta(seconds=2)).allowed
    # Even a known device waits out its own pair's delay.
    assert not decide(pair, AddressState(), NOW, known_device=True).allowed


def test_a_clock_set_back_never_makes_a_pair_wait_longer_than_the_cap() -> None:
    pair = PairState(failures=40, retry_after=NOW + timedelta(days=3))
    assert decide(pair, AddressState(), NOW).wait_seconds == 15 * 60


def test_a_new_pair_and_a_free_pair_are_allowed() -> None:
    assert decide(PairState(), AddressState(), NOW).allowed
    assert decide(PairState(failures=3), AddressState(failures=49, window_start=NOW), NOW).allowed


def test_the_spraying_brake_spares_pairs_that_signed_in_here_and_known_devices() -> None:
    sprayed = AddressState(failures=50, window_start=NOW - timedelta(minutes=5))
    stranger = decide(PairState(), sprayed, NOW)
    assert stranger.brake is Brake.ADDRESS and stranger.wait_seconds == 10 * 60
    nurse = PairState(last_success_at=NOW - timedelta(days=29))
    assert decide(nurse, sprayed, NOW).allowed
    assert decide(PairState(), sprayed, NOW, known_device=True).allowed
    # A success older than 30 days no longer vouches for the pair.
    former = PairState(last_success_at=NOW - timedelta(days=31))
    assert decide(former, sprayed, NOW).brake is Brake.ADDRESS
    # The brake ends with its window.
    assert decide(PairState(), sprayed, NOW + timedelta(minutes=10)).allowed


def test_a_custom_policy_changes_only_its_numbers() -> None:
    strict = ThrottlePolicy(free_failures=0, first_delay=timedelta(seconds=5))
    assert strict.delay_after(1) == timedelta(seconds=5)
    assert strict.delay_after(2) == timedelta(seconds=10)


@pytest.mark.parametrize(
    ("address", "network"),
    [
        ("203.0.113.7", "203.0.113.7"),
        (" 203.0.113.7 ", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:198.51.100.9", "198.51.100.9"),
        ("fe80::1%eth0", "fe80::/64"),
        ("unknown", "unknown"),
        ("", "unknown"),
    ],
)
def test_client_networks(address: str, network: str) -> None:
    assert client_network(address) == network


def test_keys_are_hmacs_that_hide_the_email_and_the_address() -> None:
    key = account_key(SECRET, EMAIL)
    assert len(key) == 64 and EMAIL not in key and "hopital" not in key
    assert key == account_key(SECRET, f"  {EMAIL.upper()} ")  # as sign-in looks accounts up
    assert key != account_key("another-secret", EMAIL)
    assert address_key(SECRET, "2001:db8::1") == address_key(SECRET, "2001:db8::2")  # one /64
    assert address_key(SECRET, "203.0.113.7") != address_key(SECRET, "203.0.113.8")
    # The kinds are separate key spaces: a device nonce equal to an address is another key.
    assert device_key(SECRET, "203.0.113.7") != address_key(SECRET, "203.0.113.7")


def test_a_device_cookie_remembers_accounts_for_thirty_days() -> None:
    account = account_key(SECRET, EMAIL)
    value = device_cookie_after_sign_in(None, account, NOW, SECRET)
    assert EMAIL not in value
    device = read_device_cookie(value, SECRET)
    assert device is not None and device.knows(account, NOW)
    assert device.knows(account, NOW + timedelta(days=30))
    assert not device.knows(account, NOW + timedelta(days=30, seconds=1))
    assert not device.knows(account_key(SECRET, "someone.else@hopital.example"), NOW)
    # The next sign-in keeps the browser's nonce (its own counters) and renews the account.
    later = NOW + timedelta(days=20)
    renewed = read_device_cookie(
        device_cookie_after_sign_in(device, account, later, SECRET), SECRET
    )
    assert renewed.nonce == device.nonce and renewed.knows(account, later + timedelta(days=25))


def test_a_shared_workstation_remembers_the_most_recent_accounts() -> None:
    device = None
    accounts = [account_key(SECRET, f"nurse{n}@hopital.example") for n in range(12)]
    for n, account in enumerate(accounts):
        value = device_cookie_after_sign_in(device, account, NOW + timedelta(hours=n), SECRET)
        device = read_device_cookie(value, SECRET)
    assert device is not None and len(device.accounts) == DEVICE_ACCOUNTS
    assert set(device.accounts) == set(accounts[-DEVICE_ACCOUNTS:])


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "not-a-cookie",
        # Signed with another key: a stranger cannot make up a known device.
        device_cookie_after_sign_in(None, account_key(SECRET, EMAIL), NOW, "another-secret"),
    ],
)
def test_forged_or_malformed_device_cookies_are_ignored(value: str | None) -> None:
    assert read_device_cookie(value, SECRET) is None


def test_a_tampered_device_cookie_is_ignored() -> None:
    value = device_cookie_after_sign_in(None, account_key(SECRET, EMAIL), NOW, SECRET)
    payload, _, signature = value.rpartition(".")
    assert read_device_cookie(f"{payload}x.{signature}", SECRET) is None
    assert KnownDevice("n").knows(account_key(SECRET, EMAIL), NOW) is False
