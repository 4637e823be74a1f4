"""The reply parser's words, one data file per language: ``vocabulary/{en,fr,nl}.toml``.

Translators edit the files; the grammar (how the words combine, what negates what, the
order things are read in) stays in ``reminders/core/parser.py``. ``load_vocabulary()``
validates every file as it reads it and raises ``VocabularyError`` naming the file and
the key for: a missing or unknown key, an empty list, an entry listed twice under one
key, an entry not written the way replies are normalised (lower case, no accents,
straight apostrophes: see ``normalise``), a regular expression that does not compile or
that matches an empty reply (it would read every reply as that word), a word of
``[words]`` that is not a plain word, a symptom list one language has and another lacks,
and a word that is two different answers (yes in one file, no in another).

Every language is read on every reply (patients mix languages): the parser asks for
the entries of one key in all languages at once (``Vocabulary.entries``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from reminders.core.clinical_rules import LANGUAGES
from reminders.core.datafiles import load_validated

__all__ = [
    "ANSWER_WORDS",
    "VOCABULARY_DIR",
    "LanguageVocabulary",
    "Vocabulary",
    "VocabularyError",
    "load_vocabulary",
    "normalise",
]

VOCABULARY_DIR = Path(__file__).with_name("vocabulary")

#: The keys of ``[words]`` that are answers, in the order the parser tries them.
ANSWER_WORDS = ("yes", "no", "none", "taken", "negative")

# The shape of a word as the parser cuts a reply into words (letters, inner apostrophes).
_WORD_RE = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)*")


class VocabularyError(ValueError):
    """A vocabulary file is invalid; the message names the file and the key."""


def normalise(text: str) -> str:
    """Fold text so that "37,8 °C", "３７，８℃" and "Essoufflé" compare simply.

    Replies are read, and vocabulary entries written, in this form: NFKC, case-folded,
    accents removed, curly apostrophes straightened, single spaces.
    """
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


def _written_as_read(entries: tuple[str, ...]) -> None:
    seen: set[str] = set()
    for entry in entries:
        if normalise(entry) != entry:
            raise ValueError(f"{entry!r} must be written as replies are read: {normalise(entry)!r}")
        if entry in seen:
            raise ValueError(f"{entry!r} is listed twice")
        seen.add(entry)


def _fragments(entries: tuple[str, ...]) -> tuple[str, ...]:
    _written_as_read(entries)
    for entry in entries:
        try:
            pattern = re.compile(entry)
        except re.error as exc:
            raise ValueError(f"{entry!r} is not a valid regular expression ({exc})") from None
        if pattern.fullmatch(""):
            raise ValueError(f"{entry!r} matches an empty text: every reply would hold it")
    return entries


def _plain_words(entries: tuple[str, ...]) -> tuple[str, ...]:
    _written_as_read(entries)
    for entry in entries:
        if not _WORD_RE.fullmatch(entry):
            raise ValueError(f"{entry!r} is not a word (letters and apostrophes only)")
    return entries


# Regular-expression fragments / plain words, at least one per key.
Fragments = Annotated[tuple[str, ...], Field(min_length=1), AfterValidator(_fragments)]
Words = Annotated[tuple[str, ...], Field(min_length=1), AfterValidator(_plain_words)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Phrases(_Section):
    """``[phrases]``: fragments, longest tried first; a space matches spaces or hyphens."""

    temperature_words: Fragments
    temperature_joiners: Fragments
    degree_words: Fragments
    not_symptoms: Fragments
    nothing_wrong: Fragments
    duration_units: Fragments
    time_prepositions: Fragments
    time_of_day: Fragments


class AnswerWords(_Section):
    """``[words]``: plain words compared with the words left over in a reply."""

    yes: Words
    no: Words
    none: Words
    taken: Words
    negative: Words
    filler: Words


class Negation(_Section):
    """``[negation]``: fragments tried in the order written; a space is one space."""

    words: Fragments
    filler: Fragments


class Past(_Section):
    """``[past]``: fragments tried in the order written; a space is one space."""

    auxiliaries: Fragments
    adverbs: Fragments
    gone: Fragments


class LanguageVocabulary(_Section):
    """One language's file, validated."""

    symptoms: dict[Annotated[str, Field(pattern=r"^[a-z_]+$")], Fragments] = Field(min_length=1)
    phrases: Phrases
    words: AnswerWords
    negation: Negation
    past: Past


@dataclass(frozen=True)
class Vocabulary:
    """Every language's file, in the order of ``LANGUAGES``."""

    directory: Path
    languages: tuple[tuple[str, LanguageVocabulary], ...]

    def entries(self, section: str, key: str) -> tuple[str, ...]:
        """The entries of ``[section] key`` in every language, in file order, each once."""
        return tuple(
            dict.fromkeys(e for _, lang in self.languages for e in _key(lang, section, key))
        )

    def words(self, key: str) -> frozenset[str]:
        """The ``[words]`` entries of ``key`` in every language."""
        return frozenset(self.entries("words", key))

    def symptom_codes(self) -> tuple[str, ...]:
        """The symptom codes the files define (every file defines the same ones)."""
        return tuple(self.languages[0][1].symptoms)


def _key(lang: LanguageVocabulary, section: str, key: str) -> tuple[str, ...]:
    if section == "symptoms":
        return lang.symptoms[key]
    return getattr(getattr(lang, section), key)


def load_vocabulary(directory: Path | str | None = None) -> Vocabulary:
    """Load and validate ``<directory>/<language>.toml`` for every language.

    The default directory, ``reminders/core/vocabulary``, is read once (cached); a
    directory passed in (a translator's copy, a test's) is read on every call.
    """
    return _default() if directory is None else _load(Path(directory))


@cache
def _default() -> Vocabulary:
    return _load(VOCABULARY_DIR)


def _load(directory: Path) -> Vocabulary:
    strays = sorted(p.name for p in directory.glob("*.toml") if p.stem not in LANGUAGES)
    if strays:
        raise VocabularyError(
            f"{strays[0]}: not a language of the application ({', '.join(LANGUAGES)});"
            " add it to LANGUAGES in reminders/core/clinical_rules.py first"
        )
    languages = tuple(
        (lang, load_validated(directory / f"{lang}.toml", LanguageVocabulary, VocabularyError, ""))
        for lang in LANGUAGES
    )
    _same_symptoms(languages)
    _one_meaning_per_answer(languages)
    return Vocabulary(directory=directory, languages=languages)


def _same_symptoms(languages: tuple[tuple[str, LanguageVocabulary], ...]) -> None:
    first, reference = languages[0][0], set(languages[0][1].symptoms)
    for lang, vocabulary in languages[1:]:
        codes = set(vocabulary.symptoms)
        if codes != reference:
            missing, extra = sorted(reference - codes), sorted(codes - reference)
            raise VocabularyError(
                f"{lang}.toml: symptoms: not the keys of {first}.toml"
                + (f"; missing {', '.join(missing)}" if missing else "")
                + (f"; unknown {', '.join(extra)}" if extra else "")
            )


def _answers(
    languages: tuple[tuple[str, LanguageVocabulary], ...],
) -> Iterator[tuple[str, str, str]]:
    for lang, vocabulary in languages:
        for key in ANSWER_WORDS:
            for word in getattr(vocabulary.words, key):
                yield lang, key, word


def _one_meaning_per_answer(languages: tuple[tuple[str, LanguageVocabulary], ...]) -> None:
    # The parser takes the first answer a word is; a word that is "yes" in one language
    # and "no" in another would silently mean whichever comes first, and an answer word
    # listed as filler would never be filler.
    meaning: dict[str, tuple[str, str]] = {}
    for lang, key, word in _answers(languages):
        first = meaning.setdefault(word, (lang, key))
        if first[1] != key:
            raise VocabularyError(
                f"{lang}.toml: words.{key}: {word!r} is already words.{first[1]} in {first[0]}.toml"
            )
    for lang, vocabulary in languages:
        for word in vocabulary.words.filler:
            if word in meaning:
                answer_lang, key = meaning[word]
                raise VocabularyError(
                    f"{lang}.toml: words.filler: {word!r} is words.{key} in {answer_lang}.toml"
                    " (an answer is never filler)"
                )
