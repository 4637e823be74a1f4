"""Phase two of the build: render the validated pages with Jinja2 and write the site.

``build_site`` is the one entry point (the command line, the Flask CLI and the
tests call it): it loads and validates everything first (``content.load_site``),
renders every file in memory, and only then writes them, into a fresh folder
that replaces the old one. A failed build therefore leaves the last good site
in place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from backend.infosite.clinical import LANGUAGES, placeholder_values
from backend.infosite.content import HOME_KEY, Page, Site, load_site, relative_url
from backend.infosite.errors import BuildError, Problem
from backend.infosite.markdown import make_markdown, sentences_text, text_blocks

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTENT_DIR = REPO_ROOT / "content"
SITE_DIR = REPO_ROOT / "site"
DEFAULT_OUT = REPO_ROOT / "public"
# The seed documents sit beside the repository (shared/seeds) on every machine.
SEEDS_DIR = REPO_ROOT.parent / "shared" / "seeds"
# Written into every built folder, so a rebuild only ever deletes a folder it made.
MARKER = ".infosite-build"
SEARCH_INDEX = "search-index.json"
SERVICE_WORKER = "sw.js"
# The translation key of the urgent page; the banner on every page links to it.
FEVER_KEY = "fever"
# Pages every visitor's browser keeps for offline reading, whatever they visited.
OFFLINE_KEYS = (FEVER_KEY,)


@dataclass
class BuildReport:
    """What a build wrote: file sizes (bytes) by output path, and its warnings."""

    out_dir: Path
    pages: list[str]
    sizes: dict[str, int]
    warnings: list[Problem] = field(default_factory=list)

    def page_weight(self, output: str) -> int:
        """Bytes a reader downloads for one page: the HTML with its CSS and scripts."""
        assets = [
            name
            for name in self.sizes
            if name.startswith("assets/") and name.endswith((".css", ".js"))
        ]
        return self.sizes[output] + sum(self.sizes[name] for name in assets)


def _root(output: str) -> str:
    """Relative prefix from a built file back to the site root ("" or "../")."""
    return "../" * output.count("/")


class _Renderer:
    def __init__(self, site: Site, site_dir: Path) -> None:
        self.site = site
        self.site_dir = site_dir
        self.md = make_markdown()
        with (site_dir / "strings.toml").open("rb") as fh:
            self.strings: dict[str, dict[str, str]] = tomllib.load(fh)
        for language in LANGUAGES:
            if language not in self.strings:
                raise BuildError([Problem(site_dir / "strings.toml", f"has no [{language}] table")])
        self.jinja = Environment(
            loader=FileSystemLoader(site_dir / "templates"),
            autoescape=select_autoescape(["html"]),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
        )
        missing = [
            f"[{lang}] has no {key!r}"
            for lang in LANGUAGES
            for key in self.strings["en"]
            if key not in self.strings[lang]
        ]
        if missing:
            raise BuildError([Problem(site_dir / "strings.toml", "; ".join(missing))])

    def term_href(self, page: Page) -> Callable[[str], str]:
        """Where a glossary key links to from ``page`` (its own #id on the glossary page)."""
        glossary = self.site.glossaries.get(page.language, {})

        def href(key: str) -> str:
            target = glossary[key].page
            return f"#{key}" if target is page else relative_url(page.output, target.output, key)

        return href

    def common(self, output: str, language: str, versions: dict[str, str]) -> dict:
        """Template values every page shares: strings, menu, language switch, links.

        ``versions`` is the output path of this page in each language it exists
        in: the language switch links to them, or to a language's home page when
        the page is not there yet, and ``<link rel="alternate" hreflang>`` names them.
        """
        fever = self.site.page_with_key(language, FEVER_KEY) or self.site.page_with_key(
            "en", FEVER_KEY
        )
        glossary = next((e.page for e in self.site.glossaries.get(language, {}).values()), None)
        english_home = self.site.home_output("en")
        alternates = [
            {"lang": lang, "url": relative_url(output, versions[lang])}
            for lang in LANGUAGES
            if lang in versions
        ]
        x_default = versions.get("en", english_home)
        alternates.append({"lang": "x-default", "url": relative_url(output, x_default)})
        return {
            "lang": language,
            "root": _root(output),
            "s": self.strings[language],
            "home_url": relative_url(output, self.site.home_output(language)),
            "search_url": relative_url(output, "search.html"),
            "fever_url": relative_url(output, fever.output) if fever else None,
            "glossary_url": relative_url(output, glossary.output) if glossary else None,
            "menu": [
                {
                    "title": p.menu_title,
                    "url": relative_url(output, p.output),
                    "current": p.output == output,
                }
                for p in self.site.pages_in(language)
            ],
            "languages": [
                {
                    "lang": lang,
                    "name": self.strings[lang]["language_name"],
                    "home_note": None if lang in versions else self.strings[lang]["home_note"],
                    "url": relative_url(output, versions.get(lang, self.site.home_output(lang))),
                }
                for lang in LANGUAGES
                if lang != language
            ],
            "alternates": alternates,
            "advice": placeholder_values(language)["urgent_advice"],
            "fallback": placeholder_values(language)["emergency_fallback"],
            "is_fever_page": False,
            "english_home_url": relative_url(output, english_home) if language != "en" else None,
        }

    def page(self, page: Page) -> str:
        env = {"values": page.values, "term_href": self.term_href(page)}
        body = self.md.renderer.render(page.tokens, self.md.options, env)
        context = self.common(page.output, page.language, self.site.versions(page.translation_key))
        context.update(
            page=page,
            body=Markup(body),
            citations=[self.site.sources[name].citation for name in page.sources],
            is_fever_page=page.translation_key == FEVER_KEY,
        )
        return self.jinja.get_template("page.html").render(context)

    def generated_home(self, language: str) -> str:
        """A short home page for a language whose home page is not written yet."""
        output = self.site.home_output(language)
        context = self.common(output, language, self.site.versions(HOME_KEY))
        context["pages"] = [
            {"title": p.title, "summary": p.summary, "url": relative_url(output, p.output)}
            for p in self.site.pages_in(language)
        ]
        return self.jinja.get_template("home.html").render(context)

    def search_page(self) -> str:
        context = self.common("search.html", "en", {"en": "search.html"})
        return self.jinja.get_template("search.html").render(context)

    def search_index(self) -> str:
        entries = [
            {
                "url": p.output,
                "title": p.title,
                "summary": p.summary,
                "lang": p.language,
                "text": sentences_text(text_blocks(p.tokens, p.values, headings=True)),
            }
            for p in sorted(self.site.pages, key=lambda p: (LANGUAGES.index(p.language), p.order))
        ]
        return json.dumps(entries, ensure_ascii=False, separators=(",", ":"))

    def render_all(self) -> dict[str, bytes]:
        files: dict[str, bytes] = {}
        for page in self.site.pages:
            files[page.output] = self.page(page).encode("utf-8")
        for language in self.site.generated_homes():
            files[self.site.home_output(language)] = self.generated_home(language).encode("utf-8")
        files["search.html"] = self.search_page().encode("utf-8")
        files[SEARCH_INDEX] = self.search_index().encode("utf-8")
        for path in sorted((self.site_dir / "assets").rglob("*")):
            if path.is_file() and path.name != SERVICE_WORKER:
                files["assets/" + path.relative_to(self.site_dir / "assets").as_posix()] = (
                    path.read_bytes()
                )
        # The service worker must sit at the root so that its scope covers every page.
        # Its cache name changes with the content, so visitors get new pages after a build.
        version = hashlib.sha256(b"".join(files[k] for k in sorted(files))).hexdigest()[:12]
        homes = [self.site.home_output(lang) for lang in LANGUAGES]
        precache = [*homes, "assets/style.css", "assets/site.js"] + [
            p.output for p in self.site.pages if p.translation_key in OFFLINE_KEYS
        ]
        worker = (self.site_dir / "assets" / SERVICE_WORKER).read_text(encoding="utf-8")
        worker = worker.replace("__VERSION__", version).replace(
            "__PRECACHE__", json.dumps(precache)
        )
        files[SERVICE_WORKER] = worker.encode("utf-8")
        return files


def render_site(site: Site, site_dir: Path = SITE_DIR) -> dict[str, bytes]:
    """Every file of the built site, by output path, rendered in memory."""
    return _Renderer(site, site_dir).render_all()


def write_site(files: dict[str, bytes], out_dir: Path) -> None:
    """Write ``files`` into ``out_dir``, replacing the previous build as a whole.

    The new site is written to a temporary folder beside ``out_dir`` and swapped
    in, so no reader sees half a site. A non-empty folder that the builder did
    not make is never deleted.
    """
    out_dir = out_dir.resolve()
    if out_dir.exists():
        if not out_dir.is_dir():
            raise BuildError([Problem(out_dir, "exists and is not a folder")])
        if any(out_dir.iterdir()) and not (out_dir / MARKER).exists():
            raise BuildError(
                [Problem(out_dir, f"is not empty and has no {MARKER} file: not overwriting it")]
            )
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-new-", dir=out_dir.parent))
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes it private; a web server must read it
        for name, data in files.items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (tmp / MARKER).write_text("Built by backend.infosite; safe to delete.\n", encoding="utf-8")
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-old-", dir=out_dir.parent))
            old.rmdir()
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_site(
    out_dir: Path = DEFAULT_OUT,
    *,
    content_dir: Path = CONTENT_DIR,
    site_dir: Path = SITE_DIR,
    seeds_dir: Path | None = SEEDS_DIR,
    strict: bool = False,
) -> BuildReport:
    """Read and validate all content, then render and write the site into ``out_dir``.

    Raises ``BuildError`` (naming each file) on any error, and on any warning
    when ``strict``; nothing is written then.
    """
    site = load_site(content_dir, seeds_dir=seeds_dir, strict=strict)
    files = render_site(site, site_dir)
    write_site(files, out_dir)
    return BuildReport(
        out_dir=out_dir,
        pages=[p.output for p in site.pages]
        + [site.home_output(lang) for lang in site.generated_homes()]
        + ["search.html"],
        sizes={name: len(data) for name, data in files.items()},
        warnings=site.warnings,
    )
