"""The reply parser's word files: validated on load, the same keys in every language, live.

Broken files are written to ``tmp_path`` (a copy of ``reminders/core/vocabulary`` with one
edit) and loaded through the same function the parser uses; words added to such a copy
are read by ``parse_reply(..., vocabulary=copy)``, as a translator would try them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reminders.core.clinical_rules import LANGUAGES
from reminders.core.parser import SYMPTOM_CODES, Expecting, Intent, parse_reply
from reminders.core.parser_vocabulary import (
    ANSWER_WORDS,
    VOCABULARY_DIR,
    VocabularyError,
    load_vocabulary,
    normalise,
)

S, C, YN = Expecting.SYMPTOMS, Expecting.CONFIRMATION, Expecting.YES_NO


def copy_with(tmp_path: Path, *edits: tuple[str, str, str]) -> Path:
    """A copy of the vocabulary directory with each (file, old text, new text) applied once."""
    directory = tmp_path / "vocabulary"
    shutil.copytree(VOCABULARY_DIR, directory)
    for name, old, new in edits:
        path = directory / name
        text = path.read_text(encoding="utf-8")
        assert old in text, f"{old!r} is not in {name}: the test no longer edits anything"
        path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return directory


def sections(lang: str) -> dict[str, set[str]]:
    """Each section of one language's file and its keys."""
    data = dict(load_vocabulary().languages)[lang].model_dump()
    return {section: set(keys) for section, keys in data.items()}


# --------------------------------------------------------------------------- the shipped files
def test_every_language_has_a_file_with_every_key_and_no_empty_list() -> None:
    assert sorted(p.stem for p in VOCABULARY_DIR.glob("*.toml")) == sorted(LANGUAGES)
    vocabulary = load_vocabulary()
    assert [lang for lang, _ in vocabulary.languages] == list(LANGUAGES)
    reference = sections(LANGUAGES[0])
    assert reference["symptoms"] == SYMPTOM_CODES
    assert set(reference) == {"symptoms", "phrases", "words", "negation", "past"}
    for lang, file in vocabulary.languages:
        assert sections(lang) == reference, lang
        for section, keys in file.model_dump().items():
            for key, entries in keys.items():
                assert entries, (lang, section, key)
                assert len(set(entries)) == len(entries), (lang, section, key)
                assert all(normalise(e) == e for e in entries), (lang, section, key)


def test_the_default_vocabulary_is_read_once() -> None:
    assert load_vocabulary() is load_vocabulary()


def test_importing_the_parser_reads_no_word_file() -> None:
    # Nothing at import time: the files are read and compiled on the first reply.
    program = (
        "from reminders.core import parser, parser_vocabulary\n"
        "before = parser._grammar.cache_info().currsize, parser_vocabulary._default.cache_info().currsize\n"
        "parser.parse_reply('38.5')\n"
        "after = parser._grammar.cache_info().currsize, parser_vocabulary._default.cache_info().currsize\n"
        "print(before, after)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "(0, 0) (1, 1)"


@pytest.mark.parametrize(
    ("key", "expecting", "intent"),
    [
        ("yes", YN, Intent.YES),
        ("no", YN, Intent.NO),
        ("none", S, Intent.NO_SYMPTOMS),
        ("taken", C, Intent.TAKEN),
        ("negative", YN, Intent.NO),
    ],
)
def test_every_answer_word_of_every_language_is_read_as_its_answer(
    key: str, expecting: Expecting, intent: Intent
) -> None:
    words = load_vocabulary().words(key)
    assert key in ANSWER_WORDS and words
    wrong = sorted(w for w in words if parse_reply(w, expecting).intent is not intent)
    assert wrong == []


def test_every_filler_word_leaves_an_answer_as_it_is() -> None:
    filler = load_vocabulary().words("filler")
    changed = sorted(w for w in filler if parse_reply(f"{w} oui", YN).intent is not Intent.YES)
    assert changed == []
    assert parse_reply("oui", YN).intent is Intent.YES


def test_hyphens_join_phrases_but_never_a_negation() -> None:
    # [phrases]: a space matches a hyphen. [negation]: a space is one space, so a
    # hyphenated negation is not trusted and the red flag is reported (the safe side).
    assert parse_reply("short-of-breath", S).symptoms == {"breathing"}
    assert parse_reply("no longer feverish", S).negated_red_flags == {"fever"}
    hyphenated = parse_reply("no-longer feverish", S)
    assert hyphenated.red_flags == {"fever"} and hyphenated.intent is Intent.SYMPTOMS


# --------------------------------------------------------------------------- broken files
@pytest.mark.parametrize(
    ("edit", "message"),
    [
        pytest.param(
            (
                "fr.toml",
                'nothing_wrong = [\n    "rien a signaler",',
                'nothing_wrong_ = [\n    "x",',
            ),
            "fr.toml: phrases.nothing_wrong: Field required",
            id="missing key",
        ),
        pytest.param(
            ("nl.toml", 'yes = ["ja", "jawel", "jep"]', 'yes = ["ja", "jawel", "ja"]'),
            "nl.toml: words.yes: Value error, 'ja' is listed twice",
            id="duplicate",
        ),
        pytest.param(
            (
                "en.toml",
                "time_of_day = [\"am\", \"pm\", 'a\\.m\\.', 'p\\.m\\.']",
                "time_of_day = []",
            ),
            "en.toml: phrases.time_of_day: Tuple should have at least 1 item",
            id="empty list",
        ),
        pytest.param(
            ("fr.toml", '    "toux",', '    "toux",\n    "fièvre légère",'),
            "fr.toml: symptoms.breathing: Value error, 'fièvre légère' must be written as"
            " replies are read: 'fievre legere'",
            id="accents",
        ),
        pytest.param(
            ("nl.toml", '    "zwak",', '    "Zwak",'),
            "nl.toml: symptoms.tired: Value error, 'Zwak' must be written as replies are read",
            id="capital",
        ),
        pytest.param(
            (
                "en.toml",
                'degree_words = ["degrees?", "deg"]',
                'degree_words = ["degrees?", "deg"]\ncolour = ["red"]',
            ),
            "en.toml: phrases.colour: Extra inputs are not permitted",
            id="unknown key",
        ),
        pytest.param(
            ("en.toml", '    "hives",', '    "hives (all over",'),
            "en.toml: symptoms.rash: Value error, 'hives (all over' is not a valid regular expression",
            id="bad regular expression",
        ),
        pytest.param(
            (
                "nl.toml",
                'words = ["geen", "niet", "nooit", "zonder"]',
                'words = ["geen", "niet", "nooit", "(zonder)?"]',
            ),
            "nl.toml: negation.words: Value error, '(zonder)?' matches an empty text",
            id="matches nothing",
        ),
        pytest.param(
            ("en.toml", '"and", "also",', '"and", "&", "also",'),
            "en.toml: words.filler: Value error, '&' is not a word",
            id="not a word",
        ),
        pytest.param(
            ("nl.toml", 'jaundice = [\n    "geelzucht",', 'yellow = [\n    "geelzucht",'),
            "nl.toml: symptoms: not the keys of en.toml; missing jaundice; unknown yellow",
            id="symptom renamed in one language",
        ),
        pytest.param(
            ("fr.toml", '    "non",', '    "non",\n    "ja",'),
            "nl.toml: words.yes: 'ja' is already words.no in fr.toml",
            id="yes in one language, no in another",
        ),
        pytest.param(
            ("fr.toml", '"ne", "n\'en",', '"ne", "n", "n\'en",'),
            "fr.toml: words.filler: 'n' is words.no in en.toml (an answer is never filler)",
            id="answer listed as filler",
        ),
    ],
)
def test_a_broken_file_is_refused_naming_the_file_and_the_key(
    tmp_path: Path, edit: tuple[str, str, str], message: str
) -> None:
    directory = copy_with(tmp_path, edit)
    with pytest.raises(VocabularyError) as info:
        load_vocabulary(directory)
    assert message in str(info.value)


def test_a_missing_or_unknown_language_file_is_refused(tmp_path: Path) -> None:
    directory = copy_with(tmp_path)
    (directory / "nl.toml").unlink()
    with pytest.raises(VocabularyError, match=r"^nl\.toml: .*No such file"):
        load_vocabulary(directory)
    shutil.copy(VOCABULARY_DIR / "nl.toml", directory / "nl.toml")
    shutil.copy(VOCABULARY_DIR / "nl.toml", directory / "de.toml")
    with pytest.raises(VocabularyError, match=r"^de\.toml: not a language of the application"):
        load_vocabulary(directory)


def test_symptom_keys_that_are_not_the_menu_codes_are_refused_by_the_parser(
    tmp_path: Path,
) -> None:
    # Renamed in every file alike: the files agree, but the parser has no such menu code.
    renamed = ((f"{lang}.toml", "\njaundice = [", "\nyellow = [") for lang in LANGUAGES)
    directory = copy_with(tmp_path, *renamed)
    with pytest.raises(VocabularyError, match=r"en\.toml: symptoms: .*missing \['jaundice'\]"):
        parse_reply("geel", S, vocabulary=directory)


def test_a_broken_file_is_not_hidden_behind_unknown_replies(tmp_path: Path) -> None:
    # parse_reply never raises for a patient's text, but a broken word file must not
    # quietly turn every reply (and every fever) into "unknown".
    directory = copy_with(tmp_path, ("nl.toml", '"ja", "jawel", "jep"', '"ja", "jawel", "ja"'))
    with pytest.raises(VocabularyError, match="'ja' is listed twice"):
        parse_reply("39.2", Expecting.TEMPERATURE, vocabulary=directory)


# --------------------------------------------------------------------------- translators' words
def test_words_added_to_a_copy_of_the_files_are_read_by_the_parser(tmp_path: Path) -> None:
    # Three edits a Dutch and a French translator might make: "kuch" (a small cough), the
    # filler "beaucoup" ("merci beaucoup"), and "enkele" after a negation ("geen enkele").
    before = (
        parse_reply("kuch", S),
        parse_reply("Pris, merci beaucoup", C),
        parse_reply("geen enkele hoest", S),
    )
    assert before[0].intent is Intent.UNKNOWN and before[0].has_free_text
    assert before[1].intent is Intent.UNKNOWN
    assert before[2].symptoms == {"breathing"}
    directory = copy_with(
        tmp_path,
        ("nl.toml", '    "hoest(en|te)?",', '    "hoest(en|te)?",\n    "kuch(en|t)?",'),
        ("fr.toml", '    "tres", "peu",', '    "tres", "peu", "beaucoup",'),
        ("nl.toml", 'filler = ["het", "een", "meer",', 'filler = ["het", "een", "meer", "enkele",'),
    )
    cough = parse_reply("Ik moet steeds kuchen", S, vocabulary=directory)
    assert cough.intent is Intent.SYMPTOMS and cough.symptoms == {"breathing"}
    assert parse_reply("Pris, merci beaucoup", C, vocabulary=directory).intent is Intent.TAKEN
    negated = parse_reply("geen enkele hoest", S, vocabulary=directory)
    assert negated.intent is Intent.NO_SYMPTOMS and negated.negated_symptoms == {"breathing"}
    # The shipped files are untouched and still read as before.
    assert parse_reply("kuch", S) == before[0]
    assert parse_reply("geen enkele hoest", S) == before[2]


def test_a_translator_can_write_accented_words_once_normalised(tmp_path: Path) -> None:
    # The refusal says what to write; written that way, the accented reply is read.
    directory = copy_with(tmp_path, ("fr.toml", '    "toux",', '    "toux",\n    "gorge irritee",'))
    reply = parse_reply("J'ai la gorge irritée", S, vocabulary=directory)
    assert reply.symptoms == {"breathing"} and not reply.has_free_text
