"""Which language a text is written in, told by the parser's own words (en, fr, nl).

For an SMS from a number the companion does not know (``reminders.unknown_senders``):
we know nothing of the sender, so the answer's language is read from their words. The
words are the reply parser's, one file per language (``vocabulary/{en,fr,nl}.toml``:
symptoms, temperature and "nothing wrong" phrases, negations, answer and filler words)
and the red flags' phrases per language (``red_flags.toml``): whatever a translator adds
there for the parser also tells the language here, and no second word list exists.

:func:`language_scores` counts, for each language, the words and phrases of its files
the text holds; :func:`language_of_words` names the language that scores strictly more
than every other, or None (no word known, or a tie: "ok 39" is every language's).
A word two languages share ("de" is French and Dutch filler) counts for both, so it
tells neither apart. The parser itself is untouched: it reads every language on every
reply and never needs to know which one was used.

:func:`unknown_sender_languages` decides the answer's language(s): the words' language
when they tell one, else the sender's country's (:data:`COUNTRY_LANGUAGES`), else English
(the function says which words count for which numbers).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from reminders.core.clinical_rules import LANGUAGES
from reminders.core.parser_vocabulary import LanguageVocabulary, load_vocabulary, normalise
from reminders.core.red_flags import load_red_flags

__all__ = [
    "COUNTRY_LANGUAGES",
    "language_of_words",
    "language_scores",
    "unknown_sender_languages",
]

#: The languages a sender's country (ISO 3166 code, from their number) is answered in
#: when their words tell none; any other country (or none known) is answered in English.
#: Belgium has two: a French-speaking patient must not get a Dutch-only answer, nor the
#: reverse, so both (the ``unknown_sender_reply_bilingual`` template, two segments).
#: Luxembourg's patients are answered in French, the one of its languages we have.
COUNTRY_LANGUAGES: dict[str, tuple[str, ...]] = {
    "BE": ("fr", "nl"),
    "FR": ("fr",),
    "LU": ("fr",),
    "NL": ("nl",),
}

#: The languages of the countries of ``COUNTRY_LANGUAGES``, each once.
_LOCAL_LANGUAGES = tuple(
    dict.fromkeys(lang for langs in COUNTRY_LANGUAGES.values() for lang in langs)
)

# A word of the text as the parser cuts replies into words (letters, inner apostrophes).
_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


def _fragments(vocabulary: LanguageVocabulary) -> list[str]:
    """The regular-expression fragments of one language's file that are its own words.

    Left out: duration units, time prepositions and time-of-day marks ("x", "h", "a",
    "mg") and temperature joiners ("de", "est"): one or two letters that other
    languages' texts hold as well, and numbers' companions rather than words; and the
    words of a sign gone ("over", "weg"), everyday words of other languages too (the
    Dutch "over" is "about").
    """
    phrases = vocabulary.phrases
    found = [fragment for fragments in vocabulary.symptoms.values() for fragment in fragments]
    found += [*phrases.temperature_words, *phrases.degree_words, *phrases.not_symptoms]
    found += [*phrases.nothing_wrong, *vocabulary.negation.words]
    return found


@cache
def _patterns() -> dict[str, tuple[re.Pattern[str], frozenset[str]]]:
    """Per language: one pattern of its phrases, and the set of its plain words."""
    vocabulary = load_vocabulary()
    flags = load_red_flags().flags
    found: dict[str, tuple[re.Pattern[str], frozenset[str]]] = {}
    for language, words in vocabulary.languages:
        fragments = _fragments(words) + [p for flag in flags for p in flag.phrases[language]]
        # As the parser reads them: a space matches spaces or hyphens, longest first,
        # and a match starts and ends at a word's edge.
        alternation = "|".join(
            "(?:" + fragment.replace(" ?", r"[\s-]*").replace(" ", r"[\s-]+") + ")"
            for fragment in sorted(set(fragments), key=len, reverse=True)
        )
        pattern = re.compile(rf"(?<![^\W_])(?:{alternation})(?![^\W_])")
        answers = words.words
        plain = frozenset(
            (
                *answers.yes,
                *answers.no,
                *answers.none,
                *answers.taken,
                *answers.negative,
                *answers.filler,
            )
        )
        found[language] = (pattern, plain)
    return found


def language_scores(text: str) -> dict[str, int]:
    """How many of each language's words and phrases ``text`` holds, by language.

    Each phrase found counts once per place it is found; each word of the text that is
    one of the language's plain words counts once per time it is written.
    """
    folded = normalise(text)
    words = _WORD_RE.findall(folded)
    scores = {}
    for language, (pattern, plain) in _patterns().items():
        phrases = sum(1 for _ in pattern.finditer(folded))
        scores[language] = phrases + sum(word in plain for word in words)
    return scores


def language_of_words(text: str, among: Iterable[str] = LANGUAGES) -> str | None:
    """The language of ``among`` whose words ``text`` holds strictly most of, else None."""
    scores = language_scores(text)
    ranked = sorted(((scores[lang], lang) for lang in among), reverse=True)
    if not ranked or ranked[0][0] == 0 or (len(ranked) > 1 and ranked[1][0] == ranked[0][0]):
        return None
    return ranked[0][1]


def unknown_sender_languages(country: str | None, text: str) -> tuple[str, ...]:
    """The language(s) to answer an unknown number in: one, or French and Dutch.

    ``country`` is the ISO 3166 code of the sender's number (None: not known). The
    language of the words (:func:`language_of_words`, among all) when they tell one;
    but a number of a country of :data:`COUNTRY_LANGUAGES` only in one of those
    countries' languages: a Belgian's "she is confused" or "pouvez-vous me rappeler"
    (English's "me") gets the country's languages, not English. Otherwise the
    languages of the number's country; otherwise English.
    """
    own = COUNTRY_LANGUAGES.get((country or "").upper())
    told = language_of_words(text)
    if told is not None and (own is None or told in _LOCAL_LANGUAGES):
        return (told,)
    return own or ("en",)
