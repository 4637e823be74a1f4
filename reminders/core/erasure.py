"""Finding a patient's name, phone number and hospital reference in free text, to erase them.

Pure functions over plain strings (the data rights service in ``backend/services/rights.py``
reads the rows and writes them back). The erasure of contact details keeps the clinical
record (``docs/data-protection.md``), so texts are not deleted: every spelling of the
identifiers in them is replaced by :data:`ERASED`.

Spellings looked for:

* the name as a whole and each of its parts (split on spaces and hyphens, two letters or
  more), as stored, as the SMS spelt it in GSM-7 (``reminders.core.templates.to_gsm7``)
  and without accents; whole words, any case;
* the initials the on-call pages name the patient by (``oncall_text.initials``);
* the phone number's digits, whatever separates them (spaces, dots, dashes, slashes,
  brackets, the commas of a number read out digit by digit) and whichever prefix starts
  them (the country code with ``+`` or ``00``, the national ``0``, or none);
* the hospital reference, any case.

Over-erasing is the safe side: a French "mai" goes with a patient called Mai.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from reminders.core.oncall_text import initials
from reminders.core.templates import to_gsm7

#: What replaces an identifier in a text.
ERASED = "[erased]"

#: What may stand between two digits of a written or spoken phone number.
_DIGIT_GAP = r"[\s.,/()\-]*"


def _without_accents(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def name_spellings(name: str) -> set[str]:
    """The name, its parts (two letters or more) and their GSM-7 and accent-free spellings."""
    name = name.strip()
    # Whole, by words ("Marie-Thérèse", the SMS's first name), and by hyphenated parts.
    parts = [name, *name.split(), *re.split(r"[\s\-]+", name)]
    spellings: set[str] = set()
    for part in parts:
        if len(part) < 2:
            continue
        spellings.update({part, to_gsm7(part), _without_accents(part)})
    return spellings


def phone_pattern(digit_forms: Iterable[str]) -> str | None:
    """A regular expression for any of ``digit_forms`` (e.g. "32470123456", "0470123456")
    written with separators between the digits, or None without a form of 4 digits or more."""
    forms = sorted({re.sub(r"\D", "", form) for form in digit_forms}, key=len, reverse=True)
    alternatives = [_DIGIT_GAP.join(form) for form in forms if len(form) >= 4]
    if not alternatives:
        return None
    # An optional "+" or "00" before the longest forms (the international ones).
    return r"(?<!\d)(?:(?:\+|00)" + _DIGIT_GAP + ")?(?:" + "|".join(alternatives) + r")(?!\d)"


@dataclass(frozen=True)
class Identifiers:
    """Everything that names one patient in a text, compiled once per erasure."""

    pattern: re.Pattern[str]

    def redact(self, text: str) -> str:
        """``text`` with every identifier replaced by :data:`ERASED`."""
        return self.pattern.sub(ERASED, text)

    def found_in(self, text: str) -> bool:
        """Whether ``text`` names the patient."""
        return self.pattern.search(text) is not None

    def redact_value(self, value: Any) -> Any:
        """:meth:`redact` through a JSON value (dicts, lists, strings; keys too)."""
        if isinstance(value, str):
            return self.redact(value)
        if isinstance(value, list):
            return [self.redact_value(item) for item in value]
        if isinstance(value, dict):
            return {self.redact(str(k)): self.redact_value(v) for k, v in value.items()}
        return value


def identifiers(
    name: str, phone_digit_forms: Iterable[str], hospital_ref: str | None = None
) -> Identifiers:
    """The :class:`Identifiers` of a patient: their name, their phone number's digit forms
    (international and national, see :func:`phone_pattern`) and hospital reference."""
    words = sorted(name_spellings(name), key=len, reverse=True)
    alternatives = [r"(?<!\w)" + re.escape(word) + r"(?!\w)" for word in words]
    who = initials(name)
    if who != "?":
        alternatives.append(r"(?<!\w)" + re.escape(who))
    if hospital_ref and hospital_ref.strip():
        alternatives.append(re.escape(hospital_ref.strip()))
    phone = phone_pattern(phone_digit_forms)
    if phone:
        alternatives.insert(0, phone)
    return Identifiers(re.compile("|".join(alternatives), re.IGNORECASE))


def either(*people: Identifiers) -> Identifiers:
    """The :class:`Identifiers` that find any of ``people`` (a patient and their relatives)."""
    return Identifiers(re.compile("|".join(p.pattern.pattern for p in people), re.IGNORECASE))
