"""Token parsing and authentication (connectors/api/auth.py)."""

from __future__ import annotations

from pathlib import Path

from connectors.api.auth import Authenticator, Principal, Scope, parse_tokens, token_entries

W, R = "w" * 20, "r" * 20


def test_tokens_parse_with_scopes_and_write_includes_read() -> None:
    tokens, problems = parse_tokens([("a", f"ops:write:{W}"), ("b", f"grafana:read:{R}")])
    assert problems == []
    auth = Authenticator(tokens)
    assert auth.from_header(f"Bearer {W}") == Principal("ops", Scope.WRITE)
    assert auth.from_header(f"bearer  {R} ") == Principal("grafana", Scope.READ)
    assert Scope.WRITE.allows(Scope.READ) and not Scope.READ.allows(Scope.WRITE)
    for header in (None, "", "Bearer", f"Basic {W}", "Bearer " + "x" * 20, W):
        assert auth.from_header(header) is None, header


def test_a_token_may_contain_colons_and_problems_never_show_the_secret() -> None:
    secret = "s3cr3t:with:colons!!"
    tokens, problems = parse_tokens([("e1", f"ops:write:{secret}")])
    assert problems == [] and Authenticator(tokens).principal(secret) == Principal("ops", Scope.WRITE)
    assert secret not in repr(tokens)
    bad = [
        ("e1", "nocolons"),
        ("e2", f"bad name:read:{R}"),
        ("e3", f"x:admin:{R}"),
        ("e4", "short:read:abc"),
        ("e5", f"ops:read:{R}"),
        ("e6", f"ops:write:{W}"),
    ]
    tokens, problems = parse_tokens(bad)
    assert [t.name for t in tokens] == ["ops"]
    assert [p.split(":")[0].split(" ")[0] for p in problems] == ["e1", "e2", "e3", "e4", "e6"]
    assert all(R not in p and W not in p and "abc" not in p for p in problems)


def test_tokens_file_lines_and_comments(tmp_path: Path) -> None:
    f = tmp_path / "tokens"
    f.write_text(f"# the ops team\nops:write:{W}\n\n  # viewer\nview:read:{R}\n")
    entries, problems = token_entries(f"ci:write:{'c' * 20},", f)
    assert problems == []
    assert [where for where, _ in entries] == [
        "API_TOKENS entry 1",
        "API_TOKENS_FILE line 2",
        "API_TOKENS_FILE line 5",
    ]
    entries, problems = token_entries("", tmp_path / "missing")
    assert entries == [] and "cannot read" in problems[0]
