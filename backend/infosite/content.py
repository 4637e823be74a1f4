"""Phase one of the build: read every page and check all of it before anything is written.

A page is a Markdown file under ``content/`` with YAML front matter::

    ---
    title: Fever and warning signs: when to call
    summary: One sentence shown under the title and in search results.
    order: 3                       # position in the menu of its language
    language: en                   # en, fr or nl
    sources: [003_a1949903592dbecf.txt]   # seed files, listed in content/sources.toml
    translation_key: fever         # optional: links translations of one page (default: file name)
    slug: fever                    # optional: output name, default the file name
    nav_title: Fever               # optional: shorter name for the menu
    glossary: true                 # optional: this page is the glossary of its language
    ---

Every page exists in every language: a translation key found in one language
and not in all of them is an error, unless ``content/translations.toml`` lists
it as a deliberate exception, with its reason.

Errors (a missing field, a broken link, two pages with one output path, an
unknown glossary term, a missing translation...) stop the build; warnings (a
term used before it is linked to the glossary, a skipped heading level, an
exception that is no longer needed...) stop it in strict mode. Every problem
names its file.
"""

from __future__ import annotations

import datetime
import posixpath
import re
import tomllib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from markdown_it.token import Token

from backend.infosite.clinical import LANGUAGES, placeholder_values
from backend.infosite.errors import BuildError, Problem
from backend.infosite.markdown import inline_text, make_markdown, slugify, walk

REQUIRED_FIELDS: dict[str, type] = {
    "title": str,
    "summary": str,
    "order": int,
    "language": str,
    "sources": list,
}
OPTIONAL_FIELDS: dict[str, type] = {
    "slug": str,
    "translation_key": str,
    "nav_title": str,
    "glossary": bool,
}
# Summaries show under the title and in search results: keep them to one line.
SUMMARY_MAX_CHARS = 200
SOURCES_FILE = "sources.toml"
# Translation keys that exist in fewer than all languages on purpose, each with its reason.
TRANSLATIONS_FILE = "translations.toml"
# The translation key of the home page; a language without one gets a generated home.
HOME_KEY = "home"
SOURCE_FIELDS: dict[str, type] = {"title": str, "body": str, "year": int}
EXTERNAL_SCHEMES = ("http", "https", "mailto", "tel")
_SLUG_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_SCHEME_RE = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*):")


def output_prefix(language: str) -> str:
    """Folder of a language in the built site: English at the root, others in ``fr/``, ``nl/``."""
    return "" if language == "en" else f"{language}/"


@dataclass(frozen=True)
class Source:
    """A seed document as a reader can look it up: title, issuing body and year.

    ``body`` (the journal or organisation) and ``year`` are left out when the
    seed does not state them; the citation then says only what is known.
    """

    title: str
    body: str | None = None
    year: int | None = None

    @property
    def citation(self) -> str:
        """ "Title. Body, Year." (or "Title. Body.", "Title. Year.", "Title.")."""
        where = ", ".join(str(part) for part in (self.body, self.year) if part)
        return " ".join(_full_stop(part) for part in (self.title, where) if part)


def _full_stop(text: str) -> str:
    return text if text.endswith((".", "?", "!")) else f"{text}."


@dataclass
class GlossaryEntry:
    """One term of a glossary page: its display form and where it is defined."""

    term: str
    key: str
    page: Page


@dataclass
class Page:
    """One content file, parsed and validated; ``output`` is its path in the built site."""

    source: Path
    rel: str
    title: str
    summary: str
    order: int
    language: str
    sources: list[str]
    tokens: list[Token]
    output: str
    slug: str
    translation_key: str
    nav_title: str | None = None
    glossary: bool = False
    anchors: set[str] = field(default_factory=set)

    @property
    def values(self) -> dict[str, str]:
        """Placeholder values in this page's language."""
        return placeholder_values(self.language)

    @property
    def menu_title(self) -> str:
        """The name of the page in the menu."""
        return self.nav_title or self.title


@dataclass
class Site:
    """Everything phase two needs: the pages, the glossaries and the cited sources."""

    content_dir: Path
    pages: list[Page]
    sources: dict[str, Source]
    glossaries: dict[str, dict[str, GlossaryEntry]]
    warnings: list[Problem]

    def pages_in(self, language: str) -> list[Page]:
        """The pages of one language, in menu order."""
        return sorted(
            (p for p in self.pages if p.language == language), key=lambda p: (p.order, p.title)
        )

    def versions(self, key: str) -> dict[str, str]:
        """Output path of the page with translation key ``key`` in each language it exists in.

        The home page exists in every language: written, or generated by the builder.
        """
        if key == HOME_KEY:
            return {lang: self.home_output(lang) for lang in LANGUAGES}
        return {p.language: p.output for p in self.pages if p.translation_key == key}

    def home_output(self, language: str) -> str:
        """The home page of ``language``: its page with key "home", or the generated one."""
        home = self.page_with_key(language, HOME_KEY)
        return home.output if home else f"{output_prefix(language)}index.html"

    def generated_homes(self) -> list[str]:
        """Languages without a home page of their own: the builder writes one for them."""
        return [lang for lang in LANGUAGES if self.page_with_key(lang, HOME_KEY) is None]

    def page_with_key(self, language: str, key: str) -> Page | None:
        """The page of ``language`` with this translation key, if there is one."""
        for page in self.pages:
            if page.language == language and page.translation_key == key:
                return page
        return None


def relative_url(from_output: str, to_output: str, fragment: str = "") -> str:
    """The link from one built file to another, relative so the site works under any prefix."""
    url = posixpath.relpath(to_output, posixpath.dirname(from_output) or ".")
    return f"{url}#{fragment}" if fragment else url


def split_front_matter(text: str) -> tuple[str, str] | None:
    """(YAML, body) of a page, or None when it does not start with a ``---`` block."""
    match = re.match(r"\A---[ \t]*\r?\n(.*?)^---[ \t]*\r?\n?", text, re.S | re.M)
    if not match:
        return None
    return match.group(1), text[match.end() :]


class _Reader:
    """Collects problems while it reads; ``load_site`` raises them all at the end."""

    def __init__(self, content_dir: Path, seeds_dir: Path | None) -> None:
        self.content_dir = content_dir
        self.seeds_dir = seeds_dir
        self.problems: list[Problem] = []
        self.md = make_markdown()

    def error(self, path: Path, message: str) -> None:
        self.problems.append(Problem(path, message))

    def warn(self, path: Path, message: str) -> None:
        self.problems.append(Problem(path, message, warning=True))

    # -- files -------------------------------------------------------------
    def read_toml(self, name: str, *, if_missing: str | None) -> dict | None:
        """A TOML data file of the content folder, or None (an error if ``if_missing`` says why)."""
        path = self.content_dir / name
        try:
            with path.open("rb") as fh:
                return tomllib.load(fh)
        except FileNotFoundError:
            if if_missing:
                self.error(path, f"missing: {if_missing}")
        except tomllib.TOMLDecodeError as exc:
            self.error(path, f"not valid TOML: {exc}")
        return None

    def read_sources(self) -> dict[str, Source]:
        path = self.content_dir / SOURCES_FILE
        data = (
            self.read_toml(SOURCES_FILE, if_missing="it lists the seed files pages may cite") or {}
        )
        sources: dict[str, Source] = {}
        this_year = datetime.date.today().year
        for name, entry in data.items():
            if not isinstance(entry, dict):
                self.error(path, f"[{name!r}] must be a table with a 'title'")
                continue
            fields = {}
            for field_name, kind in SOURCE_FIELDS.items():
                value = entry.get(field_name)
                if value is None:
                    continue
                if not isinstance(value, kind) or isinstance(value, bool):
                    self.error(path, f"[{name!r}] '{field_name}' must be a {kind.__name__}")
                elif isinstance(value, str) and value.strip():
                    fields[field_name] = value.strip()
                elif isinstance(value, int) and 1900 <= value <= this_year:
                    fields[field_name] = value
                else:
                    self.error(path, f"[{name!r}] '{field_name}' {value!r} is not plausible")
            for unknown in sorted(set(entry) - set(SOURCE_FIELDS)):
                self.warn(path, f"[{name!r}] has an unknown field '{unknown}'")
            if "title" not in fields:
                self.error(path, f"[{name!r}] needs a 'title', as the source itself gives it")
                continue
            # The seeds live beside the repository (shared/seeds); check them when present.
            seeds = self.seeds_dir
            if seeds is not None and seeds.is_dir() and not (seeds / name).is_file():
                self.error(path, f"cites {name!r}, which is not in {seeds}")
            sources[name] = Source(**fields)
        return sources

    def read_page(self, path: Path, sources: dict[str, Source]) -> Page | None:
        rel = path.relative_to(self.content_dir).as_posix()
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            self.error(path, "is not UTF-8 text")
            return None
        parts = split_front_matter(text)
        if parts is None:
            self.error(path, "has no front matter: it must start with a '---' line")
            return None
        raw_meta, body = parts
        try:
            meta = yaml.safe_load(raw_meta) or {}
        except yaml.YAMLError as exc:
            self.error(path, f"front matter is not valid YAML: {exc}")
            return None
        if not isinstance(meta, dict):
            self.error(path, "front matter must be a mapping of field: value")
            return None

        ok = True
        for name, kind in REQUIRED_FIELDS.items():
            value = meta.get(name)
            if value is None or value == "" or value == []:
                self.error(path, f"front matter is missing '{name}'")
                ok = False
            elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                self.error(path, f"front matter '{name}' must be a {kind.__name__}")
                ok = False
        for name, kind in OPTIONAL_FIELDS.items():
            if name in meta and not isinstance(meta[name], kind):
                self.error(path, f"front matter '{name}' must be a {kind.__name__}")
                ok = False
        for name in sorted(set(meta) - set(REQUIRED_FIELDS) - set(OPTIONAL_FIELDS)):
            self.warn(path, f"front matter has an unknown field '{name}'")
        if not ok:
            return None

        language = meta["language"]
        if language not in LANGUAGES:
            self.error(path, f"language {language!r} is not one of {', '.join(LANGUAGES)}")
            return None
        folder = rel.split("/")[0] if "/" in rel else None
        if folder in LANGUAGES and folder != language:
            self.error(path, f"is in the {folder!r} folder but says language: {language}")
        for source in meta["sources"]:
            if not isinstance(source, str) or source not in sources:
                self.error(path, f"source {source!r} is not listed in {SOURCES_FILE}")
        if len(meta["summary"]) > SUMMARY_MAX_CHARS:
            self.warn(path, f"summary is longer than {SUMMARY_MAX_CHARS} characters")

        slug = meta.get("slug") or path.stem
        if not _SLUG_RE.match(slug):
            self.error(path, f"output name {slug!r} must be lower-case words joined by '-'")
            return None
        prefix = output_prefix(language)
        tokens = self.md.parse(body, {})
        return Page(
            source=path,
            rel=rel,
            title=meta["title"].strip(),
            summary=meta["summary"].strip(),
            order=meta["order"],
            language=language,
            sources=list(meta["sources"]),
            tokens=tokens,
            output=f"{prefix}{slug}.html",
            slug=slug,
            translation_key=meta.get("translation_key") or path.stem,
            nav_title=meta.get("nav_title"),
            glossary=bool(meta.get("glossary", False)),
            anchors={str(t.attrGet("id")) for t in tokens if t.type == "heading_open"},
        )

    # -- checks across pages ------------------------------------------------
    def check_unique(self, pages: list[Page]) -> None:
        seen: dict[str, Page] = {}
        for page in pages:
            other = seen.get(page.output)
            if other:
                self.error(
                    page.source,
                    f"has the same output path {page.output!r} as {other.source}",
                )
            else:
                seen[page.output] = page
        keys: dict[tuple[str, str], Page] = {}
        orders: dict[tuple[str, int], Page] = {}
        for page in pages:
            other = keys.setdefault((page.language, page.translation_key), page)
            if other is not page:
                self.error(
                    page.source,
                    f"translation_key {page.translation_key!r} is also used by {other.source}",
                )
            other = orders.setdefault((page.language, page.order), page)
            if other is not page:
                self.warn(page.source, f"order {page.order} is also used by {other.source}")

    def check_translations(self, pages: list[Page]) -> None:
        """Every translation key in every language, unless translations.toml says why not."""
        path = self.content_dir / TRANSLATIONS_FILE
        exceptions = self.read_toml(TRANSLATIONS_FILE, if_missing=None) or {}
        for key, entry in exceptions.items():
            reason = entry.get("reason") if isinstance(entry, dict) else None
            if not isinstance(reason, str) or not reason.strip():
                self.error(path, f"[{key}] needs a 'reason': why is this page not translated?")
        by_key: dict[str, dict[str, Page]] = {}
        for page in pages:
            by_key.setdefault(page.translation_key, {})[page.language] = page
        for key, versions in sorted(by_key.items()):
            missing = [lang for lang in LANGUAGES if lang not in versions]
            if missing and key not in exceptions:
                first = versions[next(lang for lang in LANGUAGES if lang in versions)]
                self.error(
                    first.source,
                    f"has no translation in {', '.join(missing)} (translation_key {key!r}): "
                    f"write it, or list [{key}] with its reason in {TRANSLATIONS_FILE}",
                )
            elif not missing and key in exceptions:
                self.warn(
                    path,
                    f"[{key}] is listed as untranslated, but the page now exists in "
                    f"{', '.join(LANGUAGES)}: remove the entry",
                )
        for key in sorted(set(exceptions) - set(by_key)):
            self.warn(path, f"[{key}] is listed, but no page has translation_key {key!r}")

    def check_homes(self, pages: list[Page]) -> None:
        """A language without a home page gets a generated one: nothing may take its place."""
        homes = {p.language for p in pages if p.translation_key == HOME_KEY}
        for page in pages:
            if (
                page.language not in homes
                and page.output == f"{output_prefix(page.language)}index.html"
            ):
                self.error(
                    page.source,
                    f"is built as {page.output}, the home page of {page.language!r}: "
                    f"give it translation_key: {HOME_KEY}, or another slug",
                )

    def read_glossaries(self, pages: list[Page]) -> dict[str, dict[str, GlossaryEntry]]:
        glossaries: dict[str, dict[str, GlossaryEntry]] = {}
        for page in pages:
            if not page.glossary:
                continue
            if page.language in glossaries:
                self.error(page.source, f"is a second glossary for language {page.language!r}")
                continue
            entries: dict[str, GlossaryEntry] = {}
            for idx, token in enumerate(page.tokens):
                if token.type != "dt_open":
                    continue
                term = inline_text(page.tokens[idx + 1], {})
                key = slugify(term)
                if key in entries or key in page.anchors:
                    self.error(page.source, f"defines the term {term!r} twice")
                    continue
                token.attrSet("id", key)
                entries[key] = GlossaryEntry(term=term, key=key, page=page)
                page.anchors.add(key)
            if not entries:
                self.error(
                    page.source,
                    "is a glossary but defines no terms (use 'Term' then ': definition')",
                )
            # A reader's order: "Lénalidomide" before "Lyse", whatever the code points say.
            terms = [_collation_key(e.term) for e in entries.values()]
            if terms != sorted(terms):
                self.warn(page.source, "glossary terms are not in alphabetical order")
            glossaries[page.language] = entries
        return glossaries

    def check_page(
        self,
        page: Page,
        by_source: dict[Path, Page],
        glossaries: dict[str, dict[str, GlossaryEntry]],
        used_terms: set[tuple[str, str]],
    ) -> None:
        values = page.values
        glossary = glossaries.get(page.language, {})
        level = 1
        for token in walk(page.tokens):
            if token.type == "heading_open":
                new_level = int(token.tag[1])
                if new_level == 1:
                    self.error(
                        page.source,
                        "has a level-1 heading: the title is the only one; start at '##'",
                    )
                elif new_level > level + 1:
                    self.warn(page.source, f"skips a heading level (h{level} to h{new_level})")
                level = new_level
            elif token.type == "placeholder":
                if token.meta["name"] not in values:
                    known = ", ".join(sorted(values))
                    self.error(
                        page.source,
                        f"unknown placeholder {{{{ {token.meta['name']} }}}} (known: {known})",
                    )
            elif token.type == "glossary_term":
                key = resolve_term(token.meta["key"], glossary)
                token.meta["key"] = key
                if key not in glossary:
                    self.error(
                        page.source,
                        f"unknown glossary term {token.meta['term']!r}: "
                        f"it is not defined in the {page.language!r} glossary",
                    )
                elif not page.glossary:
                    used_terms.add((page.language, key))
            elif token.type == "link_open":
                self.check_link(page, token, by_source)
            elif token.type == "image":
                self.error(page.source, "has an image: images are not supported yet")
            elif token.type == "text" and token.content.lstrip().startswith(":::"):
                self.error(
                    page.source,
                    f"unknown box {token.content.strip()!r} (known: ::: urgent, ::: note)",
                )
        if not page.glossary and glossary:
            self.check_first_use(page, glossary)

    def check_link(self, page: Page, token: Token, by_source: dict[Path, Page]) -> None:
        href = str(token.attrGet("href") or "")
        scheme = _SCHEME_RE.match(href)
        if scheme:
            if scheme.group(1).lower() not in EXTERNAL_SCHEMES:
                self.error(page.source, f"link {href!r} uses a scheme that is not allowed")
            return
        path_part, _, fragment = href.partition("#")
        if not path_part:
            target = page
        else:
            if not path_part.endswith(".md"):
                self.error(page.source, f"broken link {href!r}: link to another page's .md file")
                return
            resolved = (page.source.parent / path_part).resolve()
            target = by_source.get(resolved)
            if target is None:
                self.error(page.source, f"broken link {href!r}: no such page")
                return
        if fragment and fragment not in target.anchors:
            self.error(
                page.source, f"broken link {href!r}: {target.rel} has no section #{fragment}"
            )
            return
        # Resolved now, rendered later: the href becomes the built page's relative URL.
        token.attrSet("href", relative_url(page.output, target.output, fragment))

    def check_first_use(self, page: Page, glossary: dict[str, GlossaryEntry]) -> None:
        """Warn when a glossary term appears in the prose before it is linked."""
        segments: list[tuple[str, str | None]] = []
        in_heading = False
        for token in page.tokens:
            # Headings are left out: a term is explained in the prose, not in a title.
            if token.type in ("heading_open", "heading_close"):
                in_heading = token.type == "heading_open"
            if token.type != "inline" or in_heading:
                continue
            in_link = False
            for child in token.children or []:
                if child.type == "link_open":
                    in_link = True
                elif child.type == "link_close":
                    in_link = False
                elif child.type == "glossary_term":
                    segments.append((child.meta["label"], child.meta["key"]))
                elif child.type == "text" and not in_link:
                    segments.append((child.content, None))
        for key, entry in glossary.items():
            pattern = term_pattern(entry.term)
            for text, linked_key in segments:
                # Inside the link of a longer term ("follicular lymphoma"), a shorter
                # term ("lymphoma") is explained by that link: not a first use.
                if linked_key not in (None, key):
                    continue
                if pattern.search(text):
                    if linked_key != key:
                        self.warn(
                            page.source,
                            f"uses the term {entry.term!r} before linking it to the glossary "
                            f"(write [[{entry.term}]] at its first use)",
                        )
                    break


def resolve_term(key: str, glossary: dict[str, GlossaryEntry]) -> str:
    """The glossary key a link means, allowing a plural: "steroids" finds "steroid"."""
    for candidate in (key, key.removesuffix("s"), key.removesuffix("es")):
        if candidate in glossary:
            return candidate
    return key


def term_pattern(term: str) -> re.Pattern[str]:
    """Find a glossary term in text: whole words, plural allowed.

    Abbreviations (two capitals or more, such as "ALL" or "CMV") match their
    case only, so the word "all" is not taken for the leukaemia.
    """
    flags = 0 if sum(c.isupper() for c in term) >= 2 else re.IGNORECASE
    return re.compile(rf"(?<![\w-]){re.escape(term)}(?:s|es)?(?![\w-])", flags)


def load_site(content_dir: Path, *, seeds_dir: Path | None = None, strict: bool = False) -> Site:
    """Read and validate every page under ``content_dir``.

    Raises ``BuildError`` listing every error (and, when ``strict``, every
    warning), each with its file. Returns the site with its warnings otherwise.
    """
    reader = _Reader(content_dir, seeds_dir)
    if not content_dir.is_dir():
        raise BuildError([Problem(content_dir, "content folder not found")])
    sources = reader.read_sources()
    pages = [
        page
        for path in sorted(content_dir.rglob("*.md"))
        if (page := reader.read_page(path, sources)) is not None
    ]
    if not pages:
        reader.error(content_dir, "has no pages (*.md files)")
    reader.check_unique(pages)
    reader.check_translations(pages)
    reader.check_homes(pages)
    glossaries = reader.read_glossaries(pages)
    by_source = {p.source.resolve(): p for p in pages}
    used_terms: set[tuple[str, str]] = set()
    for page in pages:
        reader.check_page(page, by_source, glossaries, used_terms)
    for language, entries in glossaries.items():
        for key, entry in entries.items():
            if (language, key) not in used_terms:
                reader.warn(
                    entry.page.source, f"the term {entry.term!r} is never linked from a page"
                )
    errors = [p for p in reader.problems if not p.warning]
    warnings = [p for p in reader.problems if p.warning]
    if errors or (strict and warnings):
        raise BuildError(errors + warnings)
    return Site(content_dir, pages, sources, glossaries, warnings)


def _collation_key(term: str) -> str:
    """``term`` case-folded without its accents: the order of a dictionary in en, fr and nl."""
    decomposed = unicodedata.normalize("NFKD", term.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))
