"""Reply parser: turns what patients actually type by SMS into a structured answer.

``parse_reply(text, expecting)`` understands temperatures ("37,8", "101F",
"38.2 and chills"), numbered symptom menus ("2 3", "2, 3 and 5"), symptom words
and short answers in English, French and Dutch, and the carrier keywords
(STOP, START, HELP...). It never raises and never guesses a temperature: a
number that cannot be a body temperature is reported as implausible so the
caller can ask again politely.

The words are data, one file per language (``reminders/core/vocabulary/{en,fr,nl}.toml``,
validated by ``reminders.core.parser_vocabulary``; the red flags are in
``red_flags.toml``). This module holds the grammar: how the words become patterns,
the order things are read in and what negates what.

Rules the brief left open, decided here (the tests pin each one):

* **Keywords.** A carrier keyword counts only when it is the whole message,
  ignoring case, surrounding whitespace and trailing ``.``/``!``, because Twilio
  only acts on single-word messages: "stop" opts out, "stop please" and
  "please don't stop my reminders" do not (they are ``unknown`` and reach the
  care team, who can act). ``ARRET`` is accepted as well for French speakers;
  Twilio does not block on it, but stopping our own messages honours the request.
* **YES.** Twilio re-subscribes the number whenever "YES" arrives, whatever we
  asked. ``keyword == "YES"`` and ``opts_in`` reflect that, so the caller can keep
  its opt-in state in step with the gateway. The *intent* answers the question
  we asked: YES when expecting YES_NO, TAKEN when expecting CONFIRMATION, YES
  when expecting TEMPERATURE or SYMPTOMS (the caller asks again), and OPT_IN
  only when no question is outstanding (``expecting=None``).
* **Precedence.** Anything that can be urgent is never hidden behind a short
  answer or a re-ask: temperature > symptoms > implausible temperature >
  no symptoms / taken / yes / no > unknown. Several temperatures in one reply:
  the highest plausible one wins (fever is an emergency until proven otherwise).
* **Negation.** A negating word and at most a few filler words before a symptom
  or a red flag negate it ("no cough", "not coughing", "pas de toux", "I don't
  have a fever", "geen koorts meer"); a red flag in the past ("fever gone",
  "koorts is weg") is negated too. Any other phrasing ("je ne tousse pas", "not
  sure if I have a fever") is read as a report: over-triage is safe, under-triage
  is not. Negated symptoms and flags are listed in ``negated_symptoms`` and
  ``negated_red_flags``.
* **Short answers** ("no", "none", "taken", "yes") count only when the message
  holds nothing else we cannot read; "no but my arm is swollen" is ``unknown``.
* ``has_free_text`` is True when words (or emoji) remain that we did not
  understand: the caller should show the whole message to the care team.
* Menu numbers are read only when expecting SYMPTOMS. "23" (no separator) is
  not read as "2 and 3": the caller asks again.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Literal

from reminders.core.clinical_rules import clinical_rules
from reminders.core.parser_vocabulary import (
    ANSWER_WORDS,
    VocabularyError,
    load_vocabulary,
    normalise,
)
from reminders.core.red_flags import load_red_flags

__all__ = [
    "HELP_KEYWORDS",
    "OPT_IN_KEYWORDS",
    "OPT_OUT_KEYWORDS",
    "SYMPTOM_CODES",
    "SYMPTOM_MENU",
    "Expecting",
    "Intent",
    "ParsedReply",
    "parse_reply",
]


class Expecting(StrEnum):
    """What the last message we sent asked the patient for."""

    TEMPERATURE = "temperature"  # "take your temperature and reply with the number"
    SYMPTOMS = "symptoms"  # the numbered symptom menu
    CONFIRMATION = "confirmation"  # pill reminder: reply TAKEN
    YES_NO = "yes_no"


class Intent(StrEnum):
    """What the reply means."""

    TEMPERATURE = "temperature"
    SYMPTOMS = "symptoms"
    NO_SYMPTOMS = "no_symptoms"
    TAKEN = "taken"
    YES = "yes"
    NO = "no"
    OPT_OUT = "opt_out"
    OPT_IN = "opt_in"
    HELP = "help"
    IMPLAUSIBLE_TEMPERATURE = "implausible_temperature"
    UNKNOWN = "unknown"
    EMPTY = "empty"


#: Symptom codes in menu order; the menu number is the position + 1.
SYMPTOM_MENU: dict[int, str] = {
    1: "chills",
    2: "breathing",  # cough or short of breath
    3: "tired",
    4: "bleeding",  # bleeding or bruising
    5: "rash",
    6: "diarrhoea",
    7: "injection_site",
    8: "jaundice",  # yellow skin or eyes (inotuzumab menu)
}
SYMPTOM_CODES: frozenset[str] = frozenset(SYMPTOM_MENU.values())

# Twilio's default keywords (single-word messages only), plus ARRET (see module docstring).
OPT_OUT_KEYWORDS = frozenset(
    {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "ARRET"}
)
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP", "YES"})
HELP_KEYWORDS = frozenset({"HELP", "INFO"})


@dataclass(frozen=True)
class ParsedReply:
    """The structured reading of one SMS reply.

    ``temperature_c`` is always in Celsius, rounded half-up to one decimal and
    within the plausible range of ``clinical_rules().fever``; ``temperature_unit``
    is the unit the patient used (or that the value's range implies, then
    ``temperature_unit_inferred`` is True). ``raw_temperature`` is the number as
    typed (after Unicode normalisation), also for implausible values.
    """

    intent: Intent
    temperature_c: float | None = None
    temperature_unit: Literal["C", "F"] | None = None
    raw_temperature: str | None = None
    symptoms: frozenset[str] = frozenset()
    keyword: str | None = None
    mentions_fever: bool = False
    temperature_unit_inferred: bool = False
    temperature_implausible: bool = False
    menu_numbers: tuple[int, ...] = ()
    negated_symptoms: frozenset[str] = frozenset()
    has_free_text: bool = False
    red_flags: frozenset[str] = frozenset()
    negated_red_flags: frozenset[str] = frozenset()

    @property
    def opts_out(self) -> bool:
        """True when the gateway treats this message as an opt-out."""
        return self.keyword in OPT_OUT_KEYWORDS

    @property
    def opts_in(self) -> bool:
        """True when the gateway re-subscribes the number (START, UNSTOP, YES)."""
        return self.keyword in OPT_IN_KEYWORDS


# --------------------------------------------------------------------------- grammar
# The words are data: reminders/core/vocabulary/{en,fr,nl}.toml (their header says how
# entries are written). Everything is matched on normalised text (``normalise``: NFKC,
# case-folded, accents removed), so the entries are written that way too. What follows
# is the grammar: how the entries become patterns and in which order they are read.


def _alternation(fragments: tuple[str, ...]) -> str:
    """Phrase fragments as one alternation; a space matches any run of spaces or hyphens."""
    # Longest first so "short of breath" wins over shorter overlapping entries.
    parts = sorted(
        (f.replace(" ?", r"[\s-]*").replace(" ", r"[\s-]+") for f in fragments),
        key=len,
        reverse=True,
    )
    return "|".join(f"(?:{p})" for p in parts)


def _in_order(fragments: tuple[str, ...]) -> str:
    """[negation]/[past] fragments as one alternation tried in the order written, spaces as is."""
    return "|".join(f"(?:{f})" for f in fragments)


def _phrase_re(fragments: tuple[str, ...]) -> re.Pattern[str]:
    # Word-ish boundaries that also work next to apostrophes and digits.
    return re.compile(rf"(?<![^\W_])(?:{_alternation(fragments)})(?![^\W_])")


# A run of digits, possibly with single "." or "," separators ("37,8", "2,3,5").
_NUMBER_RE = re.compile(r"(?<![\d.,])\d+(?:[.,]\d+)*(?!\d)")
# An hour of the day; "8:30" and "8h30" are times in every language.
_HOUR = r"(?<![\d.,])(?:[01]?\d|2[0-4])"
_TOKEN_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|\d+")
# "37 8" (a space typed for the decimal point), only read when a temperature is expected.
_SPLIT_DECIMAL_RE = re.compile(r"(?<![\d.,])(?:3[4-9]|4[0-3]) \d(?![\d.,])")

_MASK = "\x00"  # replaces consumed text; never matches a word or a space


@dataclass(frozen=True, slots=True)
class _Grammar:
    """The vocabulary compiled into the patterns ``_parse`` reads with."""

    symptoms: tuple[tuple[str, re.Pattern[str]], ...]  # in menu order: each masks its words
    temp_word: re.Pattern[str]
    not_symptom: re.Pattern[str]
    none_phrase: re.Pattern[str]
    unit: re.Pattern[str]  # what may follow a number to mark it as a temperature
    time: re.Pattern[str]  # "8:30", "8h30", "8pm", "20u": times of day are never answers
    duration_after: re.Pattern[str]
    time_prep_before: re.Pattern[str]
    temp_word_before: re.Pattern[str]
    negation_before: re.Pattern[str]
    flag_past_after: re.Pattern[str]
    answers: tuple[tuple[str, frozenset[str]], ...]  # the first answer a word is wins
    filler: frozenset[str]


@cache
def _grammar(directory: Path | None = None) -> _Grammar:
    """Compile the vocabulary (default: ``reminders/core/vocabulary``) on first use."""
    vocabulary = load_vocabulary(directory)
    codes = set(vocabulary.symptom_codes())
    if codes != SYMPTOM_CODES:
        # Every file has the same keys (the loader checks), so the first file speaks for all.
        raise VocabularyError(
            f"{vocabulary.languages[0][0]}.toml: symptoms: the keys must be the menu codes"
            f" ({', '.join(SYMPTOM_MENU.values())}); missing {sorted(SYMPTOM_CODES - codes)},"
            f" unknown {sorted(codes - SYMPTOM_CODES)}"
        )

    def phrases(key: str) -> tuple[str, ...]:
        return vocabulary.entries("phrases", key)

    def in_order(section: str, key: str) -> str:
        return _in_order(vocabulary.entries(section, key))

    temp_words = _alternation(phrases("temperature_words"))
    return _Grammar(
        symptoms=tuple(
            (code, _phrase_re(vocabulary.entries("symptoms", code)))
            for code in SYMPTOM_MENU.values()
        ),
        temp_word=_phrase_re(phrases("temperature_words")),
        # Phrases that contain a symptom word but are not a symptom ("blood test").
        not_symptom=_phrase_re(phrases("not_symptoms")),
        none_phrase=_phrase_re(phrases("nothing_wrong")),
        unit=re.compile(
            rf"\s*(?P<deg>°)?\s*(?:(?P<word>{_alternation(phrases('degree_words'))})\s*)?"
            r"(?P<unit>celsius|fahrenheit|c|f)?(?![^\W\d_])"  # the same in every language
        ),
        time=re.compile(
            rf"{_HOUR}(?:\s*[:h]\s*[0-5]\d"
            rf"|\s*(?:{_alternation(phrases('time_of_day'))})(?![^\W\d_]))(?!\d)"
        ),
        # A number followed by a unit ("3 days", "40 mg") is a duration, a count or a dose.
        duration_after=re.compile(rf"\s*(?:{_alternation(phrases('duration_units'))})(?![^\W\d_])"),
        time_prep_before=re.compile(
            rf"(?:^|[^\w'])(?:{_alternation(phrases('time_prepositions'))})\s+$"
        ),
        # "temp 380", "temperature is 380": the number is meant as a temperature.
        temp_word_before=re.compile(
            rf"(?:{temp_words})[\s:=\x00]*"
            rf"(?:(?:{_alternation(phrases('temperature_joiners'))}|:)\s*)?$"
        ),
        # Negation before a symptom or a red flag: a negating word, then at most four
        # filler words ("no cough", "pas de toux", "I don't have a fever", "n'ai pas de
        # fievre", "geen koorts meer"). Anything else ("not sure if I have a fever") is
        # read as a report: err towards urgent.
        negation_before=re.compile(
            rf"(?:^|[^\w'])(?:{in_order('negation', 'words')})"
            rf"(?:[\s']+(?:{in_order('negation', 'filler')})){{0,4}}[\s']*$"
        ),
        # A red flag in the past ("fever gone", "koorts is weg") is negated too.
        flag_past_after=re.compile(
            rf"(?:[\s,]+(?:{in_order('past', 'auxiliaries')}))?"
            rf"(?:[\s,]+(?:{in_order('past', 'adverbs')}))?"
            rf"[\s,]+(?:{in_order('past', 'gone')})(?![^\W_])"
        ),
        answers=tuple((key, vocabulary.words(key)) for key in ANSWER_WORDS),
        filler=vocabulary.words("filler"),
    )


def _negation_before(grammar: _Grammar, masked: str, start: int) -> re.Match[str] | None:
    """The negation ("no", "I don't have a", "pas de", "geen") just before ``start``."""
    return grammar.negation_before.search(masked, max(0, start - _LOOKBACK), start)


@cache
def _red_flag_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """(flag id, compiled phrases) for each red flag, built on first use."""
    return tuple((f.id, _phrase_re(f.all_phrases())) for f in load_red_flags().flags)


def _red_flags_in(
    grammar: _Grammar, masked: str
) -> tuple[set[str], set[str], list[tuple[int, int]]]:
    """(red flags reported, red flags negated, spans to mask) in the masked text."""
    found: set[str] = set()
    negated: set[str] = set()
    spans: list[tuple[int, int]] = []
    for flag_id, pattern in _red_flag_patterns():
        for m in pattern.finditer(masked):
            before = _negation_before(grammar, masked, m.start())
            after = grammar.flag_past_after.match(masked, m.end())
            if before or after:
                negated.add(flag_id)
                spans.append(
                    (before.start() if before else m.start(), after.end() if after else m.end())
                )
            else:
                found.add(flag_id)
                spans.append(m.span())
    return found, negated - found, spans


# Look-behind checks ("no cough", "at 8", "temp is 38") only need the last few words;
# bounding them keeps parsing linear even for a pathological 100,000-character body.
_LOOKBACK = 40
# Emoji that decorate a short answer ("Taken ✅") without changing it.
_DECORATIVE = frozenset("✅✔☑👍👌🙂😊😀😃😄🙏❤♥💙💚👏🤞✨☺")
_ONE_DECIMAL = Decimal("0.1")


@dataclass(frozen=True)
class _Temperature:
    """One number read as a temperature (celsius None: no body can be that warm or cold)."""

    raw: str
    start: int
    end: int
    celsius: Decimal | None
    unit: Literal["C", "F"] | None
    inferred: bool
    explicit: bool  # a unit, a degree sign or a temperature word says it is a temperature
    decimal: bool  # typed with a decimal separator


# --------------------------------------------------------------------------- helpers
def _mask_spans(text: str, spans: list[tuple[int, int]]) -> str:
    """Blank out consumed text in one pass (linear even for very long messages)."""
    if not spans:
        return text
    chars = list(text)
    for start, end in spans:
        chars[start:end] = _MASK * (end - start)
    return "".join(chars)


def _round_c(value: Decimal) -> Decimal:
    # Half-up, not banker's rounding: 37.95 must read 38.0, never 37.9.
    return value.quantize(_ONE_DECIMAL, rounding=ROUND_HALF_UP)


def _to_celsius(value: Decimal, unit: str | None) -> tuple[Decimal | None, str | None, bool]:
    """Return (Celsius, or None if no body can be that temperature; unit; unit inferred)."""
    fever = clinical_rules().fever
    low, high = Decimal(str(fever.plausible_min_c)), Decimal(str(fever.plausible_max_c))

    def f_to_c(v: Decimal) -> Decimal:
        return (v - 32) * 5 / 9

    if unit == "C":
        return (value if low <= value <= high else None), "C", False
    if unit == "F":
        c = f_to_c(value)
        return (c if low <= c <= high else None), "F", False
    # No unit: the range decides. The two plausible ranges (34-43 and 93.2-109.4) never overlap.
    if low <= value <= high:
        return value, "C", True
    c = f_to_c(value)
    if low <= c <= high:
        return c, "F", True
    return None, None, False


def _is_time_or_count(
    grammar: _Grammar, masked: str, start: int, end: int, value: str
) -> re.Match[str] | bool:
    """A match for "3 days"/"100%"/"40 mg", True for "at 8": numbers that are not answers."""
    after = grammar.duration_after.match(masked, end)
    if after:
        return after
    # Only small integers can be hours; "temp at 38.2" must stay a temperature.
    return (
        value.isdigit()
        and int(value) <= 24
        and bool(grammar.time_prep_before.search(masked, max(0, start - _LOOKBACK), start))
    )


def _read_number(grammar: _Grammar, masked: str, match: re.Match[str]) -> _Temperature | None:
    """Read a number as a temperature reading, or None when it is a list ("2,3,5")."""
    raw = match.group()
    if len(re.findall(r"[.,]", raw)) > 1 or len(raw) > 12:
        return None
    unit_match = grammar.unit.match(masked, match.end())
    unit_raw = unit_match.group("unit") if unit_match else None
    unit = None if unit_raw is None else ("F" if unit_raw.startswith("f") else "C")
    marked = bool(unit_match and (unit_match.group("deg") or unit_match.group("word") or unit))
    value = Decimal(raw.replace(",", "."))
    celsius, resolved_unit, inferred = _to_celsius(value, unit)
    end = unit_match.end() if unit_match and marked else match.end()
    temp_word_before = bool(
        grammar.temp_word_before.search(masked, max(0, match.start() - _LOOKBACK), match.start())
    )
    return _Temperature(
        raw=masked[match.start() : end].strip(),
        start=match.start(),
        end=end,
        celsius=celsius,
        unit=resolved_unit,  # type: ignore[arg-type]
        inferred=inferred,
        explicit=marked or temp_word_before,
        decimal=len(raw) > 1 and ("." in raw or "," in raw),
    )


def _keyword(normalised: str) -> str | None:
    """The carrier keyword if the whole message is one, else None."""
    word = normalised.rstrip(".! ").strip().upper()
    if word in OPT_OUT_KEYWORDS | OPT_IN_KEYWORDS | HELP_KEYWORDS:
        return word
    return None


# --------------------------------------------------------------------------- public
def parse_reply(
    text: str, expecting: Expecting | None = None, *, vocabulary: Path | str | None = None
) -> ParsedReply:
    """Read one SMS reply. Never raises for any text; see the module docstring for the rules.

    ``expecting`` is what our last message asked for; it decides how bare
    numbers are read ("2 3" is a menu answer only when SYMPTOMS is expected,
    "12" is an implausible temperature only when TEMPERATURE is expected) and
    what YES means. Pass None when no question is outstanding.

    ``vocabulary`` is a directory of ``<language>.toml`` word files to read with
    instead of ``reminders/core/vocabulary`` (a translator trying new words). A broken
    word file or red-flag file raises, naming the file and the key: outside the
    safety net below, because reading every reply as "unknown" would hide the mistake
    and every fever with it.
    """
    grammar = _grammar(None if vocabulary is None else Path(vocabulary))
    _red_flag_patterns()  # a broken red_flags.toml raises here too, not as "unknown"
    try:
        return _parse(text if isinstance(text, str) else str(text), expecting, grammar)
    except Exception:  # pragma: no cover - an inbound SMS must never crash the webhook
        # The hypothesis test calls _parse directly, so this net cannot hide bugs.
        return ParsedReply(intent=Intent.UNKNOWN, has_free_text=True)


def _numbers(
    grammar: _Grammar, masked: str, expecting: Expecting | None
) -> tuple[list[_Temperature], list[_Temperature], list[int], bool, bool, list[tuple[int, int]]]:
    """Sort every number into: plausible / implausible temperature, menu choice, other.

    Returns (plausible, implausible, menu numbers, "0" seen, other numbers seen, spans).
    """
    plausible: list[_Temperature] = []
    implausible: list[_Temperature] = []
    menu: list[int] = []
    zero = leftover = False
    spans: list[tuple[int, int]] = []
    for m in _NUMBER_RE.finditer(masked):
        raw = m.group()
        skip = _is_time_or_count(grammar, masked, m.start(), m.end(), raw)
        if skip:
            spans.append((m.start(), skip.end() if isinstance(skip, re.Match) else m.end()))
            continue
        reading = _read_number(grammar, masked, m)
        if reading is not None and reading.celsius is not None:
            # A bare Fahrenheit-range integer ("100") is a temperature only when we asked
            # for one; anywhere else it is too often something else ("100 steps").
            bare_f = reading.inferred and reading.unit == "F" and not reading.decimal
            if not bare_f or expecting == Expecting.TEMPERATURE or reading.explicit:
                plausible.append(reading)
                spans.append((reading.start, reading.end))
                continue
        parts = [int(p) for p in re.split(r"[.,]", raw)] if len(raw) <= 40 else []
        is_menu = (
            expecting == Expecting.SYMPTOMS
            and parts
            and all(0 <= p <= len(SYMPTOM_MENU) for p in parts)
            and not (reading is not None and reading.explicit)
        )
        if is_menu:
            zero = zero or 0 in parts
            menu.extend(p for p in parts if p)
            spans.append((m.start(), m.end()))
            continue
        if reading is not None and (expecting == Expecting.TEMPERATURE or reading.explicit):
            implausible.append(reading)
            spans.append((reading.start, reading.end))
            continue
        leftover = True
        spans.append((m.start(), m.end()))

    if expecting == Expecting.TEMPERATURE:
        # "37 8" when we asked for a temperature: 37.0 or 37.8? Never guess: ask again.
        split = _SPLIT_DECIMAL_RE.search(masked)
        if split and not grammar.duration_after.match(masked, split.end()):
            implausible.insert(
                0,
                _Temperature(
                    raw=split.group(),
                    start=split.start(),
                    end=split.end(),
                    celsius=None,
                    unit=None,
                    inferred=False,
                    explicit=True,
                    decimal=False,
                ),
            )
            plausible = []
    return plausible, implausible, menu, zero, leftover, spans


def _parse(text: str, expecting: Expecting | None, grammar: _Grammar | None = None) -> ParsedReply:
    grammar = grammar or _grammar()
    normalised = normalise(text)
    if not normalised:
        return ParsedReply(intent=Intent.EMPTY)

    keyword = _keyword(normalised)
    if keyword is not None:
        return _keyword_reply(keyword, expecting)

    masked = normalised
    free_text = False
    categories: set[str] = set()

    # 0. Red flags ("chest pain", "koorts", "low blood pressure"), each possibly negated
    #    ("no fever") or in the past ("fever gone"): read first, on the whole text, so
    #    that nothing masked below ("blood pressure" is no bleeding) can hide one; their
    #    words are masked only after the symptom words ("short of breath" is both).
    red_flags, negated_flags, flag_spans = _red_flags_in(grammar, masked)
    if negated_flags:
        categories.add("none")

    # 1. Phrases that look like symptoms but are not ("blood test"): the team sees them.
    spans = [m.span() for m in grammar.not_symptom.finditer(masked)]
    free_text = bool(spans)
    masked = _mask_spans(masked, spans)

    # 2. Times of day ("8:30", "8pm") are neither temperatures nor menu numbers.
    masked = _mask_spans(masked, [m.span() for m in grammar.time.finditer(masked)])

    # 3. Numbers.
    plausible, implausible, menu, zero, leftover, spans = _numbers(grammar, masked, expecting)
    masked = _mask_spans(masked, spans)
    if zero:
        categories.add("none")
    if leftover:
        free_text = True

    # 4. "Nothing wrong" phrases, before symptoms so that "no symptoms" is not a negation.
    spans = [m.span() for m in grammar.none_phrase.finditer(masked)]
    if spans:
        categories.add("none")
    masked = _mask_spans(masked, spans)

    # 5. Symptom words, each possibly negated by the words just before it.
    symptoms: set[str] = set()
    negated: set[str] = set()
    for code, pattern in grammar.symptoms:
        spans = []
        for m in pattern.finditer(masked):
            neg = _negation_before(grammar, masked, m.start())
            if neg:
                negated.add(code)
                spans.append((neg.start(), m.end()))
            else:
                symptoms.add(code)
                spans.append(m.span())
        masked = _mask_spans(masked, spans)
    symptoms.update(SYMPTOM_MENU[n] for n in menu)
    negated -= symptoms  # "no cough ... coughing a lot": the report wins
    if negated:
        categories.add("none")
    masked = _mask_spans(masked, flag_spans)
    masked = _mask_spans(masked, [m.span() for m in grammar.temp_word.finditer(masked)])

    # 6. What is left: short answers, filler, or words we do not understand.
    for token in _TOKEN_RE.findall(masked):
        category = next((n for n, words in grammar.answers if token in words), None)
        if category:
            categories.add(category)
        elif token not in grammar.filler:
            free_text = True
    if any(unicodedata.category(c)[0] == "S" and c not in _DECORATIVE | {"°"} for c in masked):
        free_text = True  # emoji and other symbols may mean something: show them

    common = {
        "symptoms": frozenset(symptoms),
        "mentions_fever": "fever" in red_flags,
        "red_flags": frozenset(red_flags),
        "negated_red_flags": frozenset(negated_flags),
        "menu_numbers": tuple(sorted(set(menu))),
        "negated_symptoms": frozenset(negated),
        "has_free_text": free_text,
    }
    if plausible:
        best = max(plausible, key=lambda t: t.celsius or Decimal(0))
        return ParsedReply(
            intent=Intent.TEMPERATURE,
            temperature_c=float(_round_c(best.celsius or Decimal(0))),
            temperature_unit=best.unit,
            raw_temperature=best.raw,
            temperature_unit_inferred=best.inferred,
            **common,
        )
    first_bad = implausible[0] if implausible else None
    if symptoms or red_flags:
        return ParsedReply(
            intent=Intent.SYMPTOMS,
            raw_temperature=first_bad.raw if first_bad else None,
            temperature_implausible=first_bad is not None,
            **common,
        )
    if first_bad is not None:
        return ParsedReply(
            intent=Intent.IMPLAUSIBLE_TEMPERATURE,
            raw_temperature=first_bad.raw,
            temperature_implausible=True,
            **common,
        )
    if free_text:
        return ParsedReply(intent=Intent.UNKNOWN, **common)
    return ParsedReply(intent=_short_answer(categories, expecting), **common)


def _short_answer(categories: set[str], expecting: Expecting | None) -> Intent:
    """Read a reply made only of yes / no / none / taken words (and filler)."""
    if "taken" in categories:
        if "negative" in categories:
            return Intent.NO  # "not taken", "pas encore pris", "nog niet genomen"
        return Intent.TAKEN if categories <= {"taken", "yes"} else Intent.UNKNOWN
    if categories and categories <= {"yes"}:
        return Intent.TAKEN if expecting == Expecting.CONFIRMATION else Intent.YES
    if categories and categories <= {"no", "negative"}:
        # The brief: "no" to the symptom menu means no symptoms.
        return Intent.NO_SYMPTOMS if expecting == Expecting.SYMPTOMS else Intent.NO
    if categories and categories <= {"none", "no"}:
        return Intent.NO_SYMPTOMS
    return Intent.UNKNOWN


def _keyword_reply(keyword: str, expecting: Expecting | None) -> ParsedReply:
    if keyword in OPT_OUT_KEYWORDS:
        return ParsedReply(intent=Intent.OPT_OUT, keyword=keyword)
    if keyword in HELP_KEYWORDS:
        return ParsedReply(intent=Intent.HELP, keyword=keyword)
    if keyword == "YES" and expecting is not None:
        # "YES" answers the question we asked; opts_in still mirrors Twilio's re-subscribe.
        intent = Intent.TAKEN if expecting == Expecting.CONFIRMATION else Intent.YES
        return ParsedReply(intent=intent, keyword=keyword)
    return ParsedReply(intent=Intent.OPT_IN, keyword=keyword)
