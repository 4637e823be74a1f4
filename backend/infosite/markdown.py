"""Markdown for the information site: markdown-it-py with two small shortcodes.

- ``[[CMV]]`` or ``[[CMV|cytomegalovirus (CMV)]]`` links a word to its entry in
  the glossary of the page's language (the key is the glossary term, the text
  after ``|`` is what the reader sees).
- ``{{ urgent_advice }}``, ``{{ fever_c }}``... insert a clinical value from
  ``reminders.core.clinical_rules`` (see ``clinical.py``).

Raw HTML is switched off: content is plain Markdown, so an author cannot break
the page structure the accessibility tests rely on. Parsing (``parse``) and
rendering (``render``) are separate so the builder can validate every page
before it writes any file.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from html import escape

from markdown_it import MarkdownIt
from markdown_it.renderer import RendererHTML
from markdown_it.rules_inline import StateInline
from markdown_it.token import Token
from markdown_it.utils import EnvType, OptionsDict
from mdit_py_plugins.anchors import anchors_plugin
from mdit_py_plugins.container import container_plugin
from mdit_py_plugins.deflist import deflist_plugin

from backend.infosite.clinical import RED_FLAG_PREFIX, SENTENCE_PLACEHOLDERS

# Boxes an author may put around a few paragraphs: ``::: urgent`` ... ``:::``.
CONTAINERS = ("urgent", "note")


def slugify(text: str) -> str:
    """ASCII id for a heading or glossary term: "Fièvre et signes" -> "fievre-et-signes"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def _shortcode(opening: str, closing: str, token_type: str) -> Callable[[StateInline, bool], bool]:
    """An inline rule turning ``opening inner closing`` (on one line) into one token."""

    def rule(state: StateInline, silent: bool) -> bool:
        start = state.pos
        if not state.src.startswith(opening, start):
            return False
        end = state.src.find(closing, start + len(opening))
        if end < 0:
            return False
        inner = state.src[start + len(opening) : end]
        if not inner.strip() or "\n" in inner:
            return False
        if not silent:
            token = state.push(token_type, "", 0)
            token.content = inner.strip()
            if token_type == "glossary_term":
                key, _, label = inner.partition("|")
                token.meta = {
                    "key": slugify(key),
                    "term": key.strip(),
                    "label": (label or key).strip(),
                }
            else:
                token.meta = {"name": inner.strip()}
        state.pos = end + len(closing)
        return True

    return rule


def _render_container(name: str) -> Callable[..., str]:
    def render(
        self: RendererHTML, tokens: Sequence[Token], idx: int, _options: OptionsDict, _env: EnvType
    ) -> str:
        if tokens[idx].nesting == 1:
            return f'<div class="callout callout-{name}">\n'
        return "</div>\n"

    return render


def _render_glossary_term(
    self: RendererHTML, tokens: Sequence[Token], idx: int, _options: OptionsDict, env: EnvType
) -> str:
    meta = tokens[idx].meta
    href = env["term_href"](meta["key"])
    return f'<a class="term" href="{escape(href)}">{escape(meta["label"])}</a>'


def _render_placeholder(
    self: RendererHTML, tokens: Sequence[Token], idx: int, _options: OptionsDict, env: EnvType
) -> str:
    name = tokens[idx].meta["name"]
    text = escape(env["values"][name], quote=False)
    if name in SENTENCE_PLACEHOLDERS:
        # The class lets the consistency test find the sentence in the built page.
        return f'<strong class="advice advice-{name.replace("_", "-")}">{text}</strong>'
    if name.startswith(RED_FLAG_PREFIX):
        # The class lets the consistency test find each red flag in the built page.
        flag_id = name.removeprefix(RED_FLAG_PREFIX).replace("_", "-")
        return f'<span class="red-flag red-flag-{flag_id}">{text}</span>'
    return text


def make_markdown() -> MarkdownIt:
    """The one Markdown configuration every page is parsed and rendered with."""
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table")
    deflist_plugin(md)
    anchors_plugin(md, min_level=2, max_level=4, slug_func=slugify)
    for name in CONTAINERS:
        container_plugin(md, name, render=_render_container(name))
    # Before "link" so that "[[term]]" is never read as a reference link.
    md.inline.ruler.before("link", "glossary_term", _shortcode("[[", "]]", "glossary_term"))
    md.inline.ruler.before("link", "placeholder", _shortcode("{{", "}}", "placeholder"))
    md.add_render_rule("glossary_term", _render_glossary_term)
    md.add_render_rule("placeholder", _render_placeholder)
    return md


def walk(tokens: list[Token]) -> Iterator[Token]:
    """Every token, block and inline, in document order."""
    for token in tokens:
        yield token
        if token.children:
            yield from walk(token.children)


def inline_text(token: Token, values: dict[str, str]) -> str:
    """What a reader sees of one inline token: markup gone, shortcodes filled in."""
    parts: list[str] = []
    for child in token.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
        elif child.type == "glossary_term":
            parts.append(child.meta["label"])
        elif child.type == "placeholder":
            parts.append(values.get(child.meta["name"], ""))
    return re.sub(r"\s+", " ", "".join(parts)).strip()


def text_blocks(
    tokens: list[Token], values: dict[str, str], *, headings: bool = False
) -> list[str]:
    """The text of each paragraph, list item, table cell and definition, in order.

    Headings are left out unless asked for: the readability check measures the
    prose, and short headings would flatter its score.
    """
    blocks: list[str] = []
    in_heading = False
    for token in tokens:
        if token.type == "heading_open":
            in_heading = True
        elif token.type == "heading_close":
            in_heading = False
        elif token.type == "inline" and (headings or not in_heading):
            text = inline_text(token, values)
            if text:
                blocks.append(text)
    return blocks


def sentences_text(blocks: list[str]) -> str:
    """Join blocks into running text, ending each with a full stop if it has none.

    A list item such as "Shivering or shaking" is a unit of its own for a
    reader; without the stop, readability formulas would count a whole list as
    one very long sentence.
    """
    return " ".join(b if b[-1] in ".!?:" else b + "." for b in blocks)
