"""Which source paths ship, compiled once per sync: include / exclude / ignore_from / protect rules
in gitignore syntax (pathspec), and exclude_from / filter_from files in rsync's FILTER RULES syntax
(:mod:`stageflow.sync.filters`). A path ships when no gitignore exclude or protect line matches it,
the rsync rules (first match wins) do not exclude it, no parent directory was pruned by either, and
a non-empty include list selects it.

Pure decisions on relative POSIX paths: this module never reads file contents (except the
rule files it is given) and never writes anything.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pathspec

from stageflow.errors import BadInput
from stageflow.sync.filters import FilterChain, build_chain, rule_file_problems
from stageflow.sync.profile import EnvironmentProfile

#: Never shipped, whatever the rules say: VCS data and stageflow's own state directory.
ALWAYS_EXCLUDED = (".git/", ".stageflow/")


class _Matcher:
    """A GitIgnoreSpec, sped up: when no pattern negates (``!``), its patterns' regexes are joined
    into one alternation, which gives the same answer in one regex search per path."""

    def __init__(self, spec: pathspec.GitIgnoreSpec):
        self.spec = spec
        self._combined: re.Pattern[str] | None = None
        patterns: list[Any] = [p for p in spec.patterns if getattr(p, "include", None) is not None]
        if patterns and all(p.include is True and getattr(p, "regex", None) is not None for p in patterns):
            parts = [p.regex.pattern.replace("(?P<ps_d>", "(?:") for p in patterns]
            try:
                self._combined = re.compile("|".join(f"(?:{part})" for part in parts))
            except re.error:
                self._combined = None

    def match_file(self, path: str) -> bool:
        if self._combined is not None:
            return self._combined.search(path) is not None
        return bool(self.spec.match_file(path))


def _spec(lines: list[str], key: str, origins: list[str] | None = None) -> _Matcher | None:
    """The lines compiled; a line pathspec rejects is a BadInput naming where it came from
    (``origins[i]``, e.g. ``.deployignore:3``, else ``KEY entry``), found only when compiling fails."""
    where = origins or [f"{key} entry"] * len(lines)
    kept = [
        (ln, w) for ln, w in zip(lines, where, strict=True) if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not kept:
        return None
    try:
        return _Matcher(pathspec.GitIgnoreSpec.from_lines([ln for ln, _ in kept]))
    except ValueError:  # pathspec's GitIgnorePatternError: say which line
        for line, w in kept:
            _check_gitignore_line(line, w)
        raise


def _check_gitignore_line(line: str, where: str) -> None:
    """BadInput for a line pathspec cannot compile (git reads ``!`` or a trailing ``\\`` as a
    pattern that matches nothing; stageflow asks for the line to go rather than guess)."""
    try:
        pathspec.GitIgnoreSpec.from_lines([line])
    except ValueError:  # pathspec's GitIgnorePatternError
        raise BadInput(
            f"{where}: {line!r} \u2014 not a gitignore pattern stageflow can match (git matches "
            "nothing with it): delete the line"
        ) from None


def read_ignore_file(source: Path, name: str, problems: list[str] | None = None) -> list[str]:
    """The lines of an ``ignore_from`` file (gitignore syntax, relative to ``source``), or BadInput
    naming the missing or unreadable file. With ``problems`` (``stageflow validate``), every problem
    is appended there instead, each line checked too (a sync finds a bad line when compiling)."""
    path = source / name
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        error = BadInput(f"ignore_from file '{name}' not found in {source}: create it or remove ignore_from")
    except UnicodeDecodeError as exc:
        error = BadInput(
            f"ignore_from file '{path}' is not UTF-8 ({exc.reason} at byte {exc.start}): save it as UTF-8"
        )
    except OSError as exc:
        error = BadInput(f"ignore_from file '{path}' cannot be read: {exc.strerror or exc}")
    else:
        for number, line in enumerate(lines, 1):
            if problems is not None and line.strip() and not line.lstrip().startswith("#"):
                try:
                    _check_gitignore_line(line, f"{name}:{number}")
                except BadInput as exc:
                    problems.append(str(exc))
        return lines
    if problems is None:
        raise error
    problems.append(str(error))
    return []


@dataclass
class SelectionRules:
    """Compiled rules. ``skip_dir``/``skip_file`` say whether a path is excluded or protected."""

    include_patterns: list[str] = field(default_factory=list)
    exclude: _Matcher | None = None
    protect: _Matcher | None = None
    include: _Matcher | None = None
    #: Digest of every rule line (exclude_from contents included): a change means "walk the tree".
    digest: str = ""
    #: Exclude and protect lines (stripped) when none negates: a path matching any of them never
    #: ships. Empty when some line negates (then nothing can be said without matching).
    skip_lines: frozenset[str] = frozenset()
    #: The exclude_from and filter_from rules (rsync syntax), in that order.
    chain: FilterChain = field(default_factory=FilterChain)
    #: The protect lines as given, and whether they match case-insensitively (a target whose file
    #: system ignores case, see :meth:`fold_protect_case`).
    protect_lines: tuple[str, ...] = ()
    protect_casefold: bool = False
    _dir_cache: dict[str, bool] = field(default_factory=dict, repr=False)

    @classmethod
    def from_profile(cls, profile: EnvironmentProfile, source: Path) -> SelectionRules:
        exclude_lines = list(ALWAYS_EXCLUDED) + list(profile.exclude)
        origins = ["exclude entry"] * len(exclude_lines)
        for name in profile.ignore_files():
            more = read_ignore_file(source, name)
            exclude_lines += more
            origins += [f"{name}:{number}" for number in range(1, len(more) + 1)]
        chain = rsync_chain(profile, source)
        lines: dict[str, Any] = {
            "exclude": exclude_lines,
            "protect": list(profile.protect),
            "include": list(profile.include),
            "rsync": [[name, hashlib.sha256(data).hexdigest()] for name, data in chain.sources],
        }
        digest = hashlib.sha256(json.dumps(lines, ensure_ascii=False).encode("utf-8", "surrogateescape"))
        skipping = [ln.strip() for ln in exclude_lines + list(profile.protect)]
        skipping = [ln for ln in skipping if ln and not ln.startswith("#")]
        negated = any(ln.startswith("!") for ln in skipping)
        return cls(
            digest=digest.hexdigest()[:32],
            skip_lines=frozenset() if negated else frozenset(skipping),
            include_patterns=[p for p in profile.include if p.strip()],
            exclude=_spec(exclude_lines, "exclude", origins),
            protect=_spec(list(profile.protect), "protect"),
            protect_lines=tuple(profile.protect),
            include=_spec(list(profile.include), "include"),
            chain=chain,
        )

    def fold_protect_case(self) -> None:
        """Match protect patterns without regard to case from now on (the target's file system
        ignores case: a source ``.ENV`` or ``Uploads/x`` would land on a protected ``.env`` or
        ``uploads/``). Patterns and paths are both lower-cased; the rules digest changes with it."""
        if self.protect_casefold or self.protect is None:
            return
        self.protect = _spec([ln.lower() for ln in self.protect_lines], "protect")
        self.protect_casefold = True
        self.digest = hashlib.sha256(f"{self.digest}:protect-casefold".encode()).hexdigest()[:32]
        self._dir_cache.clear()

    def _protect_matches(self, path: str) -> bool:
        assert self.protect is not None
        return self.protect.match_file(path.lower() if self.protect_casefold else path)

    def skip_dir(self, rel: str) -> bool:
        """True when a whole directory (``rel`` without trailing slash) is excluded or protected."""
        probe = rel + "/"
        return bool(
            (self.exclude is not None and self.exclude.match_file(probe))
            or (self.protect is not None and self._protect_matches(probe))
            or (self.chain and self.chain.excluded(rel, True))
        )

    def skip_file(self, rel: str) -> bool:
        """True when a file is excluded, protected, or not selected by a non-empty include list."""
        if self.exclude is not None and self.exclude.match_file(rel):
            return True
        if self.is_protected(rel):  # "uploads/" protects a source *file* or link named uploads too
            return True
        if self.chain and self.chain.excluded(rel, False):
            return True
        return self.include is not None and not self.include.match_file(rel)

    def dir_entry(self, rel: str) -> bool:
        """Whether a directory a walk enters (``rel``, no trailing slash) is shipped even when no file
        in it is (rsync creates it): always, unless a non-empty include list does not select it."""
        return self.include is None or self.include.match_file(rel + "/")

    def _pruned(self, directory: str) -> bool:
        """True when a full walk never enters ``directory``: it or one of its parents is skipped."""
        prefix = ""
        for part in directory.split("/"):
            prefix = f"{prefix}/{part}" if prefix else part
            hit = self._dir_cache.get(prefix)
            if hit is None:
                hit = self._dir_cache[prefix] = self.skip_dir(prefix)
            if hit:
                return True
        return False

    def skip_path(self, rel: str) -> bool:
        """True when a file would not ship from a full walk (a pruned parent, or the file's rules).
        A directory entry (``rel`` ending in ``/``): when the walk never enters it or does not ship it."""
        if rel.endswith("/"):
            return self._pruned(rel[:-1]) or not self.dir_entry(rel[:-1])
        parent = rel.rpartition("/")[0]
        return (bool(parent) and self._pruned(parent)) or self.skip_file(rel)

    def skip_tree(self, rel: str) -> bool:
        """True when a full walk never enters directory ``rel``."""
        return self._pruned(rel)

    def is_protected(self, rel: str) -> bool:
        return self.protect is not None and (self._protect_matches(rel) or self._protect_matches(rel + "/"))

    def unmatched_includes(self, selected: list[str]) -> list[str]:
        """Include patterns that select no shipped file (a warning, not an error)."""
        out = []
        selected = [p for p in selected if not p.endswith("/")]  # files, not directory entries
        for pattern in self.include_patterns:
            matcher = _Matcher(pathspec.GitIgnoreSpec.from_lines([pattern]))
            if not any(matcher.match_file(p) for p in selected):
                out.append(pattern)
        return out


def rsync_chain(profile: EnvironmentProfile, source: Path) -> FilterChain:
    """The profile's exclude_from then filter_from files (relative to ``source``), as one rsync filter
    list. Raises FilterError (exit 2, naming file:line) for a rule rsync rejects or stageflow refuses."""
    files = [("exclude", source / name, name) for name in profile.exclude_files()]
    files += [("filter", source / name, name) for name in profile.filter_files()]
    return build_chain(files)


def selection_problems(profile: EnvironmentProfile, source: Path) -> list[str]:
    """Every problem of the profile's selection rules: its exclude / protect / include entries and
    its exclude_from, filter_from and ignore_from files (missing file, bad or refused rule), one line
    each, worded as sync words it; ``stageflow validate`` lists them all where sync stops at the first."""
    problems: list[str] = []
    keys = (("exclude", profile.exclude), ("protect", profile.protect), ("include", profile.include))
    for key, entries in keys:
        for line in entries:
            if line.strip() and not line.lstrip().startswith("#"):
                try:
                    _check_gitignore_line(line, f"{key} entry")
                except BadInput as exc:
                    problems.append(str(exc))
    for kind, names in (("exclude", profile.exclude_files()), ("filter", profile.filter_files())):
        for name in names:
            problems += rule_file_problems(kind, source / name, name)
    for name in profile.ignore_files():
        read_ignore_file(source, name, problems)
    return problems
