"""Fixtures for the information-site tests: one strict build per session, served locally."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backend.infosite import BuildReport, Site, build_site, load_site
from backend.infosite.build import CONTENT_DIR, SEEDS_DIR
from backend.infosite.content import HOME_KEY


@pytest.fixture(scope="session")
def site() -> Site:
    """All content, read and validated in strict mode (warnings fail)."""
    return load_site(CONTENT_DIR, seeds_dir=SEEDS_DIR, strict=True)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> BuildReport:
    """The site built once, strictly, into a temporary folder."""
    out = tmp_path_factory.mktemp("infosite") / "public"
    return build_site(out, strict=True)


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Keep the test output clean: no line per request."""


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A browser that drops a connection it no longer needs is not a test failure."""


@pytest.fixture(scope="session")
def site_url(built: BuildReport) -> Iterator[str]:
    """Base URL (ending in /) of a local static server on 127.0.0.1 serving the build."""
    handler = partial(_QuietHandler, directory=str(built.out_dir))
    server = _QuietServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def cmudict_ready(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Let textstat count syllables offline (see readability.py)."""
    from tests.site.readability import prepare_cmudict

    prepare_cmudict(tmp_path_factory.mktemp("nltk_data"))


def read_built(report: BuildReport, output: str) -> str:
    """Text of one built file."""
    return (Path(report.out_dir) / output).read_text(encoding="utf-8")


def built_pages(site: Site) -> dict[str, tuple[str, str | None]]:
    """(language, translation key) of every HTML page a build writes, by output path.

    The content pages, the home pages the builder generates for languages that
    have none yet, and the (English) search page, which has no key.
    """
    pages: dict[str, tuple[str, str | None]] = {
        p.output: (p.language, p.translation_key) for p in site.pages
    }
    for language in site.generated_homes():
        pages[site.home_output(language)] = (language, HOME_KEY)
    pages["search.html"] = ("en", None)
    return pages
