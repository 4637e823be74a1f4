"""A small HTML reader for the site tests (standard library only)."""

from __future__ import annotations

from html.parser import HTMLParser

# Elements without an end tag: they never hold text, so they are not kept open.
VOID = frozenset(
    {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }
)


class PageFacts(HTMLParser):
    """Ids, links, resources, the title and the text inside each CSS class of one page.

    Also the ``<link rel="alternate" hreflang>`` of the page (``alternates``) and
    the links of its language switch (``switch``), both by language.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()
        self.links: list[str] = []
        self.resources: list[str] = []
        self.lang: str | None = None
        self.alternates: dict[str, str] = {}
        self.switch: dict[str, str] = {}
        self.title = ""
        self.text_by_class: dict[str, list[str]] = {}
        self._open: list[tuple[str, list[str]]] = []
        self._parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if "id" in values:
            self.ids.add(values["id"])
        if tag == "html":
            self.lang = values.get("lang")
        if tag == "a" and "href" in values:
            self.links.append(values["href"])
            if any("language-switch" in classes for _tag, classes in self._open):
                self.switch[values.get("lang", "")] = values["href"]
        if tag == "link" and values.get("rel") == "alternate":
            self.alternates[values.get("hreflang", "")] = values.get("href", "")
        if tag in ("link", "script", "img", "iframe", "source", "audio", "video"):
            resource = values.get("href") or values.get("src")
            if resource:
                self.resources.append(resource)
        if tag in VOID:
            return
        classes = values.get("class", "").split()
        self._open.append((tag, classes))
        for name in classes:
            self.text_by_class.setdefault(name, []).append("")

    def handle_endtag(self, tag: str) -> None:
        for index in range(len(self._open) - 1, -1, -1):
            if self._open[index][0] == tag:
                del self._open[index:]
                break

    def handle_data(self, data: str) -> None:
        self._parts.append(data)
        if any(tag == "title" for tag, _ in self._open):
            self.title += data
        for _tag, classes in self._open:
            for name in classes:
                self.text_by_class[name][-1] += data

    @property
    def text(self) -> str:
        """All text of the page, whitespace collapsed."""
        return " ".join("".join(self._parts).split())


def parse(html: str) -> PageFacts:
    """Read one page."""
    facts = PageFacts()
    facts.feed(html)
    facts.close()
    return facts
