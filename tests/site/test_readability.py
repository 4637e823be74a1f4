"""Plain language in every language, measured on the text a reader sees.

- English pages: Flesch-Kincaid grade 6 or below and SMOG 9 or below.
- French pages: Kandel-Moles reading ease 70 or more.
- Dutch pages: Flesch-Douma reading ease 70 or more.

Each page is a test of its own; the gates apply to every page that exists in
the language, and to the words of the home page the builder writes for a
language that has none yet.
"""

from __future__ import annotations

import tomllib

import pytest

from backend.infosite import load_site
from backend.infosite.build import CONTENT_DIR, SITE_DIR
from backend.infosite.markdown import sentences_text, text_blocks
from tests.site.readability import flesch_kincaid_grade, reading_ease, smog_index

MAX_GRADE = 6.0
MAX_SMOG = 9.0
MIN_READING_EASE = 70.0
# A page shorter than this is too short to measure.
MIN_WORDS = 100
# Read at collection time so that each page is a test of its own in the report.
PAGES = load_site(CONTENT_DIR).pages
ENGLISH_PAGES = sorted(p.rel for p in PAGES if p.language == "en")
TRANSLATED_PAGES = sorted((p.language, p.rel) for p in PAGES if p.language != "en")


def page_text(rel: str) -> str:
    """What a reader reads: no front matter, no markup, shortcodes filled in."""
    page = next(p for p in load_site(CONTENT_DIR).pages if p.rel == rel)
    text = sentences_text(text_blocks(page.tokens, page.values))
    assert len(text.split()) > MIN_WORDS, f"{rel} is too short to measure"
    return text


@pytest.mark.usefixtures("cmudict_ready")
@pytest.mark.parametrize("rel", ENGLISH_PAGES)
def test_english_page_reads_at_grade_6_or_below(rel: str) -> None:
    text = page_text(rel)
    grade, smog = flesch_kincaid_grade(text), smog_index(text)
    assert grade <= MAX_GRADE and smog <= MAX_SMOG, (
        f"{rel}: Flesch-Kincaid grade {grade:.1f} (limit {MAX_GRADE}), "
        f"SMOG {smog:.1f} (limit {MAX_SMOG})"
    )


@pytest.mark.parametrize(("language", "rel"), TRANSLATED_PAGES)
def test_french_and_dutch_pages_read_easily(language: str, rel: str) -> None:
    ease = reading_ease(page_text(rel), language)
    assert ease >= MIN_READING_EASE, (
        f"{rel}: reading ease {ease:.1f} in {language} (at least {MIN_READING_EASE})"
    )


@pytest.mark.parametrize("language", ["fr", "nl"])
def test_generated_home_pages_read_easily(language: str) -> None:
    with (SITE_DIR / "strings.toml").open("rb") as fh:
        words = tomllib.load(fh)[language]
    text = sentences_text([words["home_summary"], words["home_intro"]])
    assert reading_ease(text, language) >= MIN_READING_EASE


def test_text_has_no_markup_or_front_matter() -> None:
    text = page_text("en/fever.md")
    for leftover in ("---", "title:", "[[", "{{", "](", "::: ", "**", "|"):
        assert leftover not in text
    assert text.startswith("A temperature of")


@pytest.mark.usefixtures("cmudict_ready")
def test_the_measures_tell_hard_text_from_plain_text() -> None:
    """Guards the guard: the offline syllable dictionaries must really be in use."""
    plain = "Call us if you feel hot. Take your pills each day. Ask us if you are not sure."
    hard = (
        "Prophylactic administration of trimethoprim-sulfamethoxazole necessitates "
        "continuation until immunological reconstitution, characterised by lymphocyte "
        "subpopulation normalisation, is documented."
    )
    assert flesch_kincaid_grade(plain) < 3 < 15 < flesch_kincaid_grade(hard)
    assert smog_index(plain) < 6 < 15 < smog_index(hard)
    french = (
        "Appelez-nous si vous avez chaud. Prenez vos pilules chaque jour.",
        "L'administration prophylactique du triméthoprime-sulfaméthoxazole nécessite "
        "une continuation jusqu'à la reconstitution immunologique documentée.",
    )
    dutch = (
        "Bel ons als u het warm hebt. Neem elke dag uw pillen.",
        "De profylactische toediening van trimethoprim-sulfamethoxazol vereist "
        "voortzetting tot de immunologische reconstitutie gedocumenteerd is.",
    )
    for language, (easy, difficult) in (("fr", french), ("nl", dutch)):
        assert reading_ease(difficult, language) < MIN_READING_EASE <= reading_ease(easy, language)
