"""The rule for text that is stored and shown again: no control or format characters.

Unicode's Cc (NUL, escape, line breaks...) and Cf (bidirectional overrides, zero-width
characters...) let a name look like another, break log lines and headers, and PostgreSQL refuses
NUL outright; lone surrogates (Cs) cannot be encoded at all. One check, used for every text a
user stores (ID parts, trigger, title, description, tags, yank reason, token name) and for the
name and metadata kept from a file.
"""

from __future__ import annotations

import unicodedata

from pseudoword.registry.core.errors import InvalidRequest, PseudowordError

_REFUSED = frozenset({"Cc", "Cf", "Cs"})
#: Line breaks and tabs are allowed where text runs over several lines (a description).
_MULTILINE = frozenset("\n\r\t")


def check_text(value: str, what: str, *, multiline: bool = False,
               error: type[PseudowordError] = InvalidRequest) -> str:
    """Return ``value`` unchanged, or raise ``error`` naming the first refused character."""
    if value.isprintable() or not value:
        return value
    for index, char in enumerate(value):
        if unicodedata.category(char) in _REFUSED and not (multiline and char in _MULTILINE):
            raise error(f"{what} holds the control or format character U+{ord(char):04X} at position {index}; "
                        "such characters are not allowed", {"field": what, "position": index,
                                                            "character": f"U+{ord(char):04X}"})
    return value
