"""Bearer tokens with a read or write scope (write includes read).

Tokens come from API_TOKENS (`name:scope:token,...`) and API_TOKENS_FILE (one per line, `#`
comments). A token is only ever compared (in constant time, against every configured token)
and never echoed: problems name the entry by its position and name, not its secret.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

NAME: Final = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
MIN_TOKEN_CHARS: Final = 16
MAX_TOKEN_CHARS: Final = 512


class Scope(enum.Enum):
    READ = "read"
    WRITE = "write"

    def allows(self, need: Scope) -> bool:
        return self is Scope.WRITE or need is Scope.READ


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's name (written into the audit) and its scope."""

    name: str
    scope: Scope


ANONYMOUS: Final = Principal("anonymous", Scope.READ)


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    scope: Scope
    digest: bytes  # sha256 of the secret: equal lengths for compare_digest, no secret kept around

    def __repr__(self) -> str:  # never the secret, even in a traceback
        return f"Token({self.name!r}, {self.scope.value})"


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def parse_tokens(entries: Iterable[tuple[str, str]]) -> tuple[tuple[Token, ...], list[str]]:
    """(where, `name:scope:token`) entries -> tokens and the problems (one line each, no secret)."""
    tokens: list[Token] = []
    problems: list[str] = []
    names: set[str] = set()
    for where, raw in entries:
        parts = raw.strip().split(":", 2)
        if len(parts) != 3:
            problems.append(f"{where}: expected name:scope:token")
            continue
        name, scope, secret = parts
        if not NAME.fullmatch(name):
            problems.append(f"{where}: name {name!r} must be 1-64 of A-Z a-z 0-9 _ . @ -")
            continue
        if scope not in ("read", "write"):
            problems.append(f"{where} ({name}): scope must be read or write")
            continue
        if not MIN_TOKEN_CHARS <= len(secret) <= MAX_TOKEN_CHARS or not secret.isprintable() or " " in secret:
            problems.append(
                f"{where} ({name}): the token must be {MIN_TOKEN_CHARS}-{MAX_TOKEN_CHARS} printable "
                "characters without spaces (e.g. `openssl rand -hex 24`)"
            )
            continue
        if name in names:
            problems.append(f"{where}: name {name!r} is used twice (the audit could not tell them apart)")
            continue
        names.add(name)
        tokens.append(Token(name, Scope(scope), _digest(secret)))
    return tuple(tokens), problems


def token_entries(api_tokens: str, tokens_file: Path | None) -> tuple[list[tuple[str, str]], list[str]]:
    """The entries of API_TOKENS and API_TOKENS_FILE, and the problem of an unreadable file."""
    entries = [(f"API_TOKENS entry {i + 1}", e) for i, e in enumerate(api_tokens.split(",")) if e.strip()]
    problems: list[str] = []
    if tokens_file is not None:
        try:
            lines = tokens_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            problems.append(f"API_TOKENS_FILE: cannot read {str(tokens_file)!r}: {exc.strerror or exc}")
            lines = []
        for n, line in enumerate(lines, 1):
            if line.strip() and not line.lstrip().startswith("#"):
                entries.append((f"API_TOKENS_FILE line {n}", line))
    return entries, problems


class Authenticator:
    """Who a bearer token belongs to, compared in constant time against every token."""

    def __init__(self, tokens: Iterable[Token], *, anonymous_read: bool = False) -> None:
        self.tokens = tuple(tokens)
        self.anonymous_read = anonymous_read

    def principal(self, secret: str) -> Principal | None:
        digest = _digest(secret)
        found: Token | None = None
        for token in self.tokens:  # no early exit: the time does not say which token matched
            if hmac.compare_digest(token.digest, digest):
                found = token
        return Principal(found.name, found.scope) if found else None

    def from_header(self, authorization: str | None) -> Principal | None:
        """The caller of an `Authorization: Bearer ...` header; None: no or an unknown token."""
        if not authorization:
            return None
        scheme, _, secret = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            return None
        return self.principal(secret.strip())
