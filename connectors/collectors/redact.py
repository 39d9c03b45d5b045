"""Keep secrets out of logs and error messages.

Targets carry DSNs with passwords, and driver errors sometimes echo the DSN back. Anything
about a target that is printed goes through `redact` (one DSN) or `redact_text` (free text
plus the literal secrets we know of).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final
from urllib.parse import unquote

MASK: Final = "***"

# scheme://user:password@host  (password up to the last `@` before the host part)
_URL_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:/?#@\s]*:)(?P<pw>[^\s/?#]*)(?P<at>@)")
# ?password=... / &password=... in URL query strings, and libpq key=value pairs
_KEYWORD = re.compile(
    r"(?P<key>\b(?:password|passwd|pwd|sslpassword|secret|token|api[_-]?key)\s*=\s*)"
    r"(?P<value>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s&;]*)",
    re.IGNORECASE,
)


def redact(dsn: str) -> str:
    """`dsn` with every password replaced by `***`: URL userinfo, `?password=` and libpq
    `password=...` (quoted or not). Also safe on free text that merely contains a DSN."""
    out = _URL_USERINFO.sub(lambda m: m["head"] + MASK + m["at"] if m["pw"] else m[0], dsn)
    return _KEYWORD.sub(lambda m: m["key"] + MASK, out)


def password_of(dsn: str) -> str | None:
    """The literal password in a URL or key=value DSN, to scrub it from driver messages."""
    m = _URL_USERINFO.search(dsn)
    if m and m["pw"]:
        return unquote(m["pw"])
    m = _KEYWORD.search(dsn)
    if m and m["value"]:
        value = m["value"]
        if value[0] in "'\"" and value[-1] == value[0] and len(value) >= 2:
            value = value[1:-1]
        return value or None
    return None


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """`text` with DSN passwords masked and each known secret (3+ chars) removed verbatim."""
    out = redact(text)
    for secret in secrets:
        if secret and len(secret) >= 3:
            out = out.replace(secret, MASK)
    return out
