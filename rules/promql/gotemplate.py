"""Prometheus' alert templates (Go text/template): the subset alert rules use. Pure.

Prometheus renders each label and annotation of an alerting rule with
`{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}
{{$value := .Value}}` in front (rules/alerting.go), so these are what a template can read:

    {{ $labels.instance }}  {{ .Labels.instance }}  {{ index $labels "instance" }}
    {{ $value }}  {{ .Value }}  {{ $externalLabels.cluster }}  {{ $externalURL }}
    pipes and calls: humanize, humanize1024, humanizePercentage, humanizeDuration,
    humanizeTimestamp, printf, toUpper, toLower, title
    {{ if gt $value 80.0 }}...{{ else if ... }}...{{ else }}...{{ end }} with eq ne lt le gt ge,
    and, or, not; {{- -}} trim markers; {{/* comments */}}

Output follows Go: `$value` prints as `%v` (`1e+06`, `0.1`, `NaN`, `+Inf`), a missing label
as `<no value>`, `%f` of NaN as `NaN`. Anything else (`query`, `range`, `with`, variables of
one's own, `template`, ...) is a load problem naming the construct (`compile` raises
`TemplateError`), never a literal `{{ ... }}` in a page. An error while rendering (Go's
execution errors: `humanize "x"`, comparing a float with an int) renders as Prometheus does,
`<error expanding template: ...>`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from rules.model import RulesError


class TemplateError(RulesError):
    """A template outside the supported subset, or not valid Go template syntax."""


class _ExecError(Exception):
    """A Go template execution error; rendered as `<error expanding template: ...>`."""


class _NoValue:
    """Go's invalid reflect.Value: a missing map key, printed as `<no value>`."""

    def __repr__(self) -> str:
        return "<no value>"


NO_VALUE: Any = _NoValue()

# --------------------------------------------------------------------------- Go formatting


def go_float(x: float) -> str:
    """Go's `%v` of a float64 (strconv 'g', shortest): `1e+06`, `123456.7`, `1e-05`, `+Inf`."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    sign, digits, exp = Decimal(repr(x)).normalize().as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits))
    e = len(ds) + exp - 1  # decimal exponent of the first digit
    neg = "-" if sign else ""
    if e < -4 or e >= 6:  # strconv 'g' at the shortest precision: %e below 1e-4 and from 1e6
        mant = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
        return f"{neg}{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
    if e < 0:
        return f"{neg}0.{'0' * (-e - 1)}{ds}"
    if len(ds) <= e + 1:
        return f"{neg}{ds}{'0' * (e + 1 - len(ds))}"
    return f"{neg}{ds[: e + 1]}.{ds[e + 1 :]}"


def _special(x: float) -> str | None:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    return None


_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def _go_type(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    return "map[string]string"


def go_sprintf(fmt: str, *args: object) -> str:
    """Go's fmt.Sprintf for the verbs templates use: f e g v s d q x and %%."""
    out: list[str] = []
    pos = 0
    i = 0
    for m in _VERB.finditer(fmt):
        out.append(fmt[pos : m.start()])
        pos = m.end()
        flags, width, prec, verb = m.groups()
        if verb == "%":
            out.append("%")
            continue
        if i >= len(args):
            out.append(f"%!{verb}(MISSING)")
            continue
        a = args[i]
        i += 1
        spec = f"%{flags}{width or ''}{'.' + prec if prec is not None else ''}"
        if isinstance(a, float) and verb in "feEgG":
            s = _special(a)
            if s is not None:
                body = s if "+" in flags or s != "+Inf" else "+Inf"
                out.append(f"{body:>{int(width)}}" if width else body)
            else:
                out.append((spec + verb) % a)
        elif verb == "v":
            out.append(_show(a))
        elif isinstance(a, bool) and verb == "t":
            out.append("true" if a else "false")
        elif isinstance(a, int) and not isinstance(a, bool) and verb in "dx":
            out.append((spec + verb) % a)
        elif isinstance(a, str) and verb in "sq":
            out.append((spec + "s") % (a if verb == "s" else '"' + a.replace('"', '\\"') + '"'))
        else:
            out.append(f"%!{verb}({_go_type(a)}={_show(a)})")
    out.append(fmt[pos:])
    if i < len(args):
        extra = ", ".join(f"{_go_type(a)}={_show(a)}" for a in args[i:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


def _show(v: object) -> str:
    """Go's fmt.Fprint of a template value."""
    if v is NO_VALUE:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return go_float(v)
    if isinstance(v, Mapping):
        return "map[" + " ".join(f"{k}:{v[k]}" for k in sorted(v)) + "]"
    return str(v)


# --------------------------------------------------------------------------- Prometheus' functions


def _to_float(v: object) -> float:
    """common/helpers/templates.ConvertToFloat: numbers and numeric strings."""
    if isinstance(v, bool) or v is NO_VALUE or isinstance(v, Mapping):
        raise _ExecError(f"can't convert {_go_type(v)} to float")
    if isinstance(v, int | float):
        return float(v)
    try:
        return float(str(v))
    except ValueError:
        raise _ExecError(f'strconv.ParseFloat: parsing "{v}": invalid syntax') from None


def _g4(x: float) -> str:
    return _special(x) or f"{x:.4g}"


def humanize(v: object) -> str:
    x = _to_float(v)
    if x == 0 or not math.isfinite(x):
        return _g4(x)
    prefix = ""
    if abs(x) >= 1:
        for p in ("k", "M", "G", "T", "P", "E", "Z", "Y"):
            if abs(x) < 1000:
                break
            prefix, x = p, x / 1000
        return f"{_g4(x)}{prefix}"
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(x) >= 1:
            break
        prefix, x = p, x * 1000
    return f"{_g4(x)}{prefix}"


def humanize1024(v: object) -> str:
    x = _to_float(v)
    if abs(x) <= 1 or not math.isfinite(x):
        return _g4(x)
    prefix = ""
    for p in ("ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"):
        if abs(x) < 1024:
            break
        prefix, x = p, x / 1024
    return f"{_g4(x)}{prefix}"


def humanize_duration(v: object) -> str:
    x = _to_float(v)
    if not math.isfinite(x):
        return _g4(x)
    if x == 0:
        return f"{_g4(x)}s"
    if abs(x) >= 1:
        sign = "-" if x < 0 else ""
        x = abs(x)
        d = int(x)
        s, m, h, days = d % 60, d // 60 % 60, d // 3600 % 24, d // 86400
        if days:
            return f"{sign}{days}d {h}h {m}m {s}s"
        if h:
            return f"{sign}{h}h {m}m {s}s"
        if m:
            return f"{sign}{m}m {s}s"
        return f"{sign}{_g4(x)}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(x) >= 1:
            break
        prefix, x = p, x * 1000
    return f"{_g4(x)}{prefix}s"


def humanize_percentage(v: object) -> str:
    return f"{_g4(_to_float(v) * 100)}%"


def humanize_timestamp(v: object) -> str:
    """Go's time.Time.String() in UTC: `2015-06-23 13:19:44.128 +0000 UTC`."""
    x = _to_float(v)
    if not math.isfinite(x):
        return _g4(x)
    if abs(x) * 1e9 >= 2**63:
        raise _ExecError(f"{x!r} cannot be represented as a nanoseconds timestamp since it overflows int64")
    ns = round(Decimal(repr(x)) * 1_000_000_000)
    secs, frac = divmod(ns, 1_000_000_000)
    t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=secs)
    text = t.strftime("%Y-%m-%d %H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + " +0000 UTC"


def _title(v: object) -> str:
    # strings.Title: the first letter of each word (letters, digits and _ make words) upper
    return re.sub(r"(?<![\w])(\w)", lambda m: m.group(1).upper(), _as_str(v, "title"))


def _as_str(v: object, fn: str) -> str:
    if not isinstance(v, str):
        raise _ExecError(f"wrong type for value; expected string; got {_go_type(v)} (in {fn})")
    return v


def _truth(v: object) -> bool:
    if v is NO_VALUE or v is None:
        return False
    if isinstance(v, bool):
        return v
    if isinstance(v, int | float):
        return v != 0
    if isinstance(v, str | Mapping):
        return len(v) > 0
    return True


def _kind(v: object) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    return "other"


def _compare(op: str) -> Callable[..., bool]:
    def cmp(a: object, *bs: object) -> bool:
        for b in bs if op == "eq" else bs[:1]:
            ka, kb = _kind(a), _kind(b)
            if ka != kb or ka == "other" or (ka == "bool" and op not in ("eq", "ne")):
                # text/template: "incompatible types for comparison" (a float is not an int)
                raise _ExecError(f"error calling {op}: incompatible types for comparison")
            x: Any = a
            y: Any = b
            ok = {
                "eq": x == y,
                "ne": x != y,
                "lt": x < y,
                "le": x <= y,
                "gt": x > y,
                "ge": x >= y,
            }[op]
            if op == "eq" and ok:
                return True
            if op != "eq":
                return ok
        return False

    return cmp


def _index(m: object, *keys: object) -> object:
    for k in keys:
        if not isinstance(m, Mapping):
            raise _ExecError(f"error calling index: can't index item of type {_go_type(m)}")
        if not isinstance(k, str):
            raise _ExecError(f"error calling index: value has type {_go_type(k)}; should be string")
        m = m.get(k, "")  # index returns the zero value of a missing key ("" for strings)
    return m


def _printf(fmt: object, *args: object) -> str:
    return go_sprintf(_as_str(fmt, "printf"), *args)


def _and(*args: object) -> object:
    for a in args:
        if not _truth(a):
            return a
    return args[-1]


def _or(*args: object) -> object:
    for a in args:
        if _truth(a):
            return a
    return args[-1]


# name -> (function, minimum arguments, maximum arguments or None)
FUNCS: dict[str, tuple[Callable[..., object], int, int | None]] = {
    "humanize": (humanize, 1, 1),
    "humanize1024": (humanize1024, 1, 1),
    "humanizeDuration": (humanize_duration, 1, 1),
    "humanizePercentage": (humanize_percentage, 1, 1),
    "humanizeTimestamp": (humanize_timestamp, 1, 1),
    "printf": (_printf, 1, None),
    "toUpper": (lambda s: _as_str(s, "toUpper").upper(), 1, 1),
    "toLower": (lambda s: _as_str(s, "toLower").lower(), 1, 1),
    "title": (_title, 1, 1),
    "index": (_index, 1, None),
    "eq": (_compare("eq"), 2, None),
    "ne": (_compare("ne"), 2, 2),
    "lt": (_compare("lt"), 2, 2),
    "le": (_compare("le"), 2, 2),
    "gt": (_compare("gt"), 2, 2),
    "ge": (_compare("ge"), 2, 2),
    "and": (_and, 1, None),
    "or": (_or, 1, None),
    "not": (lambda a: not _truth(a), 1, 1),
}
# Prometheus' and Go's other functions: named in the load problem, so the author knows why
_KNOWN_ELSEWHERE = {
    "query", "first", "label", "value", "strvalue", "sortByLabel", "args", "tmpl", "safeHtml", "match",
    "reReplaceAll", "stripPort", "stripDomain", "graphLink", "tableLink", "toTime", "toDuration", "now",
    "pathPrefix", "externalURL", "parseDuration", "urlQueryEscape", "len", "slice", "call", "html", "js",
    "urlquery", "print", "println",
}  # fmt: skip
_KEYWORDS = {"range", "with", "define", "template", "block", "break", "continue"}

# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True, slots=True)
class _Lit:
    value: object


@dataclass(frozen=True, slots=True)
class _Ref:
    """`$labels.x`, `.Value`, `$`: a root and the field path after it."""

    root: str  # labels | externalLabels | externalURL | value | . (the data)
    path: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _Func:
    name: str


@dataclass(frozen=True, slots=True)
class _Pipe:
    cmds: tuple[tuple[Any, ...], ...]  # each command: its operands (a _Func first for a call)


@dataclass(frozen=True, slots=True)
class _If:
    cond: _Pipe
    then: tuple[Any, ...]
    else_: tuple[Any, ...]


_TOKEN = re.compile(
    r"""\s*(?:
      (?P<str>"(?:[^"\\\n]|\\.)*"|`[^`]*`)
     |(?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?))(?![\w.])
     |(?P<var>\$[A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)
     |(?P<field>(?:\.[A-Za-z0-9_]+)+|\.)
     |(?P<decl>:=|=)
     |(?P<punct>[|()])
     |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
_ROOTS = {"$labels": "labels", "$externalLabels": "externalLabels", "$externalURL": "externalURL",
          "$value": "value", "$": "."}  # fmt: skip
_FIELDS = {
    "Labels": "labels",
    "ExternalLabels": "externalLabels",
    "ExternalURL": "externalURL",
    "Value": "value",
}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "'": "'", "a": "\a", "b": "\b", "f": "\f",
            "v": "\v"}  # fmt: skip


def _unquote(s: str) -> str:
    if s.startswith("`"):
        return s[1:-1]

    def esc(m: re.Match[str]) -> str:
        e = m.group(1)
        if e[0] in "xuU":
            return chr(int(e[1:], 16))
        if e in _ESCAPES:
            return _ESCAPES[e]
        raise TemplateError(f"unknown escape sequence \\{e} in {s}")

    return re.sub(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)", esc, s[1:-1])


def _number(text: str) -> object:
    t = text.lower().lstrip("+")
    if re.fullmatch(r"-?0x[0-9a-f]+", t):
        return int(t, 16)
    if re.fullmatch(r"-?\d+", t):
        return int(t)
    return float(t)


def _ref(text: str, whole: str) -> _Ref:
    parts = text.split(".")
    if text.startswith("$"):
        root = _ROOTS.get(parts[0])
        if root is None:
            raise TemplateError(
                f"undefined variable {parts[0]} in {{{{{whole}}}}}: only $labels, $value, "
                f"$externalLabels and $externalURL are defined (own variables are not supported)"
            )
        path = tuple(parts[1:])
    else:
        names = tuple(p for p in parts[1:] if p)
        if not names:
            return _Ref(".", ())
        root = _FIELDS.get(names[0], "")
        if not root:
            raise TemplateError(f"can't evaluate field {names[0]} in {{{{{whole}}}}}: the alert's fields are "
                                f"Labels, Value, ExternalLabels and ExternalURL")  # fmt: skip
        path = names[1:]
    if root == "." and path:
        return _ref("." + ".".join(path), whole)
    if root in ("value", "externalURL") and path:
        raise TemplateError(f"can't evaluate field {path[0]} of {parts[0]} (not a map) in {{{{{whole}}}}}")
    if root in ("labels", "externalLabels") and len(path) > 1:
        raise TemplateError(f"can't evaluate field {path[1]} in type string in {{{{{whole}}}}}")
    return _Ref(root, path)


class _Parser:
    def __init__(self, text: str) -> None:
        self.items = _split(text)
        self.i = 0

    def nodes(self, stop: tuple[str, ...] = ()) -> tuple[tuple[Any, ...], str]:
        """Nodes up to one of the `stop` keywords (`else`, `end`); returns that keyword's action."""
        out: list[Any] = []
        while self.i < len(self.items):
            kind, body = self.items[self.i]
            self.i += 1
            if kind == "text":
                out.append(body)
                continue
            word = body.split(None, 1)[0] if body.strip() else ""
            if word in ("else", "end"):
                if word not in stop:
                    raise TemplateError(f"unexpected {{{{{word}}}}}")
                return tuple(out), body
            if word == "if":
                out.append(self.if_(body))
            elif word in _KEYWORDS:
                raise TemplateError(f"`{word}` is not supported in alert templates ({{{{{body}}}}})")
            else:
                out.append(_pipe(body))
        if stop:
            raise TemplateError("unexpected EOF: an {{if}} without its {{end}}")
        return tuple(out), ""

    def if_(self, body: str) -> _If:
        cond = _pipe(body.split(None, 1)[1] if len(body.split(None, 1)) > 1 else "", body)
        then, end = self.nodes(("else", "end"))
        if end.split(None, 1)[0] == "end":
            return _If(cond, then, ())
        rest = end.split(None, 1)
        if len(rest) > 1:  # else if ...
            if rest[1].split(None, 1)[0] != "if":
                raise TemplateError(f"unexpected {{{{{end}}}}}: only `else if` may follow else")
            return _If(cond, then, (self.if_(rest[1]),))
        otherwise, end = self.nodes(("end",))
        return _If(cond, then, otherwise)


def _split(text: str) -> list[tuple[str, str]]:
    """Text and actions, with Go's `{{- ` / ` -}}` whitespace trimming and comments removed."""
    items: list[tuple[str, str]] = []
    pos = 0
    while True:
        start = text.find("{{", pos)
        if start < 0:
            items.append(("text", text[pos:]))
            break
        chunk = text[pos:start]
        i = start + 2
        if text[i : i + 1] == "-" and text[i + 1 : i + 2] in (" ", "\t", "\r", "\n"):
            chunk = chunk.rstrip(" \t\r\n")
            i += 1
        items.append(("text", chunk))
        end = _close(text, i)
        inner = text[i:end]
        pos = end + 2
        if len(inner) >= 2 and inner[-1] == "-" and inner[-2] in " \t\r\n":
            inner = inner[:-1]
            pos = len(text) - len(text[pos:].lstrip(" \t\r\n"))
        body = inner.strip()
        if body.startswith("/*"):
            if not body.endswith("*/"):
                raise TemplateError("unclosed comment: {{/* needs */}}")
            continue
        if not body:
            raise TemplateError("missing value for command ({{ }} is empty)")
        items.append(("action", body))
    return [it for it in items if it != ("text", "")]


def _close(text: str, start: int) -> int:
    """Index of the `}}` ending the action at `start`, skipping quoted strings."""
    i = start
    while i < len(text):
        c = text[i]
        if c in '"`':
            j = i + 1
            while j < len(text) and text[j] != c:
                j += 2 if c == '"' and text[j] == "\\" else 1
            i = j + 1
            continue
        if text.startswith("}}", i):
            return i
        i += 1
    raise TemplateError("unclosed action: a {{ without its }}")


def _tokens(body: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    body = body.rstrip()
    while pos < len(body):
        m = _TOKEN.match(body, pos)
        if m is None or m.lastgroup is None:
            raise TemplateError(f"cannot read {body[pos:].strip()[:20]!r} in {{{{{body}}}}}")
        out.append((m.lastgroup, m.group(m.lastgroup)))
        pos = m.end()
    return out


def _pipe(body: str, whole: str | None = None) -> _Pipe:
    whole = whole or body
    toks = _tokens(body)
    if not toks:
        raise TemplateError(f"missing value in {{{{{whole}}}}}")
    if any(k == "decl" for k, _ in toks):
        raise TemplateError(f"variable declarations are not supported in alert templates ({{{{{whole}}}}})")
    pipe, rest = _parse_pipe(toks, whole)
    if rest:
        raise TemplateError(f"unexpected {rest[0][1]!r} in {{{{{whole}}}}}")
    return pipe


def _parse_pipe(toks: list[tuple[str, str]], whole: str) -> tuple[_Pipe, list[tuple[str, str]]]:
    cmds: list[tuple[Any, ...]] = []
    cur: list[Any] = []
    while toks:
        kind, text = toks[0]
        if kind == "punct" and text == ")":
            break
        toks = toks[1:]
        if kind == "punct" and text == "|":
            if not cur:
                raise TemplateError(f"missing command before | in {{{{{whole}}}}}")
            cmds.append(tuple(cur))
            cur = []
        elif kind == "punct" and text == "(":
            sub, toks = _parse_pipe(toks, whole)
            if not toks or toks[0][1] != ")":
                raise TemplateError(f"unclosed left paren in {{{{{whole}}}}}")
            toks = toks[1:]
            cur.append(sub)
        elif kind == "str":
            cur.append(_Lit(_unquote(text)))
        elif kind == "num":
            cur.append(_Lit(_number(text)))
        elif kind in ("var", "field"):
            cur.append(_ref(text, whole))
        elif kind == "ident":
            if text in ("true", "false"):
                cur.append(_Lit(text == "true"))
            elif text in FUNCS:
                cur.append(_Func(text))
            elif text in _KNOWN_ELSEWHERE or text in _KEYWORDS:
                raise TemplateError(
                    f"function `{text}` is not supported in alert templates ({{{{{whole}}}}})"
                )
            else:
                raise TemplateError(f'function "{text}" not defined ({{{{{whole}}}}})')
        else:
            raise TemplateError(f"unexpected {text!r} in {{{{{whole}}}}}")
    if not cur:
        raise TemplateError(f"missing command in {{{{{whole}}}}}")
    cmds.append(tuple(cur))
    for n, cmd in enumerate(cmds):
        piped = 1 if n else 0
        head = cmd[0]
        if isinstance(head, _Func):
            _, lo, hi = FUNCS[head.name]
            got = len(cmd) - 1 + piped
            if got < lo or (hi is not None and got > hi):
                want = f"{lo}" if hi == lo else f"at least {lo}" if hi is None else f"{lo} to {hi}"
                raise TemplateError(
                    f"wrong number of args for {head.name}: want {want} got {got} ({{{{{whole}}}}})"
                )
        elif len(cmd) > 1 or piped:
            raise TemplateError(f"can't give argument to non-function in {{{{{whole}}}}}")
        for a in cmd[1:]:
            if isinstance(a, _Func):
                # a function name as an argument is a call without arguments in Go: none of ours takes none
                raise TemplateError(
                    f"{a.name} used as a value needs parentheses: ({a.name} ...) in {{{{{whole}}}}}"
                )
    return _Pipe(tuple(cmds)), toks


# --------------------------------------------------------------------------- the compiled template


@dataclass(frozen=True, slots=True)
class Template:
    """A compiled template; `render` never raises (execution errors render as Prometheus' do)."""

    text: str
    nodes: tuple[Any, ...] = field(repr=False, default=())

    def render(
        self,
        labels: Mapping[str, str],
        value: float,
        external_labels: Mapping[str, str] | None = None,
        external_url: str = "",
    ) -> str:
        if not self.nodes:
            return self.text if "{{" not in self.text else ""
        data = {"labels": labels, "externalLabels": external_labels or {}, "externalURL": external_url,
                "value": value}  # fmt: skip
        try:
            return "".join(_run(self.nodes, data))
        except _ExecError as exc:
            return f"<error expanding template: {exc}>"


def compile_template(text: str) -> Template:
    """Parse `text` once (at load); raises `TemplateError` naming what is not supported."""
    if "{{" not in text:
        return Template(text, (text,))
    nodes, _ = _Parser(text).nodes()
    return Template(text, nodes)


def check(text: str) -> list[str]:
    """The problems of a template, empty when it compiles."""
    try:
        compile_template(text)
    except TemplateError as exc:
        return [str(exc)]
    return []


def render(
    text: str, labels: Mapping[str, str], value: float, external_labels: Mapping[str, str] | None = None
) -> str:
    """Compile and render in one go (tests, one-off uses)."""
    return compile_template(text).render(labels, value, external_labels)


def _run(nodes: tuple[Any, ...], data: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for n in nodes:
        if isinstance(n, str):
            out.append(n)
        elif isinstance(n, _If):
            out.extend(_run(n.then if _truth(_eval_pipe(n.cond, data)) else n.else_, data))
        else:
            out.append(_show(_eval_pipe(n, data)))
    return out


def _eval_pipe(p: _Pipe, data: dict[str, Any]) -> object:
    piped: list[object] = []
    for cmd in p.cmds:
        head = cmd[0]
        if isinstance(head, _Func):
            args = [_eval_arg(a, data) for a in cmd[1:]] + piped
            fn = FUNCS[head.name][0]
            if head.name in ("and", "or"):
                value = fn(*args)
            else:
                try:
                    value = fn(*args)
                except _ExecError as exc:
                    msg = str(exc)
                    raise _ExecError(
                        msg if msg.startswith("error calling") else f"error calling {head.name}: {msg}"
                    ) from None
        else:
            value = _eval_arg(head, data)
        piped = [value]
    return piped[0]


def _eval_arg(a: Any, data: dict[str, Any]) -> object:
    if isinstance(a, _Lit):
        return a.value
    if isinstance(a, _Pipe):
        return _eval_pipe(a, data)
    assert isinstance(a, _Ref)
    if a.root == ".":
        return {"Labels": data["labels"], "ExternalLabels": data["externalLabels"],
                "ExternalURL": data["externalURL"], "Value": data["value"]}  # fmt: skip
    v = data[a.root]
    for name in a.path:
        v = v.get(name, NO_VALUE) if isinstance(v, Mapping) else NO_VALUE
    return v
