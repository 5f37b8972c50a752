"""Selection rules, scanning and change sets (engine level, no CLI)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stageflow.errors import BadInput
from stageflow.sync.manifest import diff, manifest_from_json, manifest_to_json, scan
from stageflow.sync.profile import EnvironmentProfile
from stageflow.sync.rules import SelectionRules


def rules(source: Path, **kw: object) -> SelectionRules:
    return SelectionRules.from_profile(EnvironmentProfile(role="apiserver", **kw), source)


def test_include_exclude_protect_and_always_excluded(project) -> None:
    project.write(".git/HEAD", "ref")
    project.write(".env.production", "SECRET=1")
    project.write("uploads/a.png", "png")
    project.write(".rsyncignore.api", "# comment\napps/web/\n")
    r = rules(
        project.source,
        include=["apps/**", "packages/**", ".env*", "uploads/**"],
        exclude=["node_modules/", "*.log"],
        exclude_from=".rsyncignore.api",
        protect=[".env*", "uploads/"],
    )
    result = scan(project.source, r)
    files = sorted(p for p in result.files if not p.endswith("/"))
    assert files == ["apps/api-server/index.js", "packages/lib/lib.js"]
    # directory entries: the shipped directories the include list selects (rsync-style)
    assert sorted(p for p in result.files if p.endswith("/")) == [
        "apps/",
        "apps/api-server/",
        "packages/",
        "packages/lib/",
    ]
    assert result.excluded >= 4  # .git, node_modules, uploads dirs; web dir; files
    assert r.unmatched_includes(list(result.files)) == [".env*", "uploads/**"]


def test_ignore_from_reads_gitignore_syntax(project) -> None:
    project.write(".deployignore", "# comment\napps/web/\n!apps/web/keep.js\n")
    r = rules(project.source, ignore_from=".deployignore")
    files = {p for p in scan(project.source, r).files if not p.endswith("/")}
    assert "apps/api-server/index.js" in files and not any(p.startswith("apps/web/") for p in files)


@pytest.mark.parametrize("key", ["exclude_from", "filter_from", "ignore_from"])
def test_missing_rule_file_is_bad_input(project, key: str) -> None:
    with pytest.raises(BadInput, match=f"{key} file '.nope' not found"):
        rules(project.source, **{key: ".nope"})


def test_hashes_reused_when_stat_unchanged_and_diff(project) -> None:
    r = rules(project.source)
    first = scan(project.source, r)
    assert first.hashed == len([p for p in first.files if not p.endswith("/")])
    again = scan(project.source, r, first.files)
    assert again.hashed == 0 and again.files == first.files
    project.write("packages/lib/lib.js", "lib changed\n")
    (project.source / "apps/web/page.js").unlink()
    project.write("new file ü\nline.js", "n")
    third = scan(project.source, r, first.files)
    assert third.hashed == 2
    changes = diff(first.files, third.files)
    assert changes.added == ["new file ü\nline.js"]
    assert changes.modified == ["packages/lib/lib.js"]
    assert changes.deleted == ["apps/web/page.js"]
    assert changes.bytes_to_send == len("lib changed\n") + 1


def test_dirty_paths_are_resent_or_redeleted(project) -> None:
    r = rules(project.source)
    m = scan(project.source, r).files
    changes = diff(m, m, dirty={"packages/lib/lib.js", "gone.txt"})
    assert (
        changes.modified == ["packages/lib/lib.js"] and changes.deleted == ["gone.txt"] and not changes.added
    )


def test_links_inside_kept_as_links_outside_skipped(project, tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    os.symlink("../packages/lib/lib.js", project.source / "apps/lib-link.js")
    os.symlink(str(outside), project.source / "abs-link")
    os.symlink("../../secret.txt", project.source / "apps/escape")
    result = scan(project.source, rules(project.source))
    assert result.files["apps/lib-link.js"].link == "../packages/lib/lib.js"
    assert result.skipped_links == ["abs-link", "apps/escape"]
    assert "abs-link" not in result.files


def test_manifest_round_trip(project) -> None:
    m = scan(project.source, rules(project.source)).files
    back, meta = manifest_from_json(manifest_to_json(m, release="r1"))
    assert back == m and meta["release"] == "r1"


def test_fast_matcher_agrees_with_pathspec() -> None:
    import pathspec

    from stageflow.sync.rules import _Matcher

    paths = [
        "a.log",
        "x/a.log",
        "node_modules/x.js",
        "a/node_modules/b/c.js",
        "dist/a",
        "x/dist/a",
        "apps/api-server/a.js",
        "apps/web/a.js",
        "logs/",
        "logs/a",
        ".env",
        ".env.local",
        "src/.env",
    ]
    for lines in (
        ["node_modules/", "*.log", "/dist", "apps/api-server/**", "logs/", ".env*"],
        ["*.log", "!keep.log", "apps/**", "!apps/web/**"],
    ):
        spec = pathspec.GitIgnoreSpec.from_lines(lines)
        matcher = _Matcher(spec)
        assert [matcher.match_file(p) for p in paths + ["keep.log"]] == [
            bool(spec.match_file(p)) for p in paths + ["keep.log"]
        ]
