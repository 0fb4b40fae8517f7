"""Splitting a completion into reasoning steps and joining them back, losslessly.

``join_steps(split_steps(text, domain), delimiter) == text`` for every text: a split
happens only at an occurrence of the delimiter, and joining puts it back.

Math splits at every ``"\\n\\n"``. Code splits at a blank line only where it is a
statement boundary: never inside a string literal, a comment's quote, or an open
bracket. In a chat answer with Markdown fences, prose outside the fences splits like
math and code inside them like code.
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_DELIMITER = "\n\n"
_DOMAIN_DELIMITERS: dict[str, str] = {"math": "\n\n", "code": "\n\n"}


def default_delimiter(domain: str) -> str:
    """The step delimiter a domain uses unless the user sets one."""
    return _DOMAIN_DELIMITERS.get(domain, DEFAULT_DELIMITER)


def join_steps(steps: Sequence[str], delimiter: str = DEFAULT_DELIMITER) -> str:
    return delimiter.join(steps)


def split_steps(text: str, domain: str = "math", delimiter: str | None = None) -> list[str]:
    """Split ``text`` into steps.

    >>> split_steps("a = 1\\n\\nb = 2")
    ['a = 1', 'b = 2']
    >>> split_steps("s = '''x\\n\\ny'''\\n\\nprint(s)", domain="code")
    ["s = '''x\\n\\ny'''", 'print(s)']
    >>> split_steps("f(1,\\n\\n  2)", domain="code")
    ['f(1,\\n\\n  2)']
    """
    delim = delimiter or default_delimiter(domain)
    if domain != "code":
        return text.split(delim)
    cuts = _code_cut_points(text, delim)
    steps, start = [], 0
    for cut in cuts:
        steps.append(text[start:cut])
        start = cut + len(delim)
    steps.append(text[start:])
    return steps


def _code_cut_points(text: str, delim: str) -> list[int]:
    """Offsets of delimiter occurrences that lie at a statement boundary."""
    fenced = "```" in text
    scanner = _PyScanner()
    in_code = not fenced
    cuts: list[int] = []
    i, n = 0, len(text)
    while i < n:
        at_line_start = i == 0 or text[i - 1] == "\n"
        if fenced and at_line_start and text.startswith("```", i) and scanner.at_boundary():
            in_code = not in_code
            scanner = _PyScanner()
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        if text.startswith(delim, i) and (not in_code or scanner.at_boundary()):
            cuts.append(i)
            i += len(delim)
            continue
        i = scanner.feed(text, i) if in_code else i + 1
    return cuts


class _PyScanner:
    """Tracks whether a position in Python source is inside a string or brackets."""

    def __init__(self) -> None:
        self.quote: str | None = None  # ', ", ''' or """
        self.depth = 0

    def at_boundary(self) -> bool:
        return self.quote is None and self.depth == 0

    def feed(self, text: str, i: int) -> int:
        """Consume the token starting at ``i`` and return the next offset."""
        ch = text[i]
        if self.quote is not None:
            if ch == "\\":
                return i + 2
            if text.startswith(self.quote, i):
                end = i + len(self.quote)
                self.quote = None
                return end
            if ch == "\n" and len(self.quote) == 1:  # unterminated one-line string
                self.quote = None
            return i + 1
        if ch == "#":
            end = text.find("\n", i)
            return len(text) if end < 0 else end
        if ch in "'\"":
            triple = ch * 3
            self.quote = triple if text.startswith(triple, i) else ch
            return i + len(self.quote)
        if ch in "([{":
            self.depth += 1
        elif ch in ")]}":
            self.depth = max(0, self.depth - 1)
        return i + 1
