"""Strings from a trace or a script, made inert for the place they are shown.

A trace is data from anywhere: an operator, kernel or file name in it can hold terminal escape
sequences (set the window title, write a hyperlink, move the cursor, `\\r` to overwrite a line),
bidirectional overrides that make text read differently from what it is, or Markdown that
would ping a GitHub team or make a link in a PR comment. Every renderer that shows such a
string goes through one of these functions:

- `terminal_safe` for the terminal (console output, warnings, error lines);
- `md_text`, `md_code`, `md_fence` for Markdown (report.md, gate.md).

Unsafe characters are shown as visible escapes (`\\x1b`, `\\u202e`) rather than dropped, so a
hostile name is recognisable for what it is and nothing of it can act on the terminal.
"""

from __future__ import annotations

import re
from typing import Any

# C0 controls (but tab), DEL, C1 controls (0x80-0x9f, incl. the 8-bit CSI/OSC/DCS/ST
# introducers), the bidirectional marks, embeddings, overrides and isolates, and the Unicode
# line and paragraph separators (some terminals and editors break lines on them).
_UNSAFE_CHARS = ("\x00-\x08\x0a-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                 "\u202a-\u202e\u2066-\u2069")
_UNSAFE = re.compile(f"[{_UNSAFE_CHARS}]")
_UNSAFE_KEEP_NEWLINES = re.compile(f"[{_UNSAFE_CHARS.replace(chr(10) + '-', chr(11) + '-')}]")


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\n":
        return "\\n"
    if char == "\r":
        return "\\r"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def terminal_safe(text: Any, multiline: bool = False) -> str:
    """`text` with every control character (ESC, BEL, `\\r`, `\\b`, DEL, C1) and bidi override
    shown as a visible escape; tabs stay, newlines stay only when `multiline`."""
    if multiline:
        return _UNSAFE_KEEP_NEWLINES.sub(_visible, str(text).replace("\r\n", "\n"))
    return _UNSAFE.sub(_visible, str(text))


# ---------------------------------------------------------------------------- Markdown
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]|~])")
# Characters that make markup only at the start of a line: headings, lists, quotes.
_MD_LEADING = re.compile(r"^(\d+)([.)])|^([#+\-=])")
# Words GitHub would turn into a mention, an email link or a URL link: shown as code instead.
_MD_LINKISH = re.compile(r"@|://|\bwww\.", re.IGNORECASE)


def _one_line(text: Any, limit: int) -> str:
    s = " ".join(terminal_safe(text, multiline=True).split())
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s


def _escape_word(word: str) -> str:
    word = word.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", word)


def _span(s: str) -> str:
    s = s.replace("|", "\\|")  # GFM splits table cells on | even inside code spans
    longest = max((len(m) for m in re.findall(r"`+", s)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if s.startswith("`") or s.endswith("`") or not s else ""
    return f"{ticks}{pad}{s}{pad}{ticks}"


def md_text(text: Any, limit: int = 200) -> str:
    """Plain text for Markdown, one line: no markup, no HTML, no table breaks; words that GitHub
    would make a mention or a link (`@org/team`, `https://…`, `www.…`, `a@b.c`) become code
    spans, where GitHub does neither."""
    words = _one_line(text, limit).split(" ")
    out = [_span(w) if _MD_LINKISH.search(w) else _escape_word(w) for w in words]
    s = " ".join(out)
    return _MD_LEADING.sub(lambda m: f"{m.group(1)}\\{m.group(2)}" if m.group(1) else f"\\{m.group(3)}", s)


def md_code(text: Any, limit: int = 200) -> str:
    """An inline code span fenced with more backticks than `text` holds, `|` escaped for tables."""
    return _span(_one_line(text, limit))


def md_fence(text: str, lang: str = "", max_lines: int = 60) -> str:
    """A fenced code block longer than any backtick run inside `text`."""
    lines = terminal_safe(text, multiline=True).rstrip("\n").splitlines()
    if len(lines) > max_lines:
        lines = [*lines[:max_lines], f"… ({len(lines) - max_lines} more lines)"]
    body = "\n".join(lines)
    longest = max((len(m) for m in re.findall(r"`{3,}", body)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{body}\n{ticks}"
