"""The built site: every page present, every link resolving, small, self-contained."""

from __future__ import annotations

import posixpath
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from backend.infosite import BuildReport, Site, build_site
from backend.infosite.build import CONTENT_DIR
from backend.infosite.content import Source
from reminders.core.clinical_rules import LANGUAGES
from tests.site.conftest import built_pages, read_built
from tests.site.html_tools import parse

PAGE_BUDGET_BYTES = 100 * 1024
# The topics the issue asks for, by English output file.
REQUIRED_ENGLISH_PAGES = {
    "index.html",
    "treatments.html",
    "schedule.html",
    "treatment-days.html",
    "infection-pills.html",
    "cmv.html",
    "fever.html",
    "side-effects.html",
    "text-messages.html",
    "family.html",
    "questions.html",
    "glossary.html",
}
# Every regimen of the regimen library is explained on the schedule page.
REGIMEN_SECTIONS = {
    "alemtuzumab-injections-under-the-skin",
    "alemtuzumab-by-drip",
    "ofatumumab",
    "ofatumumab-with-lenalidomide",
    "rituximab-for-cll",
    "rituximab-for-follicular-lymphoma",
    "inotuzumab",
}


def html_outputs(report: BuildReport) -> list[str]:
    """Every built HTML file."""
    return sorted(name for name in report.sizes if name.endswith(".html"))


def test_strict_build_has_the_pages_the_issue_asks_for(built: BuildReport, site: Site) -> None:
    english = {p.output for p in site.pages if p.language == "en"}
    assert len(english) >= 10
    assert english >= REQUIRED_ENGLISH_PAGES
    fever = {p.language: p.output for p in site.pages if p.translation_key == "fever"}
    assert set(fever) == {"en", "fr", "nl"}
    for output in html_outputs(built):
        assert (built.out_dir / output).is_file()
    assert (built.out_dir / "sw.js").is_file()
    assert (built.out_dir / "search-index.json").is_file()


def test_schedule_covers_every_regimen(site: Site) -> None:
    schedule = next(p for p in site.pages if p.output == "schedule.html")
    assert schedule.anchors >= REGIMEN_SECTIONS


def test_every_page_cites_its_sources_by_title_body_and_year(
    built: BuildReport, site: Site
) -> None:
    for page in site.pages:
        assert page.sources, page.rel
        shown = parse(read_built(built, page.output)).text_by_class["citation"]
        assert shown == [site.sources[name].citation for name in page.sources], page.output
    cmv = parse(read_built(built, "cmv.html")).text_by_class["citation"]
    assert (
        "Use of alemtuzumab in B-cell chronic lymphocytic leukaemia: Belgian recommendations. "
        "Belgian Journal of Hematology, 2011."
    ) in cmv


def test_seed_file_names_appear_nowhere_in_the_built_site(built: BuildReport, site: Site) -> None:
    """File names stay in the data: a reader could not look them up."""
    names = {name for name in site.sources} | {name.removesuffix(".txt") for name in site.sources}
    for output in built.sizes:
        data = (built.out_dir / output).read_bytes()
        shown = [name for name in names if name.encode() in data]
        assert not shown, f"{output} shows {shown}"


@pytest.mark.parametrize(
    ("source", "citation"),
    [
        (Source("Title", "Journal", 2011), "Title. Journal, 2011."),
        (Source("Title", "Journal"), "Title. Journal."),
        (Source("Title", year=2013), "Title. 2013."),
        (Source("Title"), "Title."),
        (Source("Is it a question?", "Journal", 2016), "Is it a question? Journal, 2016."),
    ],
)
def test_citation_says_only_what_the_source_states(source: Source, citation: str) -> None:
    assert source.citation == citation


def test_no_shortcode_is_left_unfilled(built: BuildReport) -> None:
    for output in html_outputs(built):
        text = parse(read_built(built, output)).text
        for marker in ("{{", "}}", "[[", "]]", ":::"):
            assert marker not in text, f"{output} shows {marker!r}"


def _resolve(output: str, href: str) -> tuple[str, str] | None:
    """(target file, fragment) of a link from ``output``, or None for an external link."""
    parts = urlsplit(href)
    if parts.scheme or parts.netloc:
        return None
    path = unquote(parts.path)
    target = posixpath.normpath(posixpath.join(posixpath.dirname(output), path)) if path else output
    return target, parts.fragment


def test_every_link_and_resource_resolves(built: BuildReport) -> None:
    ids = {output: parse(read_built(built, output)).ids for output in html_outputs(built)}
    broken = []
    for output in html_outputs(built):
        facts = parse(read_built(built, output))
        for href in facts.links + facts.resources:
            resolved = _resolve(output, href)
            if resolved is None:
                broken.append(f"{output}: external link {href}")
                continue
            target, fragment = resolved
            if target.startswith("../") or not (built.out_dir / target).is_file():
                broken.append(f"{output}: {href} (no file {target})")
            elif fragment and fragment not in ids.get(target, set()):
                broken.append(f"{output}: {href} (no #{fragment} in {target})")
    assert not broken, "\n".join(broken)


def test_glossary_links_reach_a_definition(built: BuildReport, site: Site) -> None:
    """Each page's glossary links land on a term of its own language's glossary, and every term is used."""
    assert set(site.glossaries) == set(LANGUAGES)
    linked: dict[str, set[str]] = {language: set() for language in LANGUAGES}
    for language, glossary in site.glossaries.items():
        page = next(p for p in site.pages if p.glossary and p.language == language)
        assert set(glossary) <= parse(read_built(built, page.output)).ids
    for page in site.pages:
        glossary = site.glossaries[page.language]
        html = read_built(built, page.output)
        for href in re.findall(r'class="term" href="([^"]+)"', html):
            fragment = href.partition("#")[2]
            assert fragment in glossary, f"{page.output}: glossary link {href}"
            linked[page.language].add(fragment)
    # Every term in the glossary is used somewhere: a glossary of unused words helps nobody.
    for language, glossary in site.glossaries.items():
        assert linked[language] == set(glossary), language


def test_each_page_with_its_css_and_scripts_is_under_100_kb(built: BuildReport) -> None:
    weights = {output: built.page_weight(output) for output in html_outputs(built)}
    too_big = {name: size for name, size in weights.items() if size >= PAGE_BUDGET_BYTES}
    assert not too_big


def test_no_web_fonts_trackers_or_outside_resources(built: BuildReport) -> None:
    for output in html_outputs(built):
        facts = parse(read_built(built, output))
        outside = [r for r in facts.resources if urlsplit(r).scheme or r.startswith("//")]
        assert not outside, f"{output} loads {outside}"
    for name in built.sizes:
        if name.endswith((".css", ".js")):
            text = (built.out_dir / name).read_text(encoding="utf-8")
            assert "@font-face" not in text and "@import" not in text, name
            assert not re.search(r"https?://", text), f"{name} reaches outside the site"


def test_pages_have_language_title_and_one_h1(built: BuildReport, site: Site) -> None:
    for page in site.pages:
        html = read_built(built, page.output)
        facts = parse(html)
        assert facts.title.startswith(page.title)
    for output, (language, _key) in built_pages(site).items():
        html = read_built(built, output)
        assert parse(html).lang == language, output
        assert html.count("<h1") == 1, output


def test_every_language_has_a_home_page(built: BuildReport, site: Site) -> None:
    homes = {language: site.home_output(language) for language in LANGUAGES}
    assert homes == {"en": "index.html", "fr": "fr/index.html", "nl": "nl/index.html"}
    # Until fr and nl have a home page of their own, the builder writes one that
    # lists the pages already in that language and leads to the English guide.
    for language in site.generated_homes():
        facts = parse(read_built(built, homes[language]))
        assert facts.lang == language
        listed = {
            posixpath.normpath(posixpath.join(posixpath.dirname(homes[language]), href))
            for href in facts.links
        }
        assert {p.output for p in site.pages_in(language)} <= listed
        assert "index.html" in listed


def _target(output: str, href: str) -> str:
    resolved = _resolve(output, href)
    assert resolved is not None, f"{output}: {href} leaves the site"
    return resolved[0]


def test_language_switch_leads_to_the_same_page_or_that_language_home(
    built: BuildReport, site: Site
) -> None:
    for output, (language, key) in built_pages(site).items():
        versions = site.versions(key) if key else {language: output}
        switch = parse(read_built(built, output)).switch
        assert set(switch) == set(LANGUAGES) - {language}, output
        for other, href in switch.items():
            expected = versions.get(other, site.home_output(other))
            assert _target(output, href) == expected, (output, other)


def test_hreflang_names_every_existing_translation_and_a_default(
    built: BuildReport, site: Site
) -> None:
    for page in site.pages:
        alternates = parse(read_built(built, page.output)).alternates
        versions = site.versions(page.translation_key)
        expected = {**versions, "x-default": versions.get("en", "index.html")}
        shown = {lang: _target(page.output, href) for lang, href in alternates.items()}
        assert shown == expected, page.output


def test_translations_link_to_each_other(built: BuildReport) -> None:
    english = parse(read_built(built, "fever.html"))
    assert english.switch == {"fr": "fr/fievre.html", "nl": "nl/koorts.html"}
    assert english.alternates == {
        "en": "fever.html",
        "fr": "fr/fievre.html",
        "nl": "nl/koorts.html",
        "x-default": "fever.html",
    }
    french = parse(read_built(built, "fr/fievre.html"))
    assert french.switch == {"en": "../fever.html", "nl": "../nl/koorts.html"}
    cmv = parse(read_built(built, "cmv.html"))
    assert cmv.switch == {"fr": "fr/cmv.html", "nl": "nl/cmv.html"}


def test_a_page_listed_as_untranslated_leads_to_the_other_homes(tmp_path: Path) -> None:
    """A page kept in one language (listed in translations.toml) switches to the other homes."""
    content = tmp_path / "content"
    shutil.copytree(CONTENT_DIR, content)
    for language, name in (("fr", "cmv.md"), ("nl", "cmv.md")):
        (content / language / name).unlink()
    for page in content.glob("[fn][rl]/*.md"):  # the French and Dutch links to their CMV page
        text = page.read_text(encoding="utf-8")
        page.write_text(re.sub(r"\]\(cmv\.md(#[^)]*)?\)", "](index.md)", text), encoding="utf-8")
    with (content / "translations.toml").open("a", encoding="utf-8") as file:
        file.write('\n[cmv]\nreason = "kept in English for this test"\n')
    out = tmp_path / "public"
    build_site(out, content_dir=content)  # the glossaries now have unlinked terms: warnings only
    cmv = parse((out / "cmv.html").read_text(encoding="utf-8"))
    assert cmv.switch == {"fr": "fr/index.html", "nl": "nl/index.html"}
    assert cmv.text_by_class["home-note"] == ["(accueil)", "(startpagina)"]
    assert set(cmv.alternates) == {"en", "x-default"}


def test_search_index_lists_every_page(built: BuildReport, site: Site) -> None:
    import json

    index = json.loads(read_built(built, "search-index.json"))
    assert {entry["url"] for entry in index} == {p.output for p in site.pages}
    cmv = next(entry for entry in index if entry["url"] == "cmv.html")
    assert "week 3" in cmv["text"]


def test_service_worker_is_versioned_and_precaches_the_fever_pages(built: BuildReport) -> None:
    worker = read_built(built, "sw.js")
    assert "__VERSION__" not in worker and "__PRECACHE__" not in worker
    for output in ("fever.html", "fr/fievre.html", "nl/koorts.html"):
        assert f'"{output}"' in worker


@pytest.mark.parametrize("output", ["index.html", "fever.html"])
def test_pages_work_without_javascript(built: BuildReport, output: str) -> None:
    """The text and the menu are plain HTML; scripts only add search, print and offline."""
    html = read_built(built, output)
    facts = parse(html)
    assert "<noscript" not in html
    assert 'id="menu"' in html and len(facts.links) > 10
    assert all(tag in html for tag in ("<main", "<nav", "<header", "<footer"))
    assert Path(built.out_dir / "assets" / "site.js").stat().st_size < 2048
