"""The pure finding of a patient's identifiers in free text (``reminders.core.erasure``).

Every way a name, a number or a hospital reference shows up in the texts the companion
stores: SMS bodies in GSM-7 spelling, notes in capitals or without accents, numbers with
any separators and prefixes, the digits an on-call call reads out, JSON values. Words
that only contain a name part stay.
"""

from __future__ import annotations

import pytest

from reminders.core.erasure import ERASED, identifiers, name_spellings, phone_pattern
from reminders.core.oncall_text import spoken_digits

NAME = "Marie-Thérèse Vandenbroucke-Delacroix"
FORMS = ["+32470123456", "0470 12 34 56", "470123456"]
FOUND = identifiers(NAME, FORMS, "HUB-2026-004178")


@pytest.mark.parametrize(
    "text",
    [
        "+32470123456",
        "+32 470 12 34 56",
        "0032 470/12.34.56",
        "0470 12 34 56",
        "(0470) 12-34-56",
        "470123456",
        spoken_digits("+32470123456"),  # "3 2 4, 7 0 1, ..." as a page call says it
        "Marie-Thérèse",
        "MARIE-THERESE",
        "marie therese",
        "Vandenbroucke-Delacroix",
        "delacroix",
        "hub-2026-004178",
        "M.V.",
    ],
)
def test_each_spelling_is_found_and_erased(text: str) -> None:
    assert FOUND.found_in(text)
    redacted = FOUND.redact(f"avant {text} après")
    assert not FOUND.found_in(redacted)
    assert redacted.startswith("avant ") and redacted.endswith(" après") and ERASED in redacted
    assert not any(ch.isdigit() for ch in redacted)


def test_the_rest_of_a_text_stays() -> None:
    body = "Bonjour Marie-Thérèse, votre température ce soir ? Appelez le 02 555 01 23."
    assert FOUND.redact(body) == (
        "Bonjour [erased], votre température ce soir ? Appelez le 02 555 01 23."
    )
    assert FOUND.redact("Mariette et Delacroixville, 047012345") == (
        "Mariette et Delacroixville, 047012345"
    )
    assert FOUND.redact("38,6 et des frissons") == "38,6 et des frissons"


def test_json_values_are_walked_keys_included() -> None:
    value = {"caller": NAME, "calls": [{"from": "+32 470 12 34 56"}, 3], "Delacroix": True}
    assert FOUND.redact_value(value) == {
        "caller": ERASED,
        "calls": [{"from": ERASED}, 3],
        ERASED: True,
    }


def test_name_spellings_and_short_parts() -> None:
    spellings = name_spellings("Jo Ng Li-Ève")
    assert {"Jo", "Ng", "Li-Ève", "Li", "Ève", "Eve"} <= spellings
    assert not any(len(s) < 2 for s in spellings)
    assert phone_pattern(["12", ""]) is None
