"""rsync's FILTER RULES, as rsync 3.x parses and matches them, for ``exclude_from`` (rsync's
``--exclude-from=FILE``) and ``filter_from`` (rsync's ``--filter='merge FILE'``).

A port of the parts of rsync's ``exclude.c`` (``parse_filter_file``, ``parse_rule_tok``,
``add_rule``, ``rule_matches``) and ``lib/wildmatch.c`` that decide which paths a plain
``rsync -a --delete`` sends; tests/sync/test_filters_differential.py compares it with the real
binary on generated trees and rule files. What rsync supports and this module does not (merge and
dir-merge rules, hide/show/protect/risk, the ``/ C s r p x`` modifiers) is refused with a
:class:`FilterError` naming ``file:line`` and the rule; it is never reinterpreted.

Matching is on bytes (the path's file-system encoding), as rsync's is: ``?`` and ``[...]`` match one
byte, and the ``[:class:]`` names are the C locale's (ASCII only). Pure: no I/O but reading the
rule files it is given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from stageflow.errors import BadInput

#: The rule kinds and modifiers rsync has that stageflow refuses, with what each one means in rsync.
_REFUSED_RULES = {
    ".": "merge rule (reads rules from another file)",
    ":": "dir-merge rule (per-directory rule files)",
    "H": "hide rule (a sender-side exclude)",
    "S": "show rule (a sender-side include)",
    "P": "protect rule (a receiver-side exclude; use stageflow's protect key)",
    "R": "risk rule (a receiver-side include)",
}
_REFUSED_MODIFIERS = {
    "/": "match against the absolute path",
    "C": "CVS-ignore rules",
    "s": "sender side only",
    "r": "receiver side only",
    "p": "perishable",
    "x": "xattr names",
}
_LONG_NAMES = {
    "clear": "!",
    "dir-merge": ":",
    "exclude": "-",
    "hide": "H",
    "include": "+",
    "merge": ".",
    "protect": "P",
    "risk": "R",
    "show": "S",
}


class FilterError(BadInput):
    """A rule file that rsync would reject, or a rule stageflow does not support (exit 2)."""


class FilterRefused(FilterError):
    """A rule rsync accepts that stageflow does not support (refused, never reinterpreted)."""


# ------------------------------------------------------------------------------------ wildmatch
def _ascii(pred: Callable[[str], bool]) -> frozenset[int]:
    return frozenset(b for b in range(128) if pred(chr(b)))


_PUNCT = frozenset(b"!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
#: ``[:name:]`` classes as the C locale defines them (rsync's wildmatch.c, bytes >= 128 match none).
_CLASSES: dict[bytes, frozenset[int]] = {
    b"alnum": _ascii(lambda c: c.isalnum()),
    b"alpha": _ascii(lambda c: c.isalpha()),
    b"blank": frozenset(b" \t"),
    b"cntrl": frozenset([*range(32), 127]),
    b"digit": _ascii(lambda c: c.isdigit()),
    b"graph": frozenset(range(33, 127)),
    b"lower": _ascii(lambda c: c.islower()),
    b"print": frozenset(range(32, 127)),
    b"punct": _PUNCT,
    b"space": frozenset(b" \t\n\v\f\r"),
    b"upper": _ascii(lambda c: c.isupper()),
    b"xdigit": frozenset(b"0123456789abcdefABCDEF"),
}


class _Never(Exception):
    """The pattern can match nothing (wildmatch's ABORT_ALL: a bad class, a trailing backslash)."""


def _byte_class(members: set[int], negate: bool) -> bytes:
    chosen = sorted(set(range(256)) - members) if negate else sorted(members)
    if not chosen:
        raise _Never
    return b"[" + b"".join(b"\\x%02x" % b for b in chosen) + b"]"


def _bracket(p: bytes, i: int) -> tuple[bytes, int]:
    """The class starting at ``p[i] == '['``: (its regex, the index after its ``]``). Follows
    wildmatch.c's loop exactly (a leading ``]`` is literal, ``!``/``^`` negate, ``a-z`` ranges,
    ``[:alpha:]`` names, backslash escapes)."""

    def at(k: int) -> int:
        return p[k] if k < len(p) else 0

    i += 1
    ch = at(i)
    if ch == ord("^"):
        ch = ord("!")
    negate = ch == ord("!")
    if negate:
        i += 1
        ch = at(i)
    prev = 0
    members: set[int] = set()
    while True:
        if not ch:
            raise _Never
        if ch == ord("\\"):
            i += 1
            ch = at(i)
            if not ch:
                raise _Never
            members.add(ch)
        elif ch == ord("-") and prev and at(i + 1) and at(i + 1) != ord("]"):
            i += 1
            ch = at(i)
            if ch == ord("\\"):
                i += 1
                ch = at(i)
                if not ch:
                    raise _Never
            members.update(range(prev, ch + 1))
            ch = 0
        elif ch == ord("[") and at(i + 1) == ord(":"):
            start = i + 2
            j = start
            while at(j) and at(j) != ord("]"):
                j += 1
            if not at(j):
                raise _Never
            length = j - start - 1
            if length < 0 or p[j - 1] != ord(":"):
                members.add(ord("["))  # no ":]": a literal '[', then go on after it
                ch = ord("[")
            else:
                names = _CLASSES.get(p[start : start + length])
                if names is None:
                    raise _Never  # malformed [:class:]
                members.update(names)
                i = j
                ch = 0
        else:
            members.add(ch)
        prev = ch
        i += 1
        ch = at(i)
        if ch == ord("]"):
            return _byte_class(members, negate), i + 1


def _translate(p: bytes) -> bytes:
    """wildmatch's pattern as a regex body: ``*`` = ``[^/]*``, ``**`` (or more) = anything, ``?`` =
    one byte but ``/``, classes, backslash escapes. Raises _Never for a pattern that matches nothing."""
    out: list[bytes] = []
    i = 0
    while i < len(p):
        c = p[i]
        if c == ord("\\"):
            if i + 1 >= len(p):
                raise _Never  # a trailing backslash is compared with the end of the name: never equal
            out.append(re.escape(p[i + 1 : i + 2]))
            i += 2
        elif c == ord("?"):
            out.append(b"[^/]")
            i += 1
        elif c == ord("*"):
            j = i
            while j < len(p) and p[j] == ord("*"):
                j += 1
            out.append(b".*" if j - i >= 2 else b"[^/]*")
            i = j
        elif c == ord("["):
            part, i = _bracket(p, i)
            out.append(part)
        else:
            out.append(re.escape(p[i : i + 1]))
            i += 1
    return b"".join(out)


# ------------------------------------------------------------------------------------------ rules
@dataclass(frozen=True)
class Rule:
    """One include/exclude rule, stored as rsync's add_rule stores it."""

    include: bool
    pattern: bytes  # without the trailing '/', with the leading '/' of an anchored rule
    where: str  # "file:line"
    text: str  # the line as written
    directory: bool = False  # a trailing '/': directories only
    negate: bool = False  # the '!' modifier
    _match: Callable[[bytes, bool], bool] = field(default=lambda _p, _d: False, repr=False, compare=False)

    def matches(self, path: bytes, is_dir: bool) -> bool:
        return self._match(path, is_dir) != self.negate


def _trailing(subject: bytes, count: int) -> bytes | None:
    """rsync's trailing_N_elements: the last ``count`` slash-separated elements, or None."""
    end = len(subject)
    for _ in range(count):
        cut = subject.rfind(b"/", 0, end)
        if cut < 0:
            return subject if _ == count - 1 else None
        end = cut
    return subject[end + 1 :]


def _compile(pattern: bytes, directory: bool) -> Callable[[bytes, bool], bool]:
    slash_cnt = pattern.count(b"/")
    wild = any(c in pattern for c in b"*[?")
    wild2 = wild and b"**" in pattern
    wild2_prefix = wild2 and pattern.startswith(b"**")
    wild3_suffix = wild2 and pattern.endswith(b"***")
    anchored = pattern.startswith(b"/")
    body = pattern[1:] if anchored else pattern
    if not anchored and slash_cnt and not wild2:
        slash_handling = slash_cnt + 1  # match the last slash_cnt+1 elements
    elif not anchored and not wild2_prefix and wild2:
        slash_handling = -1  # try at the start and after every slash
    else:
        slash_handling = 0
    basename_only = not slash_cnt and not wild2

    def subject_of(path: bytes, is_dir: bool) -> bytes:
        name = path.rpartition(b"/")[2] if basename_only else path
        if wild2_prefix and not basename_only:
            name = b"/" + name
        if is_dir and wild3_suffix:
            name += b"/"
        return name

    if wild:
        try:
            regex = _translate(body)
        except _Never:
            return lambda _p, _d: False
        if slash_handling < 0:
            regex = b"(?:.*/)?(?:" + regex + b")"
        compiled = re.compile(regex, re.DOTALL)

        def match(path: bytes, is_dir: bool) -> bool:
            if directory and not is_dir:
                return False
            subject = subject_of(path, is_dir)
            if slash_handling > 0:
                trailing = _trailing(subject, slash_handling)
                if trailing is None:
                    return False
                subject = trailing
            return compiled.fullmatch(subject) is not None

        return match

    def literal(path: bytes, is_dir: bool) -> bool:
        if directory and not is_dir:
            return False
        name = subject_of(path, is_dir)
        if anchored:
            return name == body
        return name == body or name.endswith(b"/" + body)

    return literal


def _rule(include: bool, pat: str, where: str, text: str, negate: bool = False) -> Rule:
    raw = os.fsencode(pat)
    directory = len(raw) > 1 and raw.endswith(b"/")
    if directory:
        raw = raw[:-1]
    return Rule(include, raw, where, text, directory, negate, _compile(raw, directory))


# ------------------------------------------------------------------------------------------ parsing
Parsed = list["Rule | None"]  # None: a clear ('!') rule


def _lines(data: bytes) -> Iterable[tuple[int, str]]:
    """rsync's line reading: a line ends at '\\n' or '\\r' (so CRLF gives an empty line, skipped);
    empty lines and lines starting with ';' or '#' are skipped; nothing else is stripped."""
    number = 1
    for chunk in re.split(rb"(\r\n|\r|\n)", data):
        if chunk in (b"\r\n", b"\r", b"\n"):
            number += 1
            continue
        if chunk and chunk[:1] not in (b";", b"#"):
            yield number, os.fsdecode(chunk)


def _parse_exclude_line(line: str, where: str) -> Rule | None:
    """One line of an ``--exclude-from`` file (rsync's parse_rule_tok with XFLG_OLD_PREFIXES): a
    pattern, excluded unless it starts with ``+ ``; ``- `` is an optional exclude prefix; a line that
    is just ``!`` clears the rules so far (None; ``!x`` is the literal pattern ``!x``)."""
    include, s = False, line
    if line.startswith("- "):
        s = line[2:]
    elif line.startswith("+ "):
        include, s = True, line[2:]
    elif line == "!":
        return None
    if not s:
        raise FilterError(
            f"{where}: {line!r} \u2014 no pattern after the prefix (rsync: unexpected end of filter "
            "rule): write a pattern after it or delete the line"
        )
    return _rule(include, s, where, line)


def parse_exclude_from(data: bytes, name: str) -> Parsed:
    """A ``--exclude-from`` file, one rule per line (see :func:`_parse_exclude_line`)."""
    return [_parse_exclude_line(line, f"{name}:{number}") for number, line in _lines(data)]


def _parse_filter_line(line: str, where: str) -> Rule | None:
    """One line of a ``merge`` file (rsync's parse_rule_tok without XFLG_OLD_PREFIXES)."""

    def bad(why: str) -> FilterError:
        return FilterError(
            f"{where}: {line!r} \u2014 not a valid rsync filter rule ({why}): fix or delete the line"
        )

    kind = ""
    i = 0
    for word, short in _LONG_NAMES.items():
        if line.startswith(word):
            after = line[len(word) : len(word) + 1]
            if after in ("", " ", "\t", "\n", "\v", "\f", "_"):
                kind, i = short, len(word) - 1
            elif after == ",":
                kind, i = short, len(word)
            break
    else:
        if not line:
            raise bad("empty rule")
        kind = line[0]
        i = 1 if line[1:2] == "," else 0
    if not kind:
        raise bad("unknown rule name")
    if kind in _REFUSED_RULES:
        raise FilterRefused(
            f"{where}: {line!r} \u2014 rsync's {_REFUSED_RULES[kind]} is not supported by "
            "stageflow: use only '+ PATTERN', '- PATTERN' and '!' lines (see docs/deploy-sync.md)"
        )
    if kind not in "+-!":
        raise bad(f"unknown filter rule {kind!r}")
    modifiers = ""
    if kind != "!":
        while True:
            i += 1
            if i >= len(line) or line[i] in " _":
                break
            if line[i] != "!" and line[i] not in _REFUSED_MODIFIERS:
                raise bad(f"invalid modifier '{line[i]}'")
            modifiers += line[i]
    pat = line[i + 1 :]  # past the separator (or the '!')
    if kind != "!" and not pat and "C" not in modifiers:
        # rsync rejects a rule without a pattern whatever its modifiers (only '-C' stands alone), so
        # this is a bad line, not an unsupported one (found by the differential test)
        raise bad("unexpected end of filter rule")
    refused = next((m for m in modifiers if m in _REFUSED_MODIFIERS), None)
    if refused is not None:
        raise FilterRefused(
            f"{where}: {line!r} \u2014 the modifier '{refused}' ({_REFUSED_MODIFIERS[refused]}) is not "
            "supported by stageflow: remove the modifier or the rule"
        )
    negate = "!" in modifiers
    if kind == "!":
        if pat:
            raise bad("'!' rule has trailing characters")
        return None
    if not pat:
        raise bad("unexpected end of filter rule")
    return _rule(kind == "+", pat, where, line, negate)


def parse_filter_from(data: bytes, name: str) -> Parsed:
    """A ``--filter='merge FILE'`` file: each line ``RULE[,MODIFIERS] PATTERN`` (``+``/``include``,
    ``-``/``exclude``, ``!``/``clear``; the pattern after one space or underscore)."""
    return [_parse_filter_line(line, f"{name}:{number}") for number, line in _lines(data)]


@dataclass
class FilterChain:
    """rsync's filter list: the first rule that matches a path decides (include ships, exclude does
    not); no match ships. Directories are checked before their contents, and an excluded directory's
    contents are never looked at (the caller's walk prunes it)."""

    rules: tuple[Rule, ...] = ()
    #: The contents of every file read (for the rules digest).
    sources: list[tuple[str, bytes]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def excluded(self, rel: str, is_dir: bool) -> bool:
        path = os.fsencode(rel)
        for rule in self.rules:
            if rule.matches(path, is_dir):
                return not rule.include
        return False


def read_rule_file(kind: str, path: Path, name: str) -> bytes:
    """The bytes of an ``exclude_from`` (kind ``exclude``) or ``filter_from`` (``filter``) file, or
    a FilterError naming the key and the file."""
    key = "exclude_from" if kind == "exclude" else "filter_from"
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise FilterError(
            f"{key} file '{name}' not found ({path}): create it or remove it from {key}"
        ) from None
    except OSError as exc:
        raise FilterError(f"{key} file '{path}' cannot be read: {exc.strerror or exc}") from None


def rule_file_problems(kind: str, path: Path, name: str) -> list[str]:
    """Every problem of one rule file, one line each, worded as sync words it (``stageflow
    validate``; sync stops at the first)."""
    try:
        data = read_rule_file(kind, path, name)
    except FilterError as exc:
        return [str(exc)]
    parse = _parse_exclude_line if kind == "exclude" else _parse_filter_line
    problems = []
    for number, line in _lines(data):
        try:
            parse(line, f"{name}:{number}")
        except FilterError as exc:
            problems.append(str(exc))
    return problems


def build_chain(files: Iterable[tuple[str, Path, str]]) -> FilterChain:
    """Read ``(kind, path, display name)`` files in order (kind ``exclude`` or ``filter``) into one
    list, as ``rsync --exclude-from=A --filter='merge B'`` does: a clear rule empties the list so far."""
    rules: list[Rule] = []
    sources: list[tuple[str, bytes]] = []
    for kind, path, name in files:
        data = read_rule_file(kind, path, name)
        sources.append((f"{kind}:{name}", data))
        parsed = parse_exclude_from(data, name) if kind == "exclude" else parse_filter_from(data, name)
        for rule in parsed:
            if rule is None:
                rules.clear()
            else:
                rules.append(rule)
    return FilterChain(tuple(rules), sources)
