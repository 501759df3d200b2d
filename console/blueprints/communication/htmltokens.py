"""A linear HTML tokenizer for rendered email bodies: start tags with attribute spans, end tags and text.

The stdlib `html.parser` of Python 3.11 re-scans unterminated tags and takes minutes on `"<a " * 66000`;
this one looks at every character once (each `find` either succeeds and moves on, or ends the scan) and
follows the HTML tokenizer's rules closely enough for links and text: comments, doctypes, raw-text
elements, quoted and unquoted attribute values, and a tag left open at the end is dropped as browsers do.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

RAW_TEXT = {"script", "style", "textarea", "title"}
_SPACE = " \t\n\r\f"
_CLOSE_RAW = {name: re.compile(rf"</{name}[\s/>]", re.IGNORECASE) for name in RAW_TEXT}


@dataclass
class Attr:
    name: str
    value: str | None
    start: int  # span of the raw value (without quotes) in the markup; start == end when there is none
    end: int
    quote: str = ""


@dataclass
class Token:
    kind: str  # "start", "end" or "text"
    start: int
    end: int
    name: str = ""
    text: str = ""
    attrs: list[Attr] = field(default_factory=list)

    def attr(self, name: str) -> Attr | None:
        return next((a for a in self.attrs if a.name == name), None)


def _read_start_tag(markup: str, i: int) -> Token | None:
    """Parse the start tag opening at markup[i] == '<'; None when it never closes."""
    n, pos = len(markup), i + 1
    while pos < n and markup[pos] not in _SPACE and markup[pos] not in "/>":
        pos += 1
    token = Token("start", i, i, name=markup[i + 1:pos].lower())
    while True:
        while pos < n and (markup[pos] in _SPACE or markup[pos] == "/"):
            pos += 1
        if pos >= n:
            return None
        if markup[pos] == ">":
            token.end = pos + 1
            return token
        name_start = pos
        pos += 1  # a first '=' belongs to the name
        while pos < n and markup[pos] not in _SPACE and markup[pos] not in "/>=":
            pos += 1
        name = markup[name_start:pos].lower()
        while pos < n and markup[pos] in _SPACE:
            pos += 1
        if pos < n and markup[pos] == "=":
            pos += 1
            while pos < n and markup[pos] in _SPACE:
                pos += 1
            if pos >= n:
                return None
            if markup[pos] in "\"'":
                quote = markup[pos]
                close = markup.find(quote, pos + 1)
                if close < 0:
                    return None
                token.attrs.append(Attr(name, markup[pos + 1:close], pos + 1, close, quote))
                pos = close + 1
            else:
                value_start = pos
                while pos < n and markup[pos] not in _SPACE and markup[pos] != ">":
                    pos += 1
                token.attrs.append(Attr(name, markup[value_start:pos], value_start, pos))
        else:
            token.attrs.append(Attr(name, None, pos, pos))


def tokens(markup: str) -> Iterator[Token]:
    """Text, start and end tags in document order; comments and doctypes are skipped."""
    i, n = 0, len(markup)
    last_close = markup.rfind(">")  # a tag opening after the last '>' can never close
    while i < n:
        lt = markup.find("<", i)
        if lt < 0:
            yield Token("text", i, n, text=markup[i:])
            return
        if lt > i:
            yield Token("text", i, lt, text=markup[i:lt])
        following = markup[lt + 1:lt + 2]
        if markup.startswith("<!--", lt):
            close = markup.find("-->", lt + 4)
            if close < 0:
                return
            i = close + 3
        elif following in ("!", "?"):
            close = markup.find(">", lt)
            if close < 0:
                return
            i = close + 1
        elif following == "/":
            close = markup.find(">", lt)
            if close < 0:
                return
            name = markup[lt + 2:close].split(None, 1)
            yield Token("end", lt, close + 1, name=name[0].lower() if name else "")
            i = close + 1
        elif following.isascii() and following.isalpha():
            token = _read_start_tag(markup, lt) if lt < last_close else None
            if token is None:
                return  # a tag still open at the end of the input is dropped, as a browser does
            yield token
            i = token.end
            if token.name in RAW_TEXT:
                match = _CLOSE_RAW[token.name].search(markup, i)
                stop = match.start() if match else n
                if stop > i:
                    yield Token("text", i, stop, text=markup[i:stop])
                i = stop
        else:
            yield Token("text", lt, lt + 1, text="<")
            i = lt + 1
