"""One source of truth: the site quotes the urgent advice and the fever numbers
from ``reminders.core.clinical_rules``, word for word, in every language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import backend.infosite.clinical as clinical
from backend.infosite import BuildReport, Site, build_site
from backend.infosite.build import CONTENT_DIR
from reminders.core.clinical_rules import (
    LANGUAGES,
    clinical_rules,
    emergency_fallback,
    urgent_advice,
)
from reminders.core.red_flags import RedFlag, load_red_flags, site_wording
from reminders.core.regions import default_region, get_region
from reminders.core.triage import Severity, TriageContext, triage_report
from tests.site.conftest import read_built
from tests.site.html_tools import parse


def fever_pages(site: Site) -> dict[str, str]:
    """Output path of the fever page in each language."""
    return {p.language: p.output for p in site.pages if p.translation_key == "fever"}


@pytest.mark.parametrize("language", LANGUAGES)
def test_fever_page_quotes_the_urgent_advice_word_for_word(
    built: BuildReport, site: Site, language: str
) -> None:
    facts = parse(read_built(built, fever_pages(site)[language]))
    advice = urgent_advice(language)
    # In the page's own urgent box (from the placeholder) ...
    assert advice in facts.text_by_class["advice-urgent-advice"]
    # ... and in the banner every page carries.
    assert advice in facts.text_by_class["urgent-banner"][0]
    assert emergency_fallback(language) in facts.text_by_class["advice-emergency-fallback"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_advice_numbers_match_the_fever_rule(language: str) -> None:
    """The advice writes the rule's threshold: Celsius alone in Belgium, Fahrenheit first in the US."""
    fever = clinical_rules().fever
    belgian = urgent_advice(language, get_region("BE"))
    american = urgent_advice(language, get_region("US"))
    celsius = re.search(r"(\d+[.,]\d+)\s*C\b", belgian)
    assert celsius and not re.search(r"\bF\b", belgian), belgian
    assert float(celsius.group(1).replace(",", ".")) == fever.threshold_c
    fahrenheit = re.search(r"(\d+[.,]\d+)\s*F \((\d+[.,]\d+)\s*C\)", american)
    assert fahrenheit, american
    assert float(fahrenheit.group(1).replace(",", ".")) == fever.threshold_f
    assert float(fahrenheit.group(2).replace(",", ".")) == fever.threshold_c
    # The Fahrenheit figure is the Celsius one converted, to one decimal.
    assert round(fever.threshold_c * 9 / 5 + 32, 1) == fever.threshold_f


@pytest.mark.parametrize("language", LANGUAGES)
def test_fever_page_numbers_come_from_the_rule(
    built: BuildReport, site: Site, language: str
) -> None:
    """The site is written for the default region (Belgium): 38,0 C, no Fahrenheit, 112."""
    text = parse(read_built(built, fever_pages(site)[language])).text
    fever = clinical_rules().fever
    region = default_region()
    assert region.temperature_units == ("C",) and region.emergency_number == "112"
    decimal = "," if language in ("fr", "nl") else "."
    assert f"{fever.threshold_c:.1f}".replace(".", decimal) + " C" in text
    assert f"{fever.threshold_f:.1f}".replace(".", decimal) + " F" not in text
    assert emergency_fallback(language, region) in text


def test_every_page_carries_the_advice_in_its_banner(built: BuildReport, site: Site) -> None:
    for page in site.pages:
        facts = parse(read_built(built, page.output))
        assert urgent_advice(page.language) in facts.text_by_class["urgent-banner"][0], page.output


def test_content_never_writes_the_thresholds_itself() -> None:
    """Numbers that clinical_rules owns appear in Markdown only as placeholders."""
    rules = clinical_rules()
    owned = [rules.fever.threshold_c, rules.fever.threshold_f, rules.fever.recheck_from_c]
    forbidden = {f"{value:.1f}" for value in owned} | {
        f"{value:.1f}".replace(".", ",") for value in owned
    }
    for path in sorted(CONTENT_DIR.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        for number in forbidden:
            assert not re.search(rf"(?<![\d.,]){re.escape(number)}(?!\d)", text), (
                f"{path} writes {number}: use a placeholder such as {{{{ fever_c }}}}"
            )
        for sentence in (urgent_advice("en"), urgent_advice("fr"), urgent_advice("nl")):
            assert sentence not in text, f"{path} copies the advice: use {{{{ urgent_advice }}}}"


def test_changing_the_advice_changes_the_site(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The builder reads the advice when it builds: it keeps no copy of its own."""
    monkeypatch.setattr(clinical, "urgent_advice", lambda language: f"NEW ADVICE {language}")
    report = build_site(tmp_path / "public", strict=True)
    for output, language in (
        ("fever.html", "en"),
        ("fr/fievre.html", "fr"),
        ("nl/koorts.html", "nl"),
    ):
        facts = parse(read_built(report, output))
        assert f"NEW ADVICE {language}" in facts.text_by_class["advice-urgent-advice"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_fever_page_call_now_list_is_the_red_flag_list_word_for_word(
    built: BuildReport, site: Site, language: str
) -> None:
    """The site's "call now" list and the SMS triage read the same red flags."""
    facts = parse(read_built(built, fever_pages(site)[language]))
    flags = load_red_flags().flags
    for flag in flags:
        shown = facts.text_by_class.get(f"red-flag-{flag.id.replace('_', '-')}", [])
        assert shown == [site_wording(flag, language)], (language, flag.id)
    # Nothing on the list that is not a red flag: every item of the list is a flag.
    assert len(facts.text_by_class["red-flag"]) == len(flags)


@pytest.mark.parametrize("flag", load_red_flags().flags, ids=lambda f: f.id)
def test_every_sign_on_the_call_now_list_is_urgent_by_sms(flag: RedFlag) -> None:
    """Site and SMS never disagree: each listed sign, reported by SMS, is urgent."""
    codes = {flag.id} if not flag.symptoms else {flag.id, *flag.symptoms}
    drug = flag.drugs[0] if flag.drugs else None
    for code in codes:
        decision = triage_report(None, frozenset({code}), TriageContext(drug=drug))
        assert decision.severity is Severity.URGENT, (flag.id, code)
        assert decision.notify_on_call
