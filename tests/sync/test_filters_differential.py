"""Differential proof of ``exclude_from`` / ``filter_from``: on the same tree and rule file, the files
*and directories* stageflow ships equal what the real ``rsync -a --delete --exclude-from=F`` (or
``--filter='merge F'``) ships.

Hypothesis generates trees (names with spaces, a trailing space, unicode, bytes that are not UTF-8,
dots, brackets; nested and empty directories) and rule files from a grammar of the supported rules
(prefixes and long forms, anchors, ``*`` ``**`` ``***`` ``?`` classes, trailing ``/``, ``!``,
comments, CRLF, trailing spaces, and a few lines rsync rejects, which stageflow must reject too). Most
examples compare the walk the engine plans with (``scan`` over ``SelectionRules``); the seed files of
tests/sync/data/rsync-filters and a few generated examples go through ``stageflow sync`` itself.
Failures are shrunk by Hypothesis.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from stageflow.sync.filters import FilterError, FilterRefused
from stageflow.sync.manifest import scan
from stageflow.sync.profile import EnvironmentProfile
from stageflow.sync.rules import SelectionRules

RSYNC = shutil.which("rsync")
pytestmark = pytest.mark.skipif(RSYNC is None, reason="needs the rsync binary (.ci/run installs it)")
SEEDS = Path(__file__).parent / "data" / "rsync-filters"
#: Generated examples per run (>= 500 together; the CLI ones come on top).
EXCLUDE_EXAMPLES = 300
MERGE_EXAMPLES = 250
CLI_EXAMPLES = 6

NAMES = [
    "a", "b", "A", "Bc", "x.md", "README.md", ".env", "key.pem", "node_modules", "logs", "my file",
    "é", "ü.txt", "..x", ".hidden", "sp ", "foo", "Foo.MD", "[x]", "1", "a.b.c", "uploads", "k1",
    "caf\udce9.md", "\udcff",  # not UTF-8: the bytes b'caf\xe9.md' and b'\xff' (os.fsdecode's surrogates)
]  # fmt: skip
SEGMENTS = [
    *NAMES, "*", "**", "?", "*.md", "*\udce9*", "[\udce0-\udcff]*",
    "[[:upper:]]*", "[a-c]*", "[!a]*", "[^.]*", "a?", "***", "[[:digit:]]",
    "*b", ".*", "é*", "[[:alpha:]][[:alnum:]]", "*.[mM][dD]", "\\*", "[]x]*", "[[:space:]]*", "?*",
]  # fmt: skip

Tree = dict[str, Any]  # name -> None (a file) or a Tree (a directory)

trees = st.dictionaries(
    st.sampled_from(NAMES),
    st.recursive(
        st.none(),
        lambda kids: st.dictionaries(st.sampled_from(NAMES), kids, max_size=4),
        max_leaves=12,
    ),
    min_size=2,
    max_size=7,
)


segments = st.one_of(st.sampled_from(NAMES), st.sampled_from(SEGMENTS))


@st.composite
def patterns(draw: st.DrawFn) -> str:
    parts = draw(st.lists(segments, min_size=1, max_size=draw(st.sampled_from([1, 1, 2, 3]))))
    text = ("/" if draw(st.integers(0, 3)) == 0 else "") + "/".join(parts)
    if draw(st.integers(0, 3)) == 0:
        text += "/"
    if draw(st.integers(0, 7)) == 0:
        text += " "  # trailing spaces are part of the pattern
    return text


SPECIAL = ["# a comment", "; a comment", "", "!"]
#: Catch-all lines that make the rules before them decide (as in "+ */", "+ *.md", "- *").
CATCH_ALL = ["*", "*/", "**", "***", "*/***", "/*"]


#: Line kinds, weighted by repetition (sampled_from shrinks towards the first: a plain pattern).
KINDS = ["pattern"] * 28 + ["catch-all"] * 7 + ["special"] * 2 + ["bang"] * 2 + ["invalid"]


@st.composite
def exclude_lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(KINDS))
    if kind == "special":
        return draw(st.sampled_from(SPECIAL))
    if kind == "bang":
        return "!" + draw(patterns())  # literal in an exclude file
    if kind == "invalid":
        return draw(st.sampled_from(["- ", "+ "]))  # no pattern: rsync rejects it
    prefix = draw(st.sampled_from(["", "+ ", "- ", "", "+ "]))
    if kind == "catch-all":
        return prefix + draw(st.sampled_from(CATCH_ALL))
    return prefix + draw(patterns())


#: ("exclude," directly before a pattern reads the pattern's first characters as modifiers: usually
#: rsync rejects it, which stageflow must do too.)
FILTER_PREFIXES = [
    "- ",
    "+ ",
    "- ",
    "+ ",
    "exclude ",
    "include ",
    "exclude, ",
    "include_",
    "-_",
    "+, ",
    "-! ",
    "+! ",
    "exclude,",
]
FILTER_INVALID = ["foo", "! x", "-q foo", "includes foo", "- ", "+", " - foo"]


@st.composite
def filter_lines(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(KINDS))
    if kind in ("special", "bang"):
        return draw(st.sampled_from([*SPECIAL, "clear"]))
    if kind == "invalid":
        return draw(st.sampled_from(FILTER_INVALID))
    prefix = draw(st.sampled_from(FILTER_PREFIXES))
    if kind == "catch-all":
        return prefix + draw(st.sampled_from(CATCH_ALL))
    return prefix + draw(patterns())


def rule_file(lines: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return st.tuples(
        st.lists(lines, min_size=1, max_size=6), st.sampled_from(["\n", "\r\n"]), st.booleans()
    ).map(lambda t: (t[1].join(t[0]) + (t[1] if t[2] else "")).encode("utf-8", "surrogateescape"))


# ------------------------------------------------------------------------------------------ helpers
def make_tree(root: Path, spec: Tree) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, kid in spec.items():
        if kid is None:
            (root / name).write_bytes(os.fsencode(name))
        else:
            make_tree(root / name, kid)


def listing(root: Path) -> tuple[set[str], set[str]]:
    """(files, directories with a trailing '/') under root, relative; .stageflow/ left out."""
    files: set[str] = set()
    dirs: set[str] = set()
    for here, subdirs, names in os.walk(root):
        rel = os.path.relpath(here, root)
        prefix = "" if rel == "." else rel + "/"
        if prefix == "":
            subdirs[:] = [d for d in subdirs if d != ".stageflow"]
        dirs.update(prefix + d + "/" for d in subdirs)
        files.update(prefix + n for n in names)
    return files, dirs


def _parents(path: str) -> set[str]:
    parts = path.split("/")[:-1]
    return {"/".join(parts[:i]) + "/" for i in range(1, len(parts) + 1)}


def rsync_ships(src: Path, dst: Path, option: str) -> tuple[set[str], set[str]] | None:
    """What ``rsync -a --delete OPTION src/ dst/`` puts in an empty dst (None: rsync rejected the rules)."""
    dst.mkdir()
    proc = subprocess.run(
        [RSYNC, "-a", "--delete", option, f"{src}/", f"{dst}/"], capture_output=True, timeout=60
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace")
        assert "filter rule" in err or "trailing characters" in err, err  # a rule error, nothing else
        return None
    return listing(dst)


def stageflow_ships(src: Path, key: str, rules: Path) -> tuple[set[str], set[str]] | str | None:
    """What the engine's walk selects (files, directory entries) with ``key = rules``; None when it
    rejects the rules as rsync does, "refused" for a rule rsync has and stageflow refuses."""
    try:
        selection = SelectionRules.from_profile(EnvironmentProfile(role="r", **{key: str(rules)}), src)
    except FilterRefused:
        return "refused"
    except FilterError:
        return None
    shipped = scan(src, selection).files
    return {p for p in shipped if not p.endswith("/")}, {p for p in shipped if p.endswith("/")}


def compare(spec: Tree, data: bytes, key: str) -> None:
    with tempfile.TemporaryDirectory(prefix="i14s-diff-") as tmp:
        base = Path(tmp)
        make_tree(base / "src", spec)
        rules = base / "rules"
        rules.write_bytes(data)
        option = f"--exclude-from={rules}" if key == "exclude_from" else f"--filter=merge {rules}"
        expected = rsync_ships(base / "src", base / "dst", option)
        got = stageflow_ships(base / "src", key, rules)
        if got == "refused":
            assert expected is not None, f"rules {data!r}: refused as unsupported, but rsync rejects them"
            event("a rule stageflow refuses (rsync accepts it)")
            return
        assert got == expected, f"rules {data!r}"
        if expected is None:
            event("rsync rejects the rules (so does stageflow)")
        else:
            everything = listing(base / "src")
            event("ships everything" if expected == everything else "ships a subset")
            if expected[1] - {d for f in expected[0] for d in _parents(f)}:
                event("ships a directory with no shipped file in it")


# ------------------------------------------------------------------------------------------ tests
@settings(max_examples=EXCLUDE_EXAMPLES, deadline=None, database=None)
@given(spec=trees, data=rule_file(exclude_lines()))
def test_exclude_from_ships_what_rsync_ships(spec: Tree, data: bytes) -> None:
    compare(spec, data, "exclude_from")


@settings(max_examples=MERGE_EXAMPLES, deadline=None, database=None)
@given(spec=trees, data=rule_file(filter_lines()))
def test_filter_from_ships_what_rsync_merge_ships(spec: Tree, data: bytes) -> None:
    compare(spec, data, "filter_from")


SEED_TREE: Tree = {
    "README.md": None, ".env": None, "key.pem": None, "node_modules": {"x.js": None, "README.md": None},
    "public": {"uploads": {"a.png": None}, "index.html": None},
    "www": {"public": {"uploads": {"b.png": None}}},
    "config": {"production.json": None, "dev.json": None}, "srv": {"config": {"production.json": None}},
    "apps": {"api-server": {"index.js": None}, "web": {"page.js": None}},
    "x": {"apps": {"api-server": {"y.js": None}}},
    "Upper.txt": None, "lower.txt": None,
    "a": {"b": None, "x": {"b": None, "y": {"b": None}}}, "z": {"a": {"b": None}},
    "notes.txt": None, "notes.txt ": None, "logs": {"app.log": None}, "empty": {}, "!x": None,
    "x.tmp": None, "keep": {"k1": None}, "k2": None, "docs": {"guide.md": None},
    "build": {"out.js": None}, "src": {"build": {"keep.js": None}}, "my dir": {"ü file.md": None},
}  # fmt: skip


def cli_compare(cli: Callable[..., tuple[int, str, str]], spec: Tree, data: bytes, key: str) -> None:
    """The whole ``stageflow sync`` (config outside the tree, --no-git) against rsync."""
    with tempfile.TemporaryDirectory(prefix="i14s-cli-") as tmp:
        base = Path(tmp)
        make_tree(base / "src", spec)
        rules = base / "rules"
        rules.write_bytes(data)
        option = f"--exclude-from={rules}" if key == "exclude_from" else f"--filter=merge {rules}"
        expected = rsync_ships(base / "src", base / "rsync", option)
        config = base / "stageflow.toml"
        config.write_text(
            f'[sync.environments.e]\nrole = "r"\ntarget = "{base / "dst"}"\n{key} = "{rules}"\n',
            encoding="utf-8",
        )
        assert cli("target", "init", base / "dst", "--role", "r")[0] == 0
        code, _out, err = cli("sync", base / "src", "--env", "e", "--config", config, "--no-git")
        if expected is None:
            assert code == 2 and "rules:" in err and "internal error" not in err, err
            return
        assert code == 0, err
        assert listing(base / "dst") == expected, f"rules {data!r}"


@pytest.mark.parametrize("seed", sorted(p.name for p in SEEDS.iterdir()))
def test_seed_rule_files_through_stageflow_sync(cli, seed: str) -> None:
    key = "filter_from" if seed.endswith(".filter") else "exclude_from"
    cli_compare(cli, SEED_TREE, (SEEDS / seed).read_bytes(), key)


@settings(
    max_examples=CLI_EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    spec=trees,
    rules=st.one_of(
        rule_file(exclude_lines()).map(lambda d: ("exclude_from", d)),
        rule_file(filter_lines()).map(lambda d: ("filter_from", d)),
    ),
)
def test_generated_rules_through_stageflow_sync(cli, spec: Tree, rules: tuple[str, bytes]) -> None:
    key, data = rules
    cli_compare(cli, spec, data, key)
