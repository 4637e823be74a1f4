"""Plain language: every English page reads at US school grade 7 or below."""

from __future__ import annotations

import pytest

from backend.infosite import load_site
from backend.infosite.build import CONTENT_DIR
from backend.infosite.markdown import sentences_text, text_blocks
from tests.site.readability import flesch_kincaid_grade

MAX_GRADE = 7.0
# Read at collection time so that each page is a test of its own in the report.
ENGLISH_PAGES = sorted(p.rel for p in load_site(CONTENT_DIR).pages if p.language == "en")


def page_text(rel: str) -> str:
    """What a reader reads: no front matter, no markup, shortcodes filled in."""
    page = next(p for p in load_site(CONTENT_DIR).pages if p.rel == rel)
    return sentences_text(text_blocks(page.tokens, page.values))


@pytest.mark.usefixtures("cmudict_ready")
@pytest.mark.parametrize("rel", ENGLISH_PAGES)
def test_english_page_reads_at_grade_7_or_below(rel: str) -> None:
    text = page_text(rel)
    assert len(text.split()) > 100, f"{rel} is too short to measure"
    grade = flesch_kincaid_grade(text)
    assert grade <= MAX_GRADE, f"{rel} reads at grade {grade:.1f} (limit {MAX_GRADE})"


def test_text_has_no_markup_or_front_matter() -> None:
    text = page_text("en/fever.md")
    for leftover in ("---", "title:", "[[", "{{", "](", "::: ", "**", "|"):
        assert leftover not in text
    assert text.startswith("A temperature of")


@pytest.mark.usefixtures("cmudict_ready")
def test_the_measure_tells_hard_text_from_plain_text() -> None:
    """Guards the guard: the offline syllable dictionary must really be in use."""
    plain = "Call us if you feel hot. Take your pills each day. Ask us if you are not sure."
    hard = (
        "Prophylactic administration of trimethoprim-sulfamethoxazole necessitates "
        "continuation until immunological reconstitution, characterised by lymphocyte "
        "subpopulation normalisation, is documented."
    )
    assert flesch_kincaid_grade(plain) < 3 < 15 < flesch_kincaid_grade(hard)
