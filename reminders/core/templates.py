"""SMS templates in English, French and Dutch, and SMS segment counting.

Templates live in ``messages/{en,fr,nl}.toml``. ``render`` fills str.format-style
placeholders and quotes the urgent advice and the emergency fallback word for
word from ``advice.toml`` (placeholders ``{urgent_advice}`` and
``{emergency_fallback}``), so the advice exists in exactly one place.

Every value placed in a template is spelt in GSM-7 where it can be (``to_gsm7``): a
name with "ï" or a label with "ë" would otherwise send the whole SMS as UCS-2.

Each template fits one SMS segment with the longest values the app allows
(``tests/reminders/test_sms_segments.py``), unless its ``max_segments`` says more
and its ``why`` says which words safety needs.

``segments`` implements GSM 03.38: a text made only of the GSM-7 basic set and
extension table is sent as GSM-7 (160 units, or 153 per segment when split;
extension characters such as "€" take two units), anything else as UCS-2
(70 UTF-16 units, or 67 per segment).

Discreet mode (``discreet=True``) uses a template's ``discreet`` variant, which
names neither the drug nor the disease. Templates that mention neither have no
variant and are used as they are.
"""

from __future__ import annotations

import re
import string
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

from reminders.core.clinical_rules import (
    LANGUAGES,
    emergency_fallback,
    no_care_phone,
    urgent_advice,
)
from reminders.core.datafiles import read_toml
from reminders.core.regions import Region, one_decimal

__all__ = [
    "AUTO_PLACEHOLDERS",
    "DEFAULT_LANGUAGE",
    "DRUG_PLACEHOLDERS",
    "FAMILY_TEMPLATE_KEYS",
    "TEMPLATE_KEYS",
    "SegmentInfo",
    "Template",
    "TemplateError",
    "format_temperature",
    "get_template",
    "gsm_incompatible",
    "render",
    "resolve_language",
    "segments",
    "segments_over_budget",
    "team_name_for_sms",
    "template_placeholders",
    "to_gsm7",
]

_MESSAGES = Path(__file__).with_name("messages")
DEFAULT_LANGUAGE = "en"
#: Filled in by render() from advice.toml; callers never pass them.
AUTO_PLACEHOLDERS = frozenset({"urgent_advice", "emergency_fallback"})
#: The messages tied to a dose of the plan: a hold stops them, the patient page lists them
#: with the dose.
DOSE_REMINDER_KEYS: tuple[str, ...] = (
    "dose_reminder_evening_before",
    "dose_reminder_morning",
    "first_dose_in_hospital",
    "dose_in_hospital_evening_before",
    "premedication_reminder",
    "premedication_by_team",
)
#: The messages to a patient's family contact (``reminders.family``), in the contact's
#: language: what they get, a copy of the urgent advice, the nudge after two unanswered
#: check-ins, and the answers to what they text.
FAMILY_TEMPLATE_KEYS: tuple[str, ...] = (
    "family_info",
    "family_urgent_copy",
    "family_checkin_nudge",
    "family_message_ack",
    "family_urgent_reply",
    "family_opted_in",
)
#: Every message the application sends. Each messages/*.toml must define exactly
#: these keys (checked on first use), so code can rely on them.
TEMPLATE_KEYS: tuple[str, ...] = (
    "welcome",
    "help_reply",
    "opted_out_confirmation",
    "opted_in_confirmation",
    *DOSE_REMINDER_KEYS,
    "pill_reminder",
    "pill_taken_ack",
    "lab_reminder",
    "milestone",
    "milestone_review",
    "checkin_temperature",
    "checkin_symptoms",
    "checkin_symptoms_with_jaundice",
    "reask_temperature",
    "recheck_temperature",
    "expected_temperature",
    "fever_urgent",
    "fever_urgent_cmv",
    "fever_words_urgent",
    "red_flag_urgent",
    "symptoms_ack",
    "symptoms_ack_recheck",
    "all_clear_thanks",
    "checkin_resend",
    "free_text_ack",
    "oncall_alert",
    "oncall_alert_family",
    "oncall_reescalation",
    "unknown_reply_help",
    *FAMILY_TEMPLATE_KEYS,
    # To a number the companion does not know (reminders/unknown_senders.py).
    "unknown_sender_reply",
    "unknown_sender_reply_bilingual",
)
#: Placeholders that name a drug, or a test that gives the treatment away (a CMV test):
#: never allowed in a discreet variant.
DRUG_PLACEHOLDERS = frozenset({"drug", "medicine", "premedication", "lab"})
#: The most of a team's name an SMS quotes. Team names may be 120 characters (the
#: column); the SMS that name the team fit one segment with a name this long, cut at a
#: word beyond it (the patient knows the team by its number too). "Hématologie
#: Saint-Luc" and "AZ Sint-Jan Hematologie" fit whole.
TEAM_NAME_SMS_LENGTH = 24


class TemplateError(ValueError):
    """A message file is invalid; the message names the file and the key."""


@dataclass(frozen=True)
class Template:
    """One message in one language."""

    key: str
    language: str
    text: str
    discreet: str | None = None
    audience: Literal["patient", "clinician"] = "patient"
    #: The segment budget in this language: 1, or more with ``why`` (the words safety needs).
    max_segments: int = 1
    why: str | None = None


# --------------------------------------------------------------------------- loading
def _placeholders(text: str, where: str) -> frozenset[str]:
    """Names used in a format string; only plain {name} fields are allowed."""
    try:
        return _parsed_placeholders(text)
    except TemplateError as exc:
        raise TemplateError(f"{where}: {exc}") from None


@lru_cache(maxsize=1_024)
def _parsed_placeholders(text: str) -> frozenset[str]:
    # Cached: render() asks for every message it fills, from a few dozen templates.
    names = set()
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(str(exc)) from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        # No {0}, {a.b}, {a[0]}, {a!r} or {a:>5}: a template is text, not code.
        if not name.isidentifier() or spec or conversion:
            raise TemplateError(f"placeholder {{{name}}} must be a plain {{name}}")
        names.add(name)
    return frozenset(names)


def _load_language(language: str) -> dict[str, Template]:
    path = _MESSAGES / f"{language}.toml"
    try:
        data = read_toml(path)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise TemplateError(f"{path.name}: {exc}") from exc
    templates = {}
    for key, entry in data.items():
        where = f"{path.name} [{key}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("text"), str):
            raise TemplateError(f"{where}: needs a text")
        unknown = set(entry) - {"text", "discreet", "audience", "max_segments", "why"}
        if unknown:
            raise TemplateError(f"{where}: unknown field(s) {sorted(unknown)}")
        audience = entry.get("audience", "patient")
        if audience not in ("patient", "clinician"):
            raise TemplateError(f"{where}: audience must be patient or clinician")
        max_segments = entry.get("max_segments", 1)
        if not isinstance(max_segments, int) or max_segments < 1:
            raise TemplateError(f"{where}: max_segments must be a positive integer")
        if (max_segments > 1) != bool(entry.get("why")):
            raise TemplateError(f"{where}: a budget over one segment needs its why, and only it")
        templates[key] = Template(
            key=key,
            language=language,
            text=entry["text"],
            discreet=entry.get("discreet"),
            audience=audience,
            max_segments=max_segments,
            why=entry.get("why"),
        )
    return templates


@cache
def _catalogue() -> dict[str, dict[str, Template]]:
    """All languages, checked: the keys of TEMPLATE_KEYS, the placeholders of English."""
    catalogue = {lang: _load_language(lang) for lang in LANGUAGES}
    reference = catalogue[DEFAULT_LANGUAGE]
    for lang, templates in catalogue.items():
        missing = set(TEMPLATE_KEYS) - templates.keys()
        extra = templates.keys() - set(TEMPLATE_KEYS)
        if missing or extra:
            raise TemplateError(
                f"{lang}.toml: keys differ from TEMPLATE_KEYS (missing {sorted(missing)},"
                f" extra {sorted(extra)})"
            )
        for key, tpl in templates.items():
            where = f"{lang}.toml [{key}]"
            ref = reference[key]
            names = _placeholders(tpl.text, where)
            if names != _placeholders(ref.text, f"en.toml [{key}]"):
                raise TemplateError(f"{where}: placeholders differ from en.toml")
            if (tpl.discreet is None) != (ref.discreet is None):
                raise TemplateError(f"{where}: discreet variant present in one language only")
            if names & DRUG_PLACEHOLDERS and tpl.discreet is None:
                raise TemplateError(f"{where}: names a drug, so it needs a discreet variant")
            if tpl.discreet is not None:
                d_names = _placeholders(tpl.discreet, f"{where} discreet")
                if d_names & DRUG_PLACEHOLDERS:
                    raise TemplateError(f"{where}: the discreet variant names a drug")
                if d_names != _placeholders(ref.discreet or "", f"en.toml [{key}] discreet"):
                    raise TemplateError(f"{where}: discreet placeholders differ from en.toml")
    return catalogue


# --------------------------------------------------------------------------- public API
def resolve_language(language: str | None) -> str:
    """ "fr", "FR", "fr-BE", "fr_BE" -> "fr"; anything we do not have -> "en"."""
    primary = re.split(r"[-_]", (language or "").strip().casefold(), maxsplit=1)[0]
    return primary if primary in LANGUAGES else DEFAULT_LANGUAGE


def get_template(key: str, language: str = DEFAULT_LANGUAGE) -> Template:
    """The template for ``key`` in ``language`` (falls back to English). KeyError if unknown."""
    if key not in TEMPLATE_KEYS:
        raise KeyError(f"unknown template {key!r}")
    return _catalogue()[resolve_language(language)][key]


def template_placeholders(key: str, *, discreet: bool = False) -> frozenset[str]:
    """The values a caller must pass to ``render(key, ...)`` (same in every language).

    Excludes ``AUTO_PLACEHOLDERS``, which render() fills in itself.
    """
    tpl = get_template(key)
    text = tpl.discreet if discreet and tpl.discreet is not None else tpl.text
    return _placeholders(text, key) - AUTO_PLACEHOLDERS


def render(
    key: str,
    language: str,
    *,
    discreet: bool = False,
    region: Region | None = None,
    **values: object,
) -> str:
    """Fill the template ``key`` in ``language`` with ``values``.

    Unknown languages fall back to English. A missing value raises ``KeyError``
    naming the placeholder; extra values are ignored (so a caller can pass the
    same dictionary to every template, including ``drug`` in discreet mode).
    ``urgent_advice`` and ``emergency_fallback`` come from advice.toml, written for
    the reader's ``region`` (its emergency number and temperature units; the default
    region when None), and may not be passed. Text values are spelt in GSM-7 where they
    can be (``to_gsm7``).

    A ``team_phone`` of None (a team without a care phone) is written as the region's
    emergency number, named as such in the reader's language (``advice.toml``
    ``no_care_phone``): never a team's name where the reader looks for a number.
    """
    passed = AUTO_PLACEHOLDERS & values.keys()
    if passed:
        raise ValueError(f"{sorted(passed)} come from advice.toml and cannot be passed")
    tpl = get_template(key, language)
    text = tpl.discreet if discreet and tpl.discreet is not None else tpl.text
    lang = tpl.language
    filled: dict[str, object] = {
        "urgent_advice": urgent_advice(lang, region),
        "emergency_fallback": emergency_fallback(lang, region),
    }
    for name in _placeholders(text, key) - AUTO_PLACEHOLDERS:
        if name not in values:
            raise KeyError(f"template {key!r} needs a value for placeholder {{{name}}}")
        value = values[name]
        if name == "team_phone" and value is None:
            value = no_care_phone(lang, region)
        filled[name] = to_gsm7(value) if isinstance(value, str) else value
    return text.format_map(filled)


def team_name_for_sms(name: str) -> str:
    """A team's name as SMS quote it: at most ``TEAM_NAME_SMS_LENGTH`` characters.

    A longer name is cut at the last space within the limit ("Service d'hématologie
    clinique, Cliniques universitaires Saint-Luc" -> "Service d'hématologie clinique,"
    without the comma), or at the limit when a word runs past it.
    """
    name = " ".join(name.split())
    if len(name) <= TEAM_NAME_SMS_LENGTH:
        return name
    cut = name[: TEAM_NAME_SMS_LENGTH + 1]
    if " " in cut[TEAM_NAME_SMS_LENGTH // 2 :]:
        cut = cut[: cut.rindex(" ")]
    # No dangling joiner: "Service d'hématologie — Cliniques" ends "Service d'hématologie".
    return cut[:TEAM_NAME_SMS_LENGTH].rstrip(" ,;:-–—(/&+")


def format_temperature(value_c: float, language: str) -> str:
    """A temperature for an SMS: "37.6" in English, "37,6" in French and Dutch."""
    return one_decimal(value_c, resolve_language(language))


# --------------------------------------------------------------------------- segments
# GSM 03.38 default alphabet (basic set), without the escape character 0x1B.
_GSM_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# Extension table: each character is sent as ESC + character, so it counts 2.
_GSM_EXTENSION = frozenset("^{}\\[~]|€\f")

_NOT_GSM = re.compile("[^" + re.escape("".join(sorted(_GSM_BASIC | _GSM_EXTENSION))) + "]")
_GSM_ESCAPED = re.compile("[" + re.escape("".join(sorted(_GSM_EXTENSION))) + "]")
_GSM_SINGLE, _GSM_MULTI = 160, 153
_UCS2_SINGLE, _UCS2_MULTI = 70, 67


@dataclass(frozen=True)
class SegmentInfo:
    """How an SMS body is encoded and billed.

    ``units`` are GSM-7 septets or UCS-2 (UTF-16) code units; ``segments`` is the
    number of SMS parts (0 for an empty text, which cannot be sent).
    """

    encoding: Literal["GSM-7", "UCS-2"]
    units: int
    segments: int


def _pack(sizes: list[int], single: int, multi: int) -> int:
    """Number of segments, never splitting a character (escape pair, surrogate pair)."""
    total = sum(sizes)
    if total == 0:
        return 0
    if total <= single:
        return 1
    count, used = 1, 0
    for size in sizes:
        if used + size > multi:
            count, used = count + 1, 0
        used += size
    return count


def segments(text: str) -> SegmentInfo:
    """Encoding, length in units and number of segments of an SMS body (GSM 03.38)."""
    # One regular-expression pass each (the dispatcher checks every SMS it claims).
    if _NOT_GSM.search(text) is None:
        if _GSM_ESCAPED.search(text) is None and len(text) <= _GSM_SINGLE:
            return SegmentInfo("GSM-7", len(text), 1 if text else 0)
        sizes = [2 if ch in _GSM_EXTENSION else 1 for ch in text]
        return SegmentInfo("GSM-7", sum(sizes), _pack(sizes, _GSM_SINGLE, _GSM_MULTI))
    sizes = [2 if ord(ch) > 0xFFFF else 1 for ch in text]  # astral chars: surrogate pairs
    return SegmentInfo("UCS-2", sum(sizes), _pack(sizes, _UCS2_SINGLE, _UCS2_MULTI))


def gsm_incompatible(text: str) -> str:
    """The characters of ``text`` that force UCS-2 (empty when it is GSM-7)."""
    return "".join(dict.fromkeys(ch for ch in text if ch not in _GSM_BASIC | _GSM_EXTENSION))


#: Letters NFKD does not take apart, and punctuation phones type, with their GSM-7 form.
_GSM_SPELLINGS = {
    "Ł": "L", "ł": "l", "Đ": "D", "đ": "d", "Œ": "OE", "œ": "oe", "ı": "i",
    "\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "\u201e": '"',
    "\u2013": "-", "\u2014": "-", "\u2026": "...", "\u00a0": " ",
}  # fmt: skip


def to_gsm7(text: str) -> str:
    """``text`` spelt with the GSM-7 alphabet where it can be: "François" -> "Francois".

    For the names placed in an SMS (the patient's, the team's): one accent outside the
    GSM-7 set (ç, ï, ë, ô ...) would send the whole message as UCS-2, 70 characters a
    segment instead of 160. Letters GSM-7 has (é, è, à, ù, ä, ö, ñ, ü, Ç, ß ...) stay; others
    lose their accent; a character with no GSM-7 spelling (a name in Cyrillic) stays as it
    is, so that the name is still the person's (the message then goes as UCS-2).
    """
    return "".join(_gsm7_char(ch) for ch in text)


@lru_cache(maxsize=512)
def _gsm7_char(ch: str) -> str:
    if ch in _GSM_BASIC or ch in _GSM_EXTENSION:
        return ch
    if ch in _GSM_SPELLINGS:
        return _GSM_SPELLINGS[ch]
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    if base and all(c in _GSM_BASIC for c in base):
        return base
    return ch


def segments_over_budget(kind: str, language: str, body: str) -> tuple[int, int] | None:
    """(segments used, budget) when ``body``, an SMS of template ``kind``, is over its budget.

    The budget is the template's ``max_segments`` in ``language`` (one segment unless a
    documented exception says more); None within it, and for a kind that is no template.
    """
    if kind not in TEMPLATE_KEYS:
        return None
    budget = get_template(kind, language).max_segments
    used = segments(body).segments
    return (used, budget) if used > budget else None
