"""The built site: every page present, every link resolving, small, self-contained."""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from backend.infosite import BuildReport, Site
from tests.site.conftest import read_built
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


def test_every_page_lists_its_sources(built: BuildReport, site: Site) -> None:
    for page in site.pages:
        assert page.sources, page.rel
        facts = parse(read_built(built, page.output))
        for name in page.sources:
            assert name in facts.text, f"{page.output} does not show its source {name}"


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
    glossary = site.glossaries["en"]
    glossary_ids = parse(read_built(built, "glossary.html")).ids
    assert set(glossary) <= glossary_ids
    linked: set[str] = set()
    for page in site.pages:
        html = read_built(built, page.output)
        for href in re.findall(r'class="term" href="([^"]+)"', html):
            fragment = href.partition("#")[2]
            assert fragment in glossary, f"{page.output}: glossary link {href}"
            linked.add(fragment)
    # Every term in the glossary is used somewhere: a glossary of unused words helps nobody.
    assert linked == set(glossary)


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
        assert facts.lang == page.language
        assert facts.title.startswith(page.title)
        assert html.count("<h1") == 1, page.output


def test_translations_link_to_each_other(built: BuildReport) -> None:
    english = parse(read_built(built, "fever.html"))
    assert "fr/fievre.html" in english.links and "nl/koorts.html" in english.links
    french = parse(read_built(built, "fr/fievre.html"))
    assert "../fever.html" in french.links and "../nl/koorts.html" in french.links


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
