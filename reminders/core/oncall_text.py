"""What an on-call clinician reads and hears, and the alert codes they answer with.

Pure: the words come from ``oncall_words.toml`` (per language), the engine passes the
alert's facts in. An alert's short code (:func:`alert_code`) is its id written in an
alphabet without look-alike characters, plus a check character, so that a mistyped
code names no other alert. ``ACK <code>`` from a clinician's own phone acknowledges
(:func:`parse_ack`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from reminders.core.datafiles import read_toml
from reminders.core.templates import format_temperature

__all__ = [
    "CODE_ALPHABET",
    "VoicePage",
    "ack_reply",
    "alert_code",
    "alert_id_from_code",
    "initials",
    "kind_label",
    "oncall_words",
    "parse_ack",
    "spoken_digits",
    "voice_page",
    "voice_words",
]

_FILE = Path(__file__).with_name("oncall_words.toml")

#: No 0/O, 1/I/L: a code read aloud or typed on a phone keyboard at 03:00 stays itself.
CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
_BASE = len(CODE_ALPHABET)
_ACK = re.compile(r"^\s*ack\b[\s:#-]*([a-z0-9]{2,10})\s*[.!]?\s*$", re.IGNORECASE)


@cache
def oncall_words() -> dict[str, dict[str, Any]]:
    """The words of ``oncall_words.toml`` by language; every language has the same keys."""
    data = read_toml(_FILE)
    reference = set(_flatten(data["en"]))
    for language, words in data.items():
        keys = set(_flatten(words))
        if keys != reference:
            missing = sorted(reference ^ keys)
            raise ValueError(f"oncall_words.toml [{language}]: keys differ from [en]: {missing}")
    return data


def _flatten(words: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in words.items():
        if isinstance(value, dict):
            keys += _flatten(value, f"{prefix}{key}.")
        else:
            keys.append(prefix + key)
    return keys


def _words(language: str) -> dict[str, Any]:
    words = oncall_words()
    return words.get(language) or words["en"]


def alert_code(alert_id: int) -> str:
    """The short code of alert ``alert_id``: at least two characters and a check character."""
    if alert_id < 1:
        raise ValueError("alert ids start at 1")
    digits = []
    value = alert_id
    while value:
        value, rest = divmod(value, _BASE)
        digits.append(CODE_ALPHABET[rest])
    while len(digits) < 2:
        digits.append(CODE_ALPHABET[0])
    body = "".join(reversed(digits))
    return body + _check(body)


def _check(body: str) -> str:
    # Weighted by position, so that two characters swapped change the check character.
    total = sum((index + 1) * CODE_ALPHABET.index(char) for index, char in enumerate(body))
    return CODE_ALPHABET[total % _BASE]


def alert_id_from_code(code: str) -> int | None:
    """The alert id a code names; None for a code that is malformed or fails its check."""
    text = code.strip().upper()
    if len(text) < 3 or any(char not in CODE_ALPHABET for char in text):
        return None
    body, check = text[:-1], text[-1]
    if _check(body) != check:
        return None
    value = 0
    for char in body:
        value = value * _BASE + CODE_ALPHABET.index(char)
    return value or None


def parse_ack(body: str) -> str | None:
    """The code of an ``ACK <code>`` reply (any case, ``ACK: K7Q``), else None."""
    match = _ACK.match(body or "")
    return match.group(1).upper() if match else None


def initials(name: str) -> str:
    """ "Marie-Thérèse Van den Bossche" -> "M.B.": first letters of the first and last names."""
    words = [word for word in re.split(r"\s+", name.strip()) if word]
    if not words:
        return "?"
    letters = [words[0][0]] if len(words) == 1 else [words[0][0], words[-1][0]]
    return "".join(f"{letter.upper()}." for letter in letters)


def spoken_digits(phone: str) -> str:
    """A phone number as a voice reads it best: digit by digit, in groups of three."""
    digits = [char for char in phone if char.isdigit()]
    groups = [" ".join(digits[i : i + 3]) for i in range(0, len(digits), 3)]
    return (", ".join(groups)) if groups else ""


def kind_label(
    kind: str, language: str, temperature_c: float | None = None, *, by_family: bool = False
) -> str:
    """The alert kind in ``language``, with the temperature when there is one.

    ``by_family``: the words were a family member's, not the patient's; the clinician
    must know before calling, since the patient may be unable to answer.
    """
    words = _words(language)
    labels = words["kind"]
    label = labels.get(kind, labels["other"])
    if temperature_c is not None:
        label = f"{label}, {format_temperature(temperature_c, language)} C"
    return f"{label}, {words['reported_by_family']}" if by_family else label


@dataclass(frozen=True)
class VoicePage:
    """A page call's words: what is said before and inside the key prompt."""

    voice_language: str
    message: str
    prompt: str

    @property
    def spoken(self) -> str:
        """Everything the call says, as one text (the outbox row's body)."""
        return f"{self.message} {self.prompt}"


def voice_page(
    language: str,
    *,
    team_name: str,
    patient_initials: str,
    hospital_ref: str | None,
    reason: str,
    callback_phone: str | None,
    family_phone: str | None = None,
) -> VoicePage:
    """The words of a page call in ``language`` (unknown languages: English).

    ``family_phone``: the number of the family member whose message raised the alert,
    said after the patient's so the clinician can call back whoever wrote.
    """
    words = _words(language)
    parts = [
        words["call_intro"].format(team_name=team_name),
        words["call_patient"].format(
            initials=patient_initials, hospital_ref=hospital_ref or words["no_reference"]
        ),
        words["call_reason"].format(reason=reason),
    ]
    if callback_phone:
        parts.append(words["call_callback"].format(callback_digits=spoken_digits(callback_phone)))
    if family_phone:
        parts.append(
            words["call_family_callback"].format(callback_digits=spoken_digits(family_phone))
        )
    return VoicePage(words["voice_language"], " ".join(parts), words["call_prompt"])


def voice_words(language: str, key: str) -> tuple[str, str]:
    """(Twilio voice language, sentence ``key``) for the short answers of a call."""
    words = _words(language)
    return words["voice_language"], words[key]


def ack_reply(language: str, key: str, code: str) -> str:
    """The SMS answer to an ``ACK`` reply: done, already, or unknown code."""
    return _words(language)[key].format(code=code, example=alert_code(57))
