"""HTML as readable text for `web_fetch` (SPEC §5.3), with the standard library's parser.

Scripts, styles and the page's chrome (navigation, header, footer, asides) are dropped; each block
element becomes a line, headings keep `#` marks and list items a `- `; whitespace collapses except
inside `<pre>`. Links come back as absolute http(s) URLs, the first MAX_LINKS of them.
"""

import re
from html.parser import HTMLParser
from urllib.parse import urldefrag, urljoin

import msgspec

MAX_LINKS = 50
DROPPED = frozenset(
    {"script", "style", "nav", "header", "footer", "aside", "noscript", "svg", "template", "iframe"}
)
BLOCKS = frozenset(
    {
        "address", "article", "blockquote", "br", "dd", "details", "div", "dl", "dt", "fieldset",
        "figcaption", "figure", "form", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "li", "main",
        "ol", "p", "pre", "section", "summary", "table", "title", "tr", "ul",
    }
)  # fmt: skip
HEADINGS = {f"h{level}": "#" * level + " " for level in range(1, 7)}
_SPACES = re.compile(r"\s+")


class Page(msgspec.Struct, frozen=True, kw_only=True):
    text: str
    links: list[str]


def page(html: str, base_url: str) -> Page:
    """The readable text of an HTML document and the links in it."""
    parser = _Reader(base_url)
    parser.feed(html)
    parser.close()
    return Page(text=parser.text(), links=parser.links)


class _Reader(HTMLParser):
    """One document's text as lines, collected while the parser walks it."""

    def __init__(self, base_url: str) -> None:
        super().__init__(convert_charrefs=True)
        self.base_url = base_url
        self.lines: list[str] = []
        self.line: list[str] = []
        self.links: list[str] = []
        self.dropped_depth = 0  # inside this many dropped elements
        self.pre_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROPPED:
            self.dropped_depth += 1
            return
        found = dict(attrs)
        if tag == "base" and found.get("href"):
            self.base_url = urljoin(self.base_url, found["href"] or "")
        if tag == "a" and found.get("href"):
            self._link(found["href"] or "")
        if tag in BLOCKS:
            self._break()
        if tag == "pre":
            self.pre_depth += 1
        if self.dropped_depth == 0:
            self.line.append(HEADINGS.get(tag, "- " if tag == "li" else ""))

    def handle_endtag(self, tag: str) -> None:
        if tag in BLOCKS:
            self._break()
        elif tag in ("td", "th"):
            self.line.append(" ")
        if tag in DROPPED:
            self.dropped_depth = max(0, self.dropped_depth - 1)
        elif tag == "pre":
            self.pre_depth = max(0, self.pre_depth - 1)

    def handle_data(self, data: str) -> None:
        if self.dropped_depth:
            return
        if not self.pre_depth:
            self.line.append(_SPACES.sub(" ", data))
            return
        first, *rest = data.split("\n")
        self.line.append(first)
        for piece in rest:  # a preformatted line break ends the line as it is
            self.lines.append("".join(self.line).rstrip())
            self.line = [piece]

    def _break(self) -> None:
        text = "".join(self.line)
        self.line = []
        if self.pre_depth:
            self.lines.append(text.rstrip())
        elif (stripped := _SPACES.sub(" ", text).strip()).strip("#- "):  # not a bare mark
            self.lines.append(stripped)

    def _link(self, href: str) -> None:
        url, _ = urldefrag(urljoin(self.base_url, href.strip()))
        is_web = url.startswith(("http://", "https://"))
        if is_web and url not in self.links and len(self.links) < MAX_LINKS:
            self.links.append(url)

    def text(self) -> str:
        self._break()
        return "\n".join(line for line in self.lines if line.strip())
