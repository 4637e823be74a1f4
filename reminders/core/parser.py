"""Reply parser: turns what patients actually type by SMS into a structured answer.

``parse_reply(text, expecting)`` understands temperatures ("37,8", "101F",
"38.2 and chills"), numbered symptom menus ("2 3", "2, 3 and 5"), symptom words
and short answers in English, French and Dutch, and the carrier keywords
(STOP, START, HELP...). It never raises and never guesses a temperature: a
number that cannot be a body temperature is reported as implausible so the
caller can ask again politely.

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
from typing import Literal

from reminders.core.clinical_rules import clinical_rules
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


# --------------------------------------------------------------------------- lexicon
def _words(text: str) -> list[str]:
    """Split a whitespace-separated word list (keeps long lists readable)."""
    return text.split()


# Everything below is matched on normalised text: NFKC, case-folded, accents
# removed ("essoufflé" -> "essouffle"), so each entry is written without accents.
# Entries are regular-expression fragments; a space matches any run of spaces or
# hyphens ("short-of-breath").

_SYMPTOM_WORDS: dict[str, tuple[str, ...]] = {
    "chills": (
        "chills?",
        "chilly",
        "shiver(s|ing|y)?",
        "shaking",
        "shakes",
        "rigou?rs?",
        "frissons?",
        "frissonne",
        "grelott(e|er|ant)",
        "tremblements?",
        "(koude )?rillingen",
        "rilling",
        "rillerig",
        "bibber(en)?",
        "klappertand(en)?",
    ),
    "breathing": (
        "coughs?",
        "coughing",
        "coughed",
        "short of breath",
        "shortness of breath",
        "breathless(ness)?",
        "out of breath",
        "(can'?t|cannot|can not) breathe?",
        "(difficulty|difficult|trouble|hard|struggling|struggle) (to )?breath(e|ing)",
        "breathing (is )?(difficult|hard|problems?)",
        "wheez(e|y|ing)",
        "toux",
        "tousse(r|s)?",
        "toussote",
        "essouffle(e|ment)?",
        "souffle court",
        "(du )?mal a respirer",
        "difficultes? a respirer",
        "respire mal",
        "manque (de souffle|d'air)",
        "hoest(en|te)?",
        "kortademig(heid)?",
        "benauwd(heid)?",
        "ademnood",
        "moeilijk (ademen|adem halen)",
        "moeite met ademen",
        "adem tekort",
        "buiten adem",
    ),
    "tired": (
        "tired",
        "exhausted",
        "exhaustion",
        "fatigued?",
        "fatiguee",
        "worn out",
        "no energy",
        "weak(ness)?",
        "letharg(ic|y)",
        "drained",
        "epuise(e|ment)?",
        "crevee?",
        "sans energie",
        "faible(sse)?",
        "moe",
        "doodmoe",
        "vermoeid(heid)?",
        "uitgeput",
        "futloos",
        "lusteloos",
        "geen energie",
        "zwak",
    ),
    "bleeding": (
        "bleed(ing|s)?",
        "bled",
        "blood",
        "bloody",
        "bruis(e|es|ed|ing)",
        "nose ?bleeds?",
        "ha?emorrhag(e|ing)",
        "petechiae",
        "saignements?",
        "saigne(nt|r)?",
        "sang",
        "hematomes?",
        "(un|des) bleus?",
        "ecchymoses?",
        "hemorragie",
        "bloed(ing|ingen|t|en|de)?",
        "blauwe plek(ken)?",
        "neusbloeding",
        "bloedneus",
        "bloeduitstorting(en)?",
    ),
    "rash": (
        "rash(es)?",
        "skin rash",
        "(red )?spots",
        "hives",
        "itch(y|ing)",
        "blotch(es|y)",
        "eruptions?( cutanee)?",
        "boutons",
        "plaques rouges",
        "rougeurs?",
        "urticaire",
        "demangeaisons?",
        "(huid)?uitslag",
        "rode vlekken",
        "jeuk(t)?",
        "netelroos",
        "bultjes",
    ),
    "diarrhoea": (
        r"di+a+r+h?o?e+a*h?s?",
        "the runs",
        "(loose|watery|runny) stools?",
        "selles liquides",
        "dunne ontlasting",
        "(water)?dunne stoelgang",
        "buikloop",
    ),
    "injection_site": (
        "injection (site|spot|area|point|place)",
        "(site|spot|area|place) of (the )?injection",
        "where (i had )?the injection( was)?",
        "(at|around) (the )?injection",
        "(point|site|endroit) (d'|de l')injection",
        "endroit de la piqure",
        "(au|a l'endroit de la) piqure",
        "prikplaats",
        "injectieplaats",
        "plaats van de (injectie|prik)",
        "rond de prik",
        "waar (ik )?geprikt",
    ),
    "jaundice": (
        "jaundiced?",
        "yellow( skin| eyes)?",
        "skin is yellow",
        "eyes are yellow",
        "jaunisse",
        "jaunes?",
        "ictere",
        "geelzucht",
        "geel",
        "gele (ogen|huid)",
    ),
}

# Words that say "this number is a temperature".
_TEMP_WORDS = ("temp", "temperature", "temperatuur", r"t\s?°", "thermometer")

# Phrases that contain a symptom word but are not a symptom ("blood test").
# They are masked before symptom matching and reported as free text.
_NOT_SYMPTOMS = (
    "blood (test|work|result|pressure|count|sample|draw|sugar)s?",
    "bloodwork",
    "prises? de sang",
    "analyses? de sang",
    "bloed(afname|test|onderzoek|waarden|druk|prik|staal|name|suiker)",
    "bloed (laten )?(prikken|afnemen|trekken)",
)

# Multi-word ways of saying "nothing wrong".
_NONE_PHRASES = (
    "all (good|fine|ok|okay|well)",
    "(i'?m|i am|feeling|feel|doing) (fine|good|well|ok|okay)",
    "nothing to report",
    "no (symptoms?|problems?|complaints?|issues?)",
    "rien a signaler",
    "ras",
    "tout va bien",
    "ca va( bien)?",
    "je vais bien",
    "pas de (symptomes?|probleme?s?)",
    "aucun (symptome|probleme)s?",
    "geen (klachten|symptomen|problemen)",
    "alles (goed|ok|oke|prima)",
    "(niks|niets) aan de hand",
    "het gaat goed",
    "gaat goed",
)

_TOKEN_CATEGORIES: dict[str, frozenset[str]] = {
    "yes": frozenset(_words("yes y yeah yea yep yup ya oui ouais ja jawel jep")),
    "no": frozenset(_words("no n nope nah non nee neen nop")),
    "none": frozenset(_words("none nothing nil nada rien aucun aucune geen niets niks")),
    "taken": frozenset(
        _words("taken took done pris prise prises fait genomen ingenomen gedaan geslikt")
    ),
    "neg": frozenset(
        _words(
            "not don't dont didn't didnt haven't havent forgot forget forgotten missed"
            " pas oublie oubliee niet vergeten vergat"
        )
    ),
}

# Words that carry no meaning on their own: connectors, pronouns, politeness,
# times of day, "symptoms". They neither add nor block an answer.
_FILLER = frozenset(
    _words(
        """
    and & + also too with or but then so just still yet more already
    en et aussi avec ou mais puis encore deja ook met of maar dan nog al
    i i'm im i've ive me my it it's its is was am are be been have has had got get
    a an the this that these some any of for to in on at my
    je j j'ai ai suis moi mon ma mes il elle c'est est etait l l'ai le la les un une des du d de
    ce cette ces au aux
    ik heb had ben mijn het is was een de deze dit die van voor aan op in
    today now this morning evening tonight afternoon night yesterday
    aujourd'hui maintenant matin soir soiree nuit hier
    vandaag nu vanochtend vanmorgen vanavond ochtend avond middag nacht gisteren vannacht
    thanks thank you thx ty merci bedankt dank dankje dankjewel u please pls plz svp
    hi hello hey hallo bonjour bonsoir dag goedemorgen goedenavond ok okay oke
    ah oh um uh hmm well
    bit little slightly very really quite beetje erg heel tres peu un peu
    symptom symptoms symptome symptomes symptomen klachten klacht
    reading measured mesure gemeten measure number nummer numero
    it them ze het hem tablet tablets pill pills comprime comprimes pil pillen
    feel feeling felt voel voelt sens sent meer more anymore longer plus
    n'ai n'est n ne je n'en
    """
    )
)

# A number followed by one of these is a duration, a count or a dose, not an answer.
_DURATION_UNITS = tuple(
    _words(
        """
    days? hours? hrs? mins? minutes? weeks? times? years? x % percent tablets? pills?
    mg g mcg ml kg cm mmol
    jours? heures? semaines? ans fois comprimes?
    dagen dag uren uur minuten weken week jaar keer maal tabletten pillen
    """
    )
)
_TIME_PREPOSITIONS = tuple(
    _words(
        """
    at around since until till by before after about
    om rond sinds tot voor na
    a vers depuis jusqu'a avant apres
    """
    )
)


def _alternation(fragments: tuple[str, ...]) -> str:
    # Longest first so "short of breath" wins over shorter overlapping entries.
    parts = sorted(
        (f.replace(" ?", r"[\s-]*").replace(" ", r"[\s-]+") for f in fragments),
        key=len,
        reverse=True,
    )
    return "|".join(f"(?:{p})" for p in parts)


def _phrase_re(fragments: tuple[str, ...]) -> re.Pattern[str]:
    # Word-ish boundaries that also work next to apostrophes and digits.
    return re.compile(rf"(?<![^\W_])(?:{_alternation(fragments)})(?![^\W_])")


_SYMPTOM_RES = {code: _phrase_re(words) for code, words in _SYMPTOM_WORDS.items()}
_TEMP_WORD_RE = _phrase_re(_TEMP_WORDS)
_NOT_SYMPTOM_RE = _phrase_re(_NOT_SYMPTOMS)
_NONE_PHRASE_RE = _phrase_re(_NONE_PHRASES)

# A run of digits, possibly with single "." or "," separators ("37,8", "2,3,5").
_NUMBER_RE = re.compile(r"(?<![\d.,])\d+(?:[.,]\d+)*(?!\d)")
# What may follow a number to mark it as a temperature.
_UNIT_RE = re.compile(
    r"\s*(?P<deg>°)?\s*(?:(?P<word>degrees?|degres?|deg|graden|graad|gr)\s*)?"
    r"(?P<unit>celsius|fahrenheit|c|f)?(?![^\W\d_])"
)
# "8:30", "8h30", "8pm", "20u": times of day are never answers.
_HOUR = r"(?<![\d.,])(?:[01]?\d|2[0-4])"
_TIME_RE = re.compile(
    rf"{_HOUR}(?:\s*[:h]\s*[0-5]\d|\s*(?:am|pm|a\.m\.|p\.m\.|u|h|uur)(?![^\W\d_]))(?!\d)"
)
_DURATION_AFTER_RE = re.compile(rf"\s*(?:{_alternation(_DURATION_UNITS)})(?![^\W\d_])")
_TIME_PREP_BEFORE_RE = re.compile(rf"(?:^|[^\w'])(?:{_alternation(_TIME_PREPOSITIONS)})\s+$")
_TOKEN_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*|\d+")
# "temp 380", "temperature is 380": the number is meant as a temperature.
_TEMP_WORD_BEFORE_RE = re.compile(
    r"(?:temp|temperature|temperatuur|t ?°|thermometer)[\s:=\x00]*"
    r"(?:(?:is|was|of|est|etait|de|van|:)\s*)?$"
)
# "37 8" (a space typed for the decimal point), only read when a temperature is expected.
_SPLIT_DECIMAL_RE = re.compile(r"(?<![\d.,])(?:3[4-9]|4[0-3]) \d(?![\d.,])")

_MASK = "\x00"  # replaces consumed text; never matches a word or a space

# Negation before a symptom or a red flag: a negating word, then at most a few filler
# words ("no cough", "pas de toux", "I don't have a fever", "n'ai pas de fievre",
# "geen koorts meer"). A red flag may also be in the past ("fever gone", "koorts is weg").
# Anything else ("not sure if I have a fever") is read as a report: err towards urgent.
_NEGATION_WORDS = (
    "no|not|never|without|no longer|no more|don'?t|didn'?t|doesn'?t|haven'?t|hasn'?t|"
    "isn'?t|wasn'?t|aren'?t|geen|niet|nooit|zonder|sans|pas|plus|aucune?|jamais|ni"
)
_NEGATION_FILLER = (
    "i|have|had|has|got|get|any|a|an|feel|feeling|felt|been|being|having|sign|signs|of|"
    "more|longer|de|d|du|la|le|les|un|une|het|een|meer|enige|enig|last|van|ik|heb|voel|"
    "me|je|ai|sens|suis|plus|ever|really|at|all"
)
_NEGATION_BEFORE = re.compile(
    rf"(?:^|[^\w'])(?:{_NEGATION_WORDS})(?:[\s']+(?:{_NEGATION_FILLER})){{0,4}}[\s']*$"
)
_FLAG_PAST_AFTER = re.compile(
    r"(?:[\s,]+(?:is|has|have|was|had|est|s'est|zijn|ben|are))?"
    r"(?:[\s,]+(?:now|all|completely|since|maintenant|nu|helemaal|inmiddels|al|alweer|bien))?"
    r"[\s,]+(?:gone|over|passed|went away|gone away|gone down|disappeared|resolved|finished|"
    r"partie?s?|passee?s?|disparue?s?|tombee?s?|terminee?s?|finie?s?|weg|voorbij|"
    r"verdwenen|gezakt|gedaald)(?![^\W_])"
)


def _negation_before(masked: str, start: int) -> re.Match[str] | None:
    """The negation ("no", "I don't have a", "pas de", "geen") just before ``start``."""
    return _NEGATION_BEFORE.search(masked, max(0, start - _LOOKBACK), start)


@cache
def _red_flag_patterns() -> tuple[tuple[str, re.Pattern[str]], ...]:
    """(flag id, compiled phrases) for each red flag, built on first use."""
    return tuple((f.id, _phrase_re(f.all_phrases())) for f in load_red_flags().flags)


def _red_flags_in(masked: str) -> tuple[set[str], set[str], list[tuple[int, int]]]:
    """(red flags reported, red flags negated, spans to mask) in the masked text."""
    found: set[str] = set()
    negated: set[str] = set()
    spans: list[tuple[int, int]] = []
    for flag_id, pattern in _red_flag_patterns():
        for m in pattern.finditer(masked):
            before = _negation_before(masked, m.start())
            after = _FLAG_PAST_AFTER.match(masked, m.end())
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
def _normalise(text: str) -> str:
    """Fold the text so that "37,8 °C", "３７，８℃" and "Essoufflé" compare simply."""
    # NFKC turns the masculine ordinal into "o", so map look-alike degree signs first.
    text = text.replace("º", "°").replace("˚", "°").replace("\u066b", ".")
    text = unicodedata.normalize("NFKC", text)
    chars = []
    for ch in text:
        if ch.isdecimal() and not ch.isascii():
            chars.append(str(unicodedata.decimal(ch)))  # Arabic-Indic, Devanagari... digits
        elif unicodedata.category(ch) in {"Cc", "Cf", "Zl", "Zp", "Zs"}:
            chars.append(" ")  # control characters, zero-width joiners, NBSP
        else:
            chars.append(ch)
    text = "".join(chars).casefold()
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return re.sub(r"\s+", " ", text).strip()


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


def _is_time_or_count(masked: str, start: int, end: int, value: str) -> re.Match[str] | bool:
    """A match for "3 days"/"100%"/"40 mg", True for "at 8": numbers that are not answers."""
    after = _DURATION_AFTER_RE.match(masked, end)
    if after:
        return after
    # Only small integers can be hours; "temp at 38.2" must stay a temperature.
    return (
        value.isdigit()
        and int(value) <= 24
        and bool(_TIME_PREP_BEFORE_RE.search(masked, max(0, start - _LOOKBACK), start))
    )


def _read_number(masked: str, match: re.Match[str]) -> _Temperature | None:
    """Read a number as a temperature reading, or None when it is a list ("2,3,5")."""
    raw = match.group()
    if len(re.findall(r"[.,]", raw)) > 1 or len(raw) > 12:
        return None
    unit_match = _UNIT_RE.match(masked, match.end())
    unit_raw = unit_match.group("unit") if unit_match else None
    unit = None if unit_raw is None else ("F" if unit_raw.startswith("f") else "C")
    marked = bool(unit_match and (unit_match.group("deg") or unit_match.group("word") or unit))
    value = Decimal(raw.replace(",", "."))
    celsius, resolved_unit, inferred = _to_celsius(value, unit)
    end = unit_match.end() if unit_match and marked else match.end()
    temp_word_before = bool(
        _TEMP_WORD_BEFORE_RE.search(masked, max(0, match.start() - _LOOKBACK), match.start())
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
def parse_reply(text: str, expecting: Expecting | None = None) -> ParsedReply:
    """Read one SMS reply. Never raises; see the module docstring for the rules.

    ``expecting`` is what our last message asked for; it decides how bare
    numbers are read ("2 3" is a menu answer only when SYMPTOMS is expected,
    "12" is an implausible temperature only when TEMPERATURE is expected) and
    what YES means. Pass None when no question is outstanding.
    """
    try:
        return _parse(text if isinstance(text, str) else str(text), expecting)
    except Exception:  # pragma: no cover - an inbound SMS must never crash the webhook
        # The hypothesis test calls _parse directly, so this net cannot hide bugs.
        return ParsedReply(intent=Intent.UNKNOWN, has_free_text=True)


def _numbers(
    masked: str, expecting: Expecting | None
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
        skip = _is_time_or_count(masked, m.start(), m.end(), raw)
        if skip:
            spans.append((m.start(), skip.end() if isinstance(skip, re.Match) else m.end()))
            continue
        reading = _read_number(masked, m)
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
        if split and not _DURATION_AFTER_RE.match(masked, split.end()):
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


def _parse(text: str, expecting: Expecting | None) -> ParsedReply:
    normalised = _normalise(text)
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
    red_flags, negated_flags, flag_spans = _red_flags_in(masked)
    if negated_flags:
        categories.add("none")

    # 1. Phrases that look like symptoms but are not ("blood test"): the team sees them.
    spans = [m.span() for m in _NOT_SYMPTOM_RE.finditer(masked)]
    free_text = bool(spans)
    masked = _mask_spans(masked, spans)

    # 2. Times of day ("8:30", "8pm") are neither temperatures nor menu numbers.
    masked = _mask_spans(masked, [m.span() for m in _TIME_RE.finditer(masked)])

    # 3. Numbers.
    plausible, implausible, menu, zero, leftover, spans = _numbers(masked, expecting)
    masked = _mask_spans(masked, spans)
    if zero:
        categories.add("none")
    if leftover:
        free_text = True

    # 4. "Nothing wrong" phrases, before symptoms so that "no symptoms" is not a negation.
    spans = [m.span() for m in _NONE_PHRASE_RE.finditer(masked)]
    if spans:
        categories.add("none")
    masked = _mask_spans(masked, spans)

    # 5. Symptom words, each possibly negated by the words just before it.
    symptoms: set[str] = set()
    negated: set[str] = set()
    for code, pattern in _SYMPTOM_RES.items():
        spans = []
        for m in pattern.finditer(masked):
            neg = _negation_before(masked, m.start())
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
    masked = _mask_spans(masked, [m.span() for m in _TEMP_WORD_RE.finditer(masked)])

    # 6. What is left: short answers, filler, or words we do not understand.
    for token in _TOKEN_RE.findall(masked):
        category = next((n for n, words in _TOKEN_CATEGORIES.items() if token in words), None)
        if category:
            categories.add(category)
        elif token not in _FILLER:
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
        if "neg" in categories:
            return Intent.NO  # "not taken", "pas encore pris", "nog niet genomen"
        return Intent.TAKEN if categories <= {"taken", "yes"} else Intent.UNKNOWN
    if categories and categories <= {"yes"}:
        return Intent.TAKEN if expecting == Expecting.CONFIRMATION else Intent.YES
    if categories and categories <= {"no", "neg"}:
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
