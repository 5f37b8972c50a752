"""Turborepo's ``--filter`` grammar, resolved over a WorkspaceGraph.

A filter is ``[!][...][^]SELECTOR[^][...]`` where SELECTOR is a name pattern (``web``, ``@scope/*``),
a directory in braces (``{./apps/*}``), a git range in brackets (``[main]``, ``[a...b]``) or a
combination (``@scope/*{./packages/*}[main]``), or a bare path (``./apps/web``, ``.``):

- ``NAME...``: the package and its (transitive) dependencies; ``NAME^...``: only the dependencies.
- ``...NAME``: the package and its (transitive) dependents; ``...^NAME``: only the dependents.
  ``...NAME...`` also adds the dependencies of every dependent.
- ``[ref]``: packages with a file changed since ``ref`` (working tree included);
  ``[a...b]``: changed between a and b (committed only). A change to the root ``package.json`` or
  another root-level input changes every package.
- ``NAME...[ref]``: packages matching NAME that changed or whose dependencies changed.
- ``!SELECTOR``: exclusion; several filters are a union of the inclusions, minus the exclusions
  (only exclusions: every workspace minus them).

The semantics follow Turborepo 2 (``turbo ls --filter``); tests/build/test_filter_turbo.py proves it
against the real binary on generated monorepos. The root package (``//``, directory ``.``) may be
matched but is never part of the result, as in turbo. Pure: git is reached only through the
``changed`` callable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from stageflow.build.workspaces import WorkspaceGraph
from stageflow.errors import BadInput

ROOT = "//"

# name, {directory}, [commits]: the same split as turbo's selector syntax
_SELECTOR = re.compile(
    r"(?P<name>[^.](?:[^{}\[\]]*[^{}\[\].])?)?(\{(?P<directory>[^}]*)\})?(?P<commits>(?:\.{3})?\[[^\]]+\])?"
)
_LOCATION_PREFIXES = ("./", ".\\", "../", "..\\")


@dataclass(frozen=True)
class Selector:
    raw: str
    exclude: bool = False
    exclude_self: bool = False
    include_dependencies: bool = False
    include_dependents: bool = False
    match_dependencies: bool = False  # NAME...[ref]
    name: str = ""
    directory: str = ""  # repo-relative posix glob; "." is the root
    from_ref: str = ""
    to_ref: str = ""  # "" = HEAD plus the working tree


def _bad(raw: str, why: str) -> BadInput:
    return BadInput(
        f"--filter '{raw}': {why}: use NAME, NAME..., ...NAME, ^, {{./dir/*}}, ./path, [ref] or !EXPR "
        "(Turborepo syntax)"
    )


def _directory(raw: str, text: str) -> str:
    text = text.replace("\\", "/")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if text.startswith("/") or ".." in parts:
        raise _bad(raw, f"directory '{text}' must be inside the repository")
    return "/".join(parts) or "."


def parse(raw: str) -> Selector:
    """One filter expression as a Selector; BadInput naming it when it is not valid syntax."""
    text = raw.strip()
    exclude = text.startswith("!")
    if exclude:
        text = text[1:]
    exclude_self = False
    include_dependencies = text.endswith("...")
    if include_dependencies:
        text = text[:-3]
        if text.endswith("^"):
            exclude_self, text = True, text[:-1]
    include_dependents = text.startswith("...")
    if include_dependents:
        text = text[3:]
        if text.startswith("^"):
            exclude_self, text = True, text[1:]
    flags = dict(
        raw=raw,
        exclude=exclude,
        exclude_self=exclude_self,
        include_dependencies=include_dependencies,
        include_dependents=include_dependents,
    )
    m = _SELECTOR.fullmatch(text)
    if m is None:
        if text in (".", "..") or text.startswith(_LOCATION_PREFIXES):
            # as turbo: a bare path keeps the package itself even with ^ (./a^... = ./a...)
            flags["exclude_self"] = False
            return Selector(**flags, directory=_directory(raw, text))  # type: ignore[arg-type]
        if not text:
            raise _bad(raw, "nothing to select")
        return Selector(**flags, name=text)  # type: ignore[arg-type]
    name = m.group("name") or ""
    directory = ""
    if m.group("directory") is not None:
        if not m.group("directory"):
            raise _bad(raw, "empty directory {}")
        directory = _directory(raw, m.group("directory"))
    from_ref = to_ref = ""
    match_dependencies = False
    commits = m.group("commits")
    if commits:
        if commits.startswith("..."):
            if not name and not directory:
                raise _bad(raw, "'...[ref]' needs a name or directory before it")
            match_dependencies, commits = True, commits[3:]
        inner = commits[1:-1]
        from_ref, _, to_ref = inner.partition("...")
    if not (name or directory or from_ref):
        raise _bad(raw, "nothing to select")
    return Selector(
        **flags,  # type: ignore[arg-type]
        match_dependencies=match_dependencies,
        name=name,
        directory=directory,
        from_ref=from_ref,
        to_ref=to_ref,
    )


def _name_matcher(pattern: str) -> Callable[[str], bool]:
    """turbo's name globs: ``*`` is the only wildcard (any characters, ``/`` included)."""
    if pattern == "*":
        return lambda _: True
    if "*" not in pattern:
        return lambda name: name == pattern
    try:
        rx = re.compile("^" + pattern.replace("*", ".*") + r"\Z")
    except re.error as exc:
        raise BadInput(f"--filter name pattern '{pattern}': {exc}: use * as the only wildcard") from None
    return lambda name: rx.match(name) is not None


def _glob_regex(glob: str) -> re.Pattern[str]:
    """A path glob (``*``, ``**``, ``?``, ``[...]``, ``{a,b}``) over repo-relative directories."""
    out: list[str] = []
    i = 0
    depth = 0
    while i < len(glob):
        c = glob[i]
        if glob.startswith("**", i):
            # "a/**" matches a and below; "**/b" any depth
            if out and out[-1] == "/" and i + 2 == len(glob):
                out[-1] = "(?:/.*)?"
            elif glob.startswith("**/", i):
                out.append("(?:.*/)?")
                i += 1
            else:
                out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = glob.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
            else:
                body = glob[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end
        elif c == "{":
            depth += 1
            out.append("(?:")
        elif c == "}" and depth:
            depth -= 1
            out.append(")")
        elif c == "," and depth:
            out.append("|")
        else:
            out.append(re.escape(c))
        i += 1
    return re.compile("".join(out) + r"\Z")


def _literal_base(glob: str) -> str:
    parts: list[str] = []
    for part in glob.split("/"):
        if any(ch in part for ch in "*?[{"):
            break
        parts.append(part)
    return "/".join(parts)


class Resolver:
    """Resolves filter expressions over ``graph``; ``changed(from_ref, to_ref)`` returns the packages
    (``//`` for the root) with changes in that range."""

    def __init__(self, graph: WorkspaceGraph, changed: Callable[[str, str], set[str]]):
        self.graph = graph
        self._changed = changed
        self._changed_memo: dict[tuple[str, str], set[str]] = {}
        self.root_deps = frozenset(graph.root_internal)
        self.dependents: dict[str, set[str]] = {n: set() for n in [*graph.names, ROOT]}
        for n in graph.names:
            for d in graph.dependencies(n):
                self.dependents[d].add(n)
        for d in self.root_deps:
            self.dependents[d].add(ROOT)

    def _deps(self, name: str) -> frozenset[str]:
        return self.root_deps if name == ROOT else self.graph.dependencies(name)

    def _walk(self, start: str, step: Callable[[str], Iterable[str]]) -> set[str]:
        seen: set[str] = set()
        stack = [start]
        while stack:
            for nxt in step(stack.pop()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append(nxt)
        seen.discard(start)
        return seen

    def dependencies_of(self, name: str) -> set[str]:
        return self._walk(name, self._deps)

    def dependents_of(self, name: str) -> set[str]:
        return self._walk(name, lambda n: self.dependents[n])

    def changed(self, from_ref: str, to_ref: str) -> set[str]:
        key = (from_ref, to_ref)
        if key not in self._changed_memo:
            self._changed_memo[key] = self._changed(from_ref, to_ref)
        return self._changed_memo[key]

    def _all(self) -> list[str]:
        return [*self.graph.names, ROOT]

    def _rel(self, name: str) -> str:
        return "." if name == ROOT else self.graph.workspaces[name].rel

    def _in_directory(self, sel: Selector, names: Iterable[str], *, must_exist: bool = False) -> set[str]:
        base = _literal_base(sel.directory)
        if must_exist and base and base != "." and not (self.graph.root / base).is_dir():
            raise _bad(sel.raw, f"directory '{base}' does not exist in {self.graph.root}")
        if sel.directory == ".":
            return {n for n in names if n == ROOT}
        rx = _glob_regex(sel.directory)
        return {n for n in names if n != ROOT and rx.match(self._rel(n))}

    def _by_name(self, sel: Selector, names: Iterable[str]) -> set[str]:
        if "*" not in sel.name and sel.name != ROOT and sel.name not in self.graph.workspaces:
            raise BadInput(
                f"--filter '{sel.raw}': no workspace is named '{sel.name}' (known: "
                f"{', '.join(sorted(self.graph.names))}): fix the name or use a glob such as '@scope/*'"
            )
        match = _name_matcher(sel.name)
        return {n for n in names if match(n)}

    def _nodes(self, sel: Selector) -> set[str]:
        entry: set[str] = set()
        if sel.from_ref:
            entry = set(self.changed(sel.from_ref, sel.to_ref))
            if sel.directory:
                entry = self._in_directory(sel, entry, must_exist=True)
        elif sel.directory:  # turbo refuses a missing directory here (not in NAME...[ref])
            entry = self._in_directory(sel, self._all(), must_exist=True)
        if sel.name:
            entry = self._by_name(sel, entry if (sel.from_ref or sel.directory) else self._all())
        return entry

    def _subtrees(self, sel: Selector) -> set[str]:
        entry: set[str] = set(self._all())
        if sel.directory:
            entry = self._in_directory(sel, entry)
        if sel.name:
            entry = self._by_name(sel, entry)
        changed = self.changed(sel.from_ref, sel.to_ref)
        return {
            n for n in entry if (not sel.exclude_self and n in changed) or (self.dependencies_of(n) & changed)
        }

    def _apply(self, selectors: Sequence[Selector]) -> set[str]:
        out: set[str] = set()
        for sel in selectors:
            for name in self._subtrees(sel) if sel.match_dependencies else self._nodes(sel):
                if sel.include_dependencies:
                    out |= self.dependencies_of(name)
                if sel.include_dependents:
                    for dependent in self.dependents_of(name):
                        out.add(dependent)
                        if sel.include_dependencies:
                            out |= self.dependencies_of(dependent)
                if not sel.exclude_self or not (sel.include_dependencies or sel.include_dependents):
                    out.add(name)
        return out

    def resolve(self, expressions: Sequence[str]) -> set[str]:
        selectors = [parse(e) for e in expressions]
        include = [s for s in selectors if not s.exclude]
        exclude = [s for s in selectors if s.exclude]
        picked = self._apply(include) if include else set(self.graph.names)
        picked -= self._apply(exclude)
        picked.discard(ROOT)
        return picked
