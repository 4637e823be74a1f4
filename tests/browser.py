"""Pytest plugin for browser tests: headless Chromium driven by Playwright.

Registered in ``tests/conftest.py`` (``pytest_plugins = ("tests.browser",)``) so
every test folder can use it: the information site now, the care-team pages
later.

Fixtures
    ``browser``        one Chromium for the whole session (Debian's ``chromium``).
    ``page_at``        factory: ``page_at(360)`` or ``page_at(1280)`` opens a new
                       tab in a context of that width, reused across tests.
    ``artifacts_dir``  where screenshots go (``test-artifacts/screenshots``, or
                       ``$TEST_ARTIFACTS_DIR``).

Helpers
    ``check_accessibility(page)``  runs axe-core, returns its violations.
    ``no_horizontal_scroll(page)`` True when the page fits its viewport width.

When Playwright, Chromium or axe-core is missing the browser tests are skipped
locally, but they FAIL when the ``CI`` environment variable is set: CI must
never pass by skipping them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
MOBILE = (360, 800)
DESKTOP = (1280, 900)
# Below this width a context behaves as a phone: it honours the viewport meta tag and touch.
_PHONE_MAX_WIDTH = 600
DEFAULT_ARTIFACTS = Path("test-artifacts") / "screenshots"


def require_browser_tools(reason: str) -> None:
    """Skip the test, or fail it in CI, because a browser tool is missing."""
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """One headless Chromium for the session; tests open contexts and tabs in it."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        require_browser_tools("the playwright package is not installed")
    executable = shutil.which("chromium")
    if executable is None:
        require_browser_tools("no 'chromium' on PATH (Debian package chromium)")
    with sync_playwright() as playwright:
        try:
            instance = playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS, headless=True
            )
        except PlaywrightError as exc:
            require_browser_tools(f"chromium did not start: {exc}")
        try:
            yield instance
        finally:
            instance.close()


def context_options(width: int, height: int) -> dict[str, Any]:
    """Playwright context options for a viewport; narrow ones behave as a phone."""
    phone = width <= _PHONE_MAX_WIDTH
    return {
        "viewport": {"width": width, "height": height},
        "device_scale_factor": 1,
        "is_mobile": phone,
        "has_touch": phone,
        "reduced_motion": "reduce",
        # Tests share contexts: a service worker left by one test must not answer
        # the next one's requests. The offline test makes a context of its own.
        "service_workers": "block",
    }


@pytest.fixture(scope="session")
def browser_contexts(browser: Browser) -> Iterator[dict[tuple[int, int], BrowserContext]]:
    """One context per viewport size, created on first use and kept for the session."""
    contexts: dict[tuple[int, int], BrowserContext] = {}
    yield contexts
    for context in contexts.values():
        context.close()


@pytest.fixture
def page_at(
    browser: Browser, browser_contexts: dict[tuple[int, int], BrowserContext]
) -> Iterator[Callable[..., Page]]:
    """Factory: ``page_at(360)`` is a new tab 360x800, ``page_at(1280)`` one 1280x900."""
    opened: list[Page] = []

    def open_page(width: int, height: int | None = None) -> Page:
        size = (width, height or (MOBILE[1] if width <= _PHONE_MAX_WIDTH else DESKTOP[1]))
        if size not in browser_contexts:
            browser_contexts[size] = browser.new_context(**context_options(*size))
        page = browser_contexts[size].new_page()
        opened.append(page)
        return page

    yield open_page
    for page in opened:
        page.close()


@pytest.fixture(scope="session")
def artifacts_dir(pytestconfig: pytest.Config) -> Path:
    """Folder for screenshots; ignored by git through its own .gitignore."""
    configured = os.environ.get("TEST_ARTIFACTS_DIR")
    path = Path(configured) if configured else pytestconfig.rootpath / DEFAULT_ARTIFACTS
    path.mkdir(parents=True, exist_ok=True)
    # Keep screenshots out of commits without touching the repository's .gitignore.
    top = path.parent if not configured else path
    ignore = top / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n", encoding="utf-8")
    return path


def _axe_script() -> str:
    try:
        from axe_playwright_python.base import AXE_SCRIPT
    except ImportError:
        require_browser_tools("axe-playwright-python (which bundles axe-core) is not installed")
    return AXE_SCRIPT


def check_accessibility(page: Page, options: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Run axe-core on the page as it is now; return its violations (empty when none).

    By default every rule axe runs without configuration is checked: WCAG A and
    AA, and the best-practice rules such as landmarks and heading order.
    """
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.evaluate(_axe_script())
    results = page.evaluate(
        "options => axe.run(document, options)", options or {"resultTypes": ["violations"]}
    )
    return list(results["violations"])


def format_violations(violations: list[dict[str, Any]]) -> str:
    """Axe violations as readable lines: rule, impact, help, and the offending elements."""
    lines = []
    for violation in violations:
        targets = ", ".join(str(node["target"]) for node in violation["nodes"][:5])
        lines.append(
            f"{violation['id']} ({violation.get('impact')}): {violation['help']} -> {targets}"
        )
    return "\n".join(lines)


def no_horizontal_scroll(page: Page) -> bool:
    """True when nothing makes the page wider than its viewport."""
    return bool(
        page.evaluate(
            "() => document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        )
    )


def overflowing_elements(page: Page) -> list[str]:
    """Elements sticking out past the right edge of the viewport, to explain a failure."""
    return list(
        page.evaluate(
            """() => {
                const width = document.documentElement.clientWidth;
                return Array.from(document.querySelectorAll('body *'))
                  .filter(el => el.getBoundingClientRect().right > width + 1)
                  .slice(0, 10)
                  .map(el => el.tagName.toLowerCase() + (el.className ? '.' + el.className : ''));
            }"""
        )
    )
