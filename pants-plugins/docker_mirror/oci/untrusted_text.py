"""Untrusted text (spec lines, references, registry answers) in messages: control characters
escaped, long text cut."""

from __future__ import annotations

QUOTE_LIMIT = 80


def _escape_char(char: str) -> str:
    code = ord(char)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: str) -> str:
    """`text` with non-printable characters escaped (tabs kept), so terminals show them."""
    if text.replace("\t", " ").isprintable():
        return text
    return "".join(c if c == "\t" or c.isprintable() else _escape_char(c) for c in text)


def shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text)} characters)"


def quote(text: str) -> str:
    shown = visible(shorten(text, QUOTE_LIMIT))
    # Switch quotes rather than escape, so a stray quote in the input stays recognisable.
    return f"'{shown}'" if '"' in shown and "'" not in shown else f'"{shown}"'

