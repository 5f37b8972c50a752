"""Every rule rsync accepts that stageflow refuses (merge ``.``, dir-merge ``:``, hide/show/protect/risk,
each modifier) gets its own one-line ``file:line: 'rule' — why: fix`` message, and the real rsync is
asked first that it does accept the rule (so a refusal is never a rule rsync rejects). The ``!``-only
line clears the list in both file kinds, as rsync's does (compared with the real binary). The same
messages come out of ``stageflow validate`` and ``stageflow sync``, run as real processes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stageflow.sync.filters import FilterError, FilterRefused, parse_filter_from, rule_file_problems
from stageflow.sync.manifest import scan
from stageflow.sync.profile import EnvironmentProfile
from stageflow.sync.rules import SelectionRules

RSYNC = shutil.which("rsync")
needs_rsync = pytest.mark.skipif(RSYNC is None, reason="needs the rsync binary (.ci/run installs it)")
STAGEFLOW = [sys.executable, "-m", "stageflow.entry"]  # the console script's entry

#: (rule line, what the message must say) for every rule kind stageflow refuses.
REFUSED_RULES = [
    (". other.rules", "rsync's merge rule (reads rules from another file)"),
    ("merge other.rules", "rsync's merge rule (reads rules from another file)"),
    (": .rules", "rsync's dir-merge rule (per-directory rule files)"),
    ("dir-merge .rules", "rsync's dir-merge rule (per-directory rule files)"),
    ("H x", "rsync's hide rule (a sender-side exclude)"),
    ("hide x", "rsync's hide rule (a sender-side exclude)"),
    ("S x", "rsync's show rule (a sender-side include)"),
    ("show x", "rsync's show rule (a sender-side include)"),
    ("P x", "rsync's protect rule (a receiver-side exclude; use stageflow's protect key)"),
    ("protect x", "rsync's protect rule (a receiver-side exclude; use stageflow's protect key)"),
    ("R x", "rsync's risk rule (a receiver-side include)"),
    ("risk x", "rsync's risk rule (a receiver-side include)"),
]
#: (rule line, the modifier, what it means) for every modifier stageflow refuses.
REFUSED_MODIFIERS = [
    ("-/ x", "/", "match against the absolute path"),
    ("-C", "C", "CVS-ignore rules"),
    ("+C x", "C", "CVS-ignore rules"),
    ("-s x", "s", "sender side only"),
    ("+s x", "s", "sender side only"),
    ("exclude,s x", "s", "sender side only"),
    ("-r x", "r", "receiver side only"),
    ("-p x", "p", "perishable"),
    ("-x x", "x", "xattr names"),
    ("-!s x", "s", "sender side only"),
]


def small_tree(root: Path) -> Path:
    for rel in ("x", "y", "d/x", "d/z.md", "e/"):
        path = root / rel
        if rel.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rel, encoding="utf-8")
    (root / "other.rules").write_text("- y\n", encoding="utf-8")
    return root


def rsync_listing(src: Path, dst: Path, option: str) -> set[str]:
    """What real ``rsync -a --delete OPTION`` ships (asserting it accepts the rules)."""
    proc = subprocess.run(
        [RSYNC, "-a", "--delete", option, f"{src}/", f"{dst}/"],
        capture_output=True,
        timeout=60,
        cwd=src,  # a merge rule's file is relative to the working directory
    )
    assert proc.returncode == 0 and not proc.stderr, proc.stderr
    out = set()
    for here, dirs, files in os.walk(dst):
        rel = os.path.relpath(here, dst)
        prefix = "" if rel == "." else rel + "/"
        out.update(prefix + d + "/" for d in dirs)
        out.update(prefix + f for f in files)
    return out


def stageflow_listing(src: Path, key: str, rules: Path) -> set[str]:
    selection = SelectionRules.from_profile(EnvironmentProfile(role="r", **{key: str(rules)}), src)
    return set(scan(src, selection).files)


@needs_rsync
@pytest.mark.parametrize(("line", "says"), REFUSED_RULES)
def test_refused_rule_kind_names_file_line_rule_and_why(tmp_path: Path, line: str, says: str) -> None:
    src = small_tree(tmp_path / "src")
    rules = tmp_path / "F"
    rules.write_text(f"- keep-going\n{line}\n", encoding="utf-8")
    rsync_listing(src, tmp_path / "dst", f"--filter=merge {rules}")  # rsync accepts the rule
    with pytest.raises(FilterRefused) as caught:
        parse_filter_from(rules.read_bytes(), "F")
    assert str(caught.value) == (
        f"F:2: {line!r} \u2014 {says} is not supported by stageflow: use only '+ PATTERN', "
        "'- PATTERN' and '!' lines (see docs/deploy-sync.md)"
    )


@needs_rsync
@pytest.mark.parametrize(("line", "modifier", "means"), REFUSED_MODIFIERS)
def test_refused_modifier_names_file_line_rule_and_modifier(
    tmp_path: Path, line: str, modifier: str, means: str
) -> None:
    src = small_tree(tmp_path / "src")
    rules = tmp_path / "F"
    rules.write_text(f"{line}\n", encoding="utf-8")
    rsync_listing(src, tmp_path / "dst", f"--filter=merge {rules}")
    with pytest.raises(FilterRefused) as caught:
        parse_filter_from(rules.read_bytes(), "F")
    assert str(caught.value) == (
        f"F:1: {line!r} \u2014 the modifier '{modifier}' ({means}) is not supported by stageflow: "
        "remove the modifier or the rule"
    )


@needs_rsync
@pytest.mark.parametrize("line", [". other.rules", "H x", "P x", ": .rules", "-s x"])
def test_in_an_exclude_from_file_those_lines_are_plain_patterns_as_in_rsync(
    tmp_path: Path, line: str
) -> None:
    """``--exclude-from`` knows no rule names: ``H x`` is the literal pattern "H x" there."""
    src = small_tree(tmp_path / "src")
    (src / line).write_text("literal", encoding="utf-8")
    rules = tmp_path / "F"
    rules.write_text(f"{line}\n", encoding="utf-8")
    expected = rsync_listing(src, tmp_path / "dst", f"--exclude-from={rules}")
    assert line not in expected
    assert stageflow_listing(src, "exclude_from", rules) == expected


@needs_rsync
@pytest.mark.parametrize(
    ("key", "clear"), [("exclude_from", "!"), ("filter_from", "!"), ("filter_from", "clear")]
)
def test_bang_only_line_clears_the_list_as_rsync_does(tmp_path: Path, key: str, clear: str) -> None:
    src = small_tree(tmp_path / "src")
    rules = tmp_path / "F"
    for text in (f"- x\n- d/\n{clear}\n- y\n", f"- *\n{clear}\n", f"{clear}\n", f"- x\r\n{clear}\r\n"):
        rules.write_text(text, encoding="utf-8", newline="")
        dst = tmp_path / f"dst-{len(list(tmp_path.iterdir()))}"
        option = f"--exclude-from={rules}" if key == "exclude_from" else f"--filter=merge {rules}"
        expected = rsync_listing(src, dst, option)
        assert stageflow_listing(src, key, rules) == expected, text
    assert "x" in expected  # the clear dropped '- x'


@pytest.mark.parametrize(
    ("kind", "line", "says"),
    [
        ("exclude", "- ", "no pattern after the prefix (rsync: unexpected end of filter rule)"),
        ("exclude", "+ ", "no pattern after the prefix (rsync: unexpected end of filter rule)"),
        ("filter", "foo", "not a valid rsync filter rule (unknown filter rule 'f')"),
        ("filter", "-q foo", "not a valid rsync filter rule (invalid modifier 'q')"),
        ("filter", "! x", "not a valid rsync filter rule ('!' rule has trailing characters)"),
        ("filter", "includes x", "not a valid rsync filter rule (unknown rule name)"),
    ],
)
def test_rules_rsync_rejects_are_errors_naming_file_line(
    tmp_path: Path, kind: str, line: str, says: str
) -> None:
    rules = tmp_path / "F"
    rules.write_text(f"# c\n{line}\n- ok\n", encoding="utf-8")
    problems = rule_file_problems(kind, rules, "F")
    assert len(problems) == 1 and problems[0].startswith(f"F:2: {line!r} \u2014 {says}"), problems
    if RSYNC is not None:
        option = f"--exclude-from={rules}" if kind == "exclude" else f"--filter=merge {rules}"
        proc = subprocess.run([RSYNC, "-a", option, f"{tmp_path}/", f"{tmp_path}/out/"], capture_output=True)
        assert proc.returncode != 0 and (b"filter rule" in proc.stderr or b"trailing" in proc.stderr)


def test_problems_lists_every_bad_line_not_only_the_first(tmp_path: Path) -> None:
    rules = tmp_path / "F"
    rules.write_text("- a\n. m\n+ ok\n-s x\nbogus\n", encoding="utf-8")
    problems = rule_file_problems("filter", rules, "F")
    assert [p.split(" ", 1)[0] for p in problems] == ["F:2:", "F:4:", "F:5:"]
    with pytest.raises(FilterError, match=r"^F:2: '\. m' \u2014"):
        parse_filter_from(rules.read_bytes(), "F")


# -------------------------------------------------------------------------- through the real CLI
def run(*args: object, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STAGEFLOW_HOME": str(home / "sf"), "PREFECT_HOME": str(home / "prefect")}
    return subprocess.run(
        [*STAGEFLOW, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_validate_reports_every_bad_rule_file_line_as_sync_does(tmp_path: Path) -> None:
    src = small_tree(tmp_path / "src")
    (src / ".rsyncignore").write_text("*.log\n- \n!\n", encoding="utf-8")
    (src / ".deploy.filter").write_text("+ *.md\n. other.rules\n- *\n-p tmp/\n", encoding="utf-8")
    (src / ".deployignore").write_text("node_modules/\n!\n", encoding="utf-8")
    (src / "stageflow.toml").write_text(
        "[sync.environments.api]\n"
        'role = "api"\n'
        f'target = "{tmp_path / "dst"}"\n'
        'exclude_from = [".rsyncignore", ".gone"]\n'
        'filter_from = ".deploy.filter"\n'
        'ignore_from = ".deployignore"\n'
        "[sync.environments.web]\n"
        'role = "web"\n'
        f'target = "{tmp_path / "web"}"\n'
        'filter_from = ".deploy.filter"\n',  # the same file: its problems are listed once
        encoding="utf-8",
    )
    proc = run("validate", cwd=src, home=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    fails = [ln.removeprefix("FAIL ") for ln in proc.stderr.splitlines() if ln.startswith("FAIL ")]
    assert fails == [
        ".rsyncignore:2: '- ' \u2014 no pattern after the prefix (rsync: unexpected end of filter rule): "
        "write a pattern after it or delete the line",
        f"exclude_from file '.gone' not found ({src / '.gone'}): create it or remove it from exclude_from",
        ".deploy.filter:2: '. other.rules' \u2014 rsync's merge rule (reads rules from another file) is "
        "not supported by stageflow: use only '+ PATTERN', '- PATTERN' and '!' lines "
        "(see docs/deploy-sync.md)",
        ".deploy.filter:4: '-p tmp/' \u2014 the modifier 'p' (perishable) is not supported by stageflow: "
        "remove the modifier or the rule",
        ".deployignore:2: '!' \u2014 not a gitignore pattern stageflow can match (git matches nothing "
        "with it): delete the line",
    ]
    assert run("target", "init", tmp_path / "web", "--role", "web", cwd=src, home=tmp_path).returncode == 0
    sync = run("sync", src, "--env", "web", cwd=src, home=tmp_path)
    assert sync.returncode == 2, sync.stderr
    assert sync.stderr.strip() == f"stageflow: error: {fails[2]}"
    assert {p.name for p in (tmp_path / "web").iterdir()} == {".stageflow"}  # nothing shipped


def test_validate_passes_good_rule_files(tmp_path: Path) -> None:
    src = small_tree(tmp_path / "src")
    (src / ".rsyncignore").write_text("+ */\n+ *.md\n- *\n!\n- y\n", encoding="utf-8")
    (src / "stageflow.toml").write_text(
        f'[sync.environments.api]\nrole = "api"\ntarget = "{tmp_path / "dst"}"\n'
        'exclude_from = ".rsyncignore"\n',
        encoding="utf-8",
    )
    proc = run("validate", cwd=src, home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "ok   [sync.environments.api] rule files: .rsyncignore" in proc.stdout


@pytest.mark.parametrize(("key", "where"), [("ignore_from", ".deployignore:3"), ("protect", "protect entry")])
def test_a_gitignore_line_pathspec_rejects_is_exit_2_naming_it(tmp_path: Path, key: str, where: str) -> None:
    """'!' alone (git matches nothing with it) was an internal GitIgnorePatternError (exit 1)."""
    from stageflow.errors import BadInput

    (tmp_path / ".deployignore").write_text("# c\nnode_modules/\n!\n", encoding="utf-8")
    value: object = ".deployignore" if key == "ignore_from" else ["uploads/", "!"]
    with pytest.raises(BadInput) as caught:
        SelectionRules.from_profile(EnvironmentProfile(role="r", **{key: value}), tmp_path)
    assert str(caught.value) == (
        f"{where}: '!' \u2014 not a gitignore pattern stageflow can match (git matches nothing with it): "
        "delete the line"
    )
