"""Every built page in every language in headless Chromium, on a phone (360 px) and a
desktop (1280 px): no horizontal scrolling, no broken links, no axe-core violations
(the language switch in the header included), no console errors. Screenshots of each
go to the artifacts folder."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urldefrag, urljoin

import pytest

from backend.infosite import load_site
from backend.infosite.build import CONTENT_DIR
from tests.browser import (
    DESKTOP,
    MOBILE,
    check_accessibility,
    context_options,
    format_violations,
    no_horizontal_scroll,
    overflowing_elements,
)
from tests.site.conftest import built_pages

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.browser

# Every page the build writes, generated home pages included (read at collection so
# each is a test of its own).
OUTPUTS = sorted(built_pages(load_site(CONTENT_DIR)))
WIDTHS = [MOBILE[0], DESKTOP[0]]
# Answers to link checks, shared by all tests: each target is fetched once.
_link_cache: dict[str, tuple[int, str]] = {}


def _fetch(page: Page, url: str) -> tuple[int, str]:
    if url not in _link_cache:
        response = page.context.request.get(url)
        _link_cache[url] = (response.status, response.text() if response.ok else "")
    return _link_cache[url]


def broken_links(page: Page, base: str) -> list[str]:
    """Links on the page whose target or section is missing."""
    hrefs = page.eval_on_selector_all("a[href]", "els => els.map(a => a.getAttribute('href'))")
    problems = []
    for href in hrefs:
        url, fragment = urldefrag(urljoin(page.url, href))
        if not url.startswith(base):
            problems.append(f"{href}: leaves the site")
            continue
        status, html = _fetch(page, url)
        if status != 200:
            problems.append(f"{href}: HTTP {status}")
        elif fragment and f'id="{fragment}"' not in html:
            problems.append(f"{href}: no section #{fragment}")
    return problems


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("output", OUTPUTS)
def test_page_in_browser(
    page_at: Callable[..., Page], site_url: str, artifacts_dir: Path, output: str, width: int
) -> None:
    page = page_at(width)
    errors: list[str] = []
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on(
        "response",
        lambda response: (
            errors.append(f"HTTP {response.status} {response.url}")
            if response.status >= 400
            else None
        ),
    )
    page.goto(site_url + output, wait_until="load")
    name = output.replace("/", "_").removesuffix(".html")
    page.screenshot(path=str(artifacts_dir / f"{name}-{width}.png"), full_page=True)

    assert no_horizontal_scroll(page), f"wider than {width}px: {overflowing_elements(page)}"
    violations = check_accessibility(page)
    assert not violations, format_violations(violations)
    assert not broken_links(page, site_url)
    assert not errors, errors


def test_language_switch_on_a_phone(page_at: Callable[..., Page], site_url: str) -> None:
    page = page_at(MOBILE[0])
    page.goto(site_url + "fever.html")
    page.click(".language-switch a[hreflang='fr']")
    page.wait_for_url("**/fr/fievre.html")
    assert page.get_attribute("html", "lang") == "fr"
    page.goto(site_url + "cmv.html")
    page.click(".language-switch a[hreflang='nl']")
    page.wait_for_url("**/nl/cmv.html")
    assert page.get_attribute("html", "lang") == "nl"
    assert page.is_visible("a[href='koorts.html']")


def test_search_finds_pages(
    page_at: Callable[..., Page], site_url: str, artifacts_dir: Path
) -> None:
    page = page_at(MOBILE[0])
    page.goto(site_url + "search.html?q=CMV")
    page.wait_for_selector(".search-results a")
    titles = page.eval_on_selector_all(".search-results a", "els => els.map(a => a.textContent)")
    assert titles[0] == "CMV: a virus to watch for"
    page.fill("#search-query", "fièvre")
    page.press("#search-query", "Enter")
    page.wait_for_function("() => document.querySelector('.search-results a')?.lang === 'fr'")
    page.screenshot(path=str(artifacts_dir / "search-results-360.png"), full_page=True)
    assert not check_accessibility(page)


def test_header_search_box_leads_to_results(page_at: Callable[..., Page], site_url: str) -> None:
    page = page_at(DESKTOP[0])
    page.goto(site_url + "index.html")
    page.fill("#site-search", "aciclovir")
    page.press("#site-search", "Enter")
    page.wait_for_selector(".search-results a")
    found = page.eval_on_selector_all(".search-results a", "els => els.map(a => a.href)")
    assert any(href.endswith("/infection-pills.html") for href in found), found


def test_pages_read_without_javascript(browser: Browser, site_url: str) -> None:
    context = browser.new_context(java_script_enabled=False, **context_options(*MOBILE))
    try:
        page = context.new_page()
        page.goto(site_url + "fever.html")
        assert page.is_visible("h1") and page.is_visible(".callout-urgent")
        assert page.is_visible("#menu a[href='cmv.html']")
        assert page.is_hidden(".print-button")
        page.goto(site_url + "search.html?q=CMV")
        assert page.is_visible("#search-no-js")
    finally:
        context.close()


def test_print_layout(page_at: Callable[..., Page], site_url: str, artifacts_dir: Path) -> None:
    page = page_at(DESKTOP[0])
    page.goto(site_url + "fever.html")
    page.emulate_media(media="print")
    assert page.is_hidden("#menu") and page.is_hidden(".search-form")
    assert page.is_visible(".phone-line") and page.is_visible(".urgent-banner")
    page.screenshot(path=str(artifacts_dir / "fever-print.png"), full_page=True)
    page.emulate_media(media="screen")
    assert page.is_visible("#menu") and page.is_hidden(".phone-line")


def test_visited_pages_work_offline(browser: Browser, site_url: str) -> None:
    options = context_options(*MOBILE) | {"service_workers": "allow"}
    context = browser.new_context(**options)
    try:
        page = context.new_page()
        page.goto(site_url + "index.html")
        page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")
        page.reload()  # now under the worker's control
        page.wait_for_function("() => navigator.serviceWorker.controller !== null")
        page.goto(site_url + "cmv.html")
        page.wait_for_function("async () => Boolean(await caches.match('cmv.html'))")
        context.set_offline(True)
        page.goto(site_url + "cmv.html")
        assert page.text_content("h1") == "CMV: a virus to watch for"
        # The fever pages are kept from the first visit, even if never opened.
        page.goto(site_url + "nl/koorts.html")
        assert "Koorts" in (page.text_content("h1") or "")
    finally:
        context.set_offline(False)
        context.close()
