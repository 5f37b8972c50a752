"""The git accelerator against real git repositories: its change set must equal the full walk's in
every case it accepts (random edits, adds, deletes, renames, names with spaces/unicode, commits on
other branches, git-ignored directories the rules ship), and it must fall back to the walk, saying
why, for submodules, changed rules, an unknown last commit, a target synced from elsewhere and
``--no-git``. Also the target-side manifest journal (delta lines, replay, torn lines)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from stageflow.fast.sync_cli import load_request
from stageflow.sync.engine import sync
from stageflow.sync.manifest import Entry, delta_line, manifest_id_of_json, manifest_to_json, replay

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    proc = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def make_repo(project, ignore: str = "node_modules/\n*.log\ndist/\n") -> None:
    project.write(".gitignore", ignore)
    git(project.source, "init", "-q", "-b", "main")
    git(project.source, "add", "-A")
    git(project.source, "commit", "-qm", "first")


def run(project, *, git_on: bool = True, dry: bool = False):
    return sync(load_request(project.source, "api", dry_run=dry, use_git=git_on))


def both(project) -> tuple[dict[str, list[str]], dict[str, list[str]], object]:
    """(accelerator change set, walk change set, accelerator result), both as dry runs."""
    fast = run(project, dry=True)
    slow = run(project, git_on=False, dry=True)
    return fast.changes.as_dict(), slow.changes.as_dict(), fast


def same_but_mtime(project, fast: dict[str, list[str]], slow: dict[str, list[str]]) -> None:
    """Equal change sets, except that the walk also lists files whose content did not change but
    whose mtime did (e.g. rewritten by a branch switch and back), which git does not report."""
    assert fast["added"] == slow["added"] and fast["deleted"] == slow["deleted"]
    extra = set(slow["modified"]) - set(fast["modified"])
    assert set(fast["modified"]) <= set(slow["modified"])
    for rel in extra:
        assert (project.target / rel).read_bytes() == (project.source / rel).read_bytes(), rel


def expected_tree(project, snapshot) -> dict[str, bytes | str]:
    return {
        k: v
        for k, v in snapshot(project.source).items()
        if not k.startswith((".git/", "node_modules/")) and not k.endswith(".log")
    }


@pytest.fixture
def repo(cli, project):
    project.env(exclude='["node_modules/", "*.log"]')
    make_repo(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    first = run(project)
    assert first.accelerator == "walk" and "no local manifest" in (first.accelerator_reason or "")
    return project


def test_second_sync_uses_git_and_ships_only_the_change(repo, snapshot) -> None:
    repo.write("packages/lib/lib.js", "v2\n")
    fast, slow, res = both(repo)
    assert res.accelerator == "git" and res.accelerator_reason is None
    assert fast == slow == {"added": [], "modified": ["packages/lib/lib.js"], "deleted": []}
    assert res.files_scanned < 5  # only the candidates were looked at
    done = run(repo)
    assert done.accelerator == "git" and done.changes.modified == ["packages/lib/lib.js"]
    assert snapshot(repo.target) == expected_tree(repo, snapshot)
    again = run(repo)
    assert again.accelerator == "git" and not again.changes


NAMES = ["a.txt", "with space.js", "한글/파일.txt", "dir with space/é.js", "deep/x/y/z.ts", "ünï/cödé.md"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_edits_accelerator_equals_walk(repo, snapshot, seed: int) -> None:
    rng = random.Random(seed)
    src = repo.source
    counter = 0

    def files() -> list[str]:
        out = []
        for p in src.rglob("*"):
            rel = p.relative_to(src).as_posix()
            if p.is_file() and not rel.startswith(".git/") and rel not in ("stageflow.toml", ".gitignore"):
                out.append(rel)
        return sorted(out)

    for _ in range(14):
        for _ in range(rng.randint(1, 4)):
            counter += 1
            existing = files()
            op = rng.choice(["edit", "add", "delete", "rename", "git-mv", "ignored", "commit", "branch"])
            if op == "edit" and existing:
                p = src / rng.choice(existing)
                p.write_text(p.read_text(errors="replace") + f" edit {counter}\n")
            elif op == "add" or not existing:
                name = rng.choice(NAMES)
                stem, dot, ext = name.rpartition(".")
                repo.write(f"{stem}-{counter}.{ext}", f"new {counter}\n")
            elif op == "delete":
                (src / rng.choice(existing)).unlink()
            elif op in ("rename", "git-mv"):
                old = rng.choice(existing)
                new = f"moved {counter}/{Path(old).name}"
                (src / new).parent.mkdir(parents=True, exist_ok=True)
                tracked = git(src, "ls-files", "--", old).strip()
                if op == "git-mv" and tracked:
                    git(src, "mv", old, new)
                else:
                    (src / old).rename(src / new)
            elif op == "ignored":  # dist/ is git-ignored but shipped by the rules
                repo.write(f"packages/p{counter % 3}/dist/out{counter % 4}.js", f"built {counter}\n")
                if rng.random() < 0.3 and (src / "packages/p0/dist").exists():
                    shutil.rmtree(src / "packages/p0/dist")
            elif op == "commit":
                git(src, "add", "-A")
                git(src, "commit", "-qm", f"c{counter}", "--allow-empty")
            elif op == "branch":  # jump to a commit that is not a descendant of the last synced one
                git(src, "add", "-A")
                git(src, "commit", "-qm", f"c{counter}", "--allow-empty")
                base = git(src, "rev-list", "--max-parents=0", "HEAD").strip()
                git(src, "checkout", "-q", "-B", f"b{counter}", base)
                repo.write(f"branch-{counter}.txt", "b\n")
                git(src, "add", "-A")
                git(src, "commit", "-qm", f"b{counter}")
        fast, slow, res = both(repo)
        assert res.accelerator == "git", res.accelerator_reason
        same_but_mtime(repo, fast, slow)
        done = run(repo)
        assert done.changes.as_dict() == fast
        assert snapshot(repo.target) == expected_tree(repo, snapshot)


def test_ignored_directory_the_rules_ship_is_walked_and_its_removal_seen(repo, snapshot) -> None:
    repo.write("dist/app.js", "built 1\n")
    repo.write("dist/sub/chunk.js", "chunk\n")
    fast, slow, res = both(repo)
    assert res.accelerator == "git" and fast == slow
    assert fast["added"] == ["dist/app.js", "dist/sub/chunk.js"]
    run(repo)
    repo.write("dist/app.js", "built 2\n")
    fast, slow, _ = both(repo)
    assert fast == slow == {"added": [], "modified": ["dist/app.js"], "deleted": []}
    run(repo)
    shutil.rmtree(repo.source / "dist")  # git no longer mentions dist/ at all
    fast, slow, res = both(repo)
    assert res.accelerator == "git"
    assert fast == slow == {"added": [], "modified": [], "deleted": ["dist/app.js", "dist/sub/chunk.js"]}
    run(repo)
    assert snapshot(repo.target) == expected_tree(repo, snapshot)


def test_edit_reverted_after_a_sync_is_still_seen(repo, snapshot) -> None:
    repo.write("packages/lib/lib.js", "dirty\n")
    run(repo)  # shipped while uncommitted
    git(repo.source, "checkout", "--", "packages/lib/lib.js")  # back to the committed content
    fast, slow, res = both(repo)
    assert res.accelerator == "git" and fast == slow == {
        "added": [],
        "modified": ["packages/lib/lib.js"],
        "deleted": [],
    }
    run(repo)
    assert (repo.target / "packages/lib/lib.js").read_text() == "lib\n"


def test_changed_rules_walk(repo) -> None:
    repo.env(exclude='["node_modules/", "*.log", "apps/web/"]')
    fast, slow, res = both(repo)
    assert res.accelerator == "walk" and "rules changed" in (res.accelerator_reason or "")
    assert fast == slow


def test_exclude_from_file_change_is_a_rules_change(repo) -> None:
    repo.write(".rsyncignore", "apps/web/\n")
    repo.env(exclude='["node_modules/", "*.log"]', exclude_from='".rsyncignore"')
    run(repo)
    repo.write(".rsyncignore", "apps/\n")
    res = run(repo, dry=True)
    assert res.accelerator == "walk" and "rules changed" in (res.accelerator_reason or "")


def test_no_git_flag_and_non_git_source_walk(cli, project) -> None:
    project.env(exclude='["node_modules/", "*.log"]')
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["accelerator"] == "walk"
    assert doc["accelerator_reason"] == "source is not the root of a git work tree"
    make_repo(project)
    project.write("packages/lib/lib.js", "v2\n")
    code, out, err = cli("sync", project.source, "--env", "api", "--json", "--no-git")
    doc = json.loads(out)
    assert doc["accelerator"] == "walk" and doc["accelerator_reason"] == "--no-git"
    assert doc["changes"]["modified"] == ["packages/lib/lib.js"]


def test_submodules_walk(repo, tmp_path) -> None:
    sub = tmp_path / "subrepo"
    sub.mkdir()
    (sub / "s.txt").write_text("s\n")
    git(sub, "init", "-q")
    git(sub, "add", "-A")
    git(sub, "commit", "-qm", "s")
    git(repo.source, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(sub), "vendor/sub")
    fast, slow, res = both(repo)
    assert res.accelerator == "walk" and "submodules" in (res.accelerator_reason or "")
    assert fast == slow and "vendor/sub/s.txt" in fast["added"]


def test_last_synced_commit_gone_walks(repo) -> None:
    git(repo.source, "commit", "-q", "--amend", "-m", "rewritten")
    git(repo.source, "reflog", "expire", "--expire=now", "--all")
    git(repo.source, "gc", "-q", "--prune=now")
    repo.write("packages/lib/lib.js", "v2\n")
    fast, slow, res = both(repo)
    assert res.accelerator == "walk" and "not in this repository" in (res.accelerator_reason or "")
    assert fast == slow


def test_target_synced_from_another_machine_walks_and_is_correct(
    repo, monkeypatch, tmp_path, snapshot
) -> None:
    other = tmp_path / "other-home"
    monkeypatch.setenv("STAGEFLOW_HOME", str(other))  # another machine: its own local state
    repo.write("packages/lib/lib.js", "from elsewhere\n")
    res = run(repo)
    assert res.accelerator == "walk" and res.changes.modified == ["packages/lib/lib.js"]
    monkeypatch.undo()
    monkeypatch.setenv("STAGEFLOW_HOME", str(tmp_path / "stageflow-home"))
    repo.write("apps/web/page.js", "web v2\n")
    res = run(repo)
    assert res.accelerator == "walk" and "no local manifest" in (res.accelerator_reason or "")
    assert res.changes.as_dict() == {"added": [], "modified": ["apps/web/page.js"], "deleted": []}
    assert snapshot(repo.target) == expected_tree(repo, snapshot)
    assert run(repo).accelerator == "git"


def test_no_change_writes_nothing_on_the_target(repo, snapshot) -> None:
    before = snapshot(repo.target, skip_state=False)
    res = run(repo)
    assert res.accelerator == "git" and not res.changes
    assert snapshot(repo.target, skip_state=False) == before


def test_in_place_target_keeps_a_journal_not_a_new_manifest(repo) -> None:
    state_dir = repo.target / ".stageflow"
    base = (state_dir / "manifest.json").read_text()
    for i in range(3):
        repo.write("packages/lib/lib.js", f"v{i}\n")
        run(repo)
    assert (state_dir / "manifest.json").read_text() == base  # not rewritten
    journal = (state_dir / "manifest.journal").read_text()
    assert len(journal.splitlines()) == 3 and len(journal) < 2000
    state = json.loads((state_dir / "state.json").read_text())
    shipped = replay(base, journal, state["manifest_id"])
    assert shipped is not None and shipped["packages/lib/lib.js"].size == 3


def test_replay_follows_the_chain_and_ignores_torn_and_orphan_lines() -> None:
    m = {"a": Entry(1, 1, 0o100644, "h1"), "b": Entry(2, 2, 0o100644, "h2")}
    base = manifest_to_json(m)
    bid = manifest_id_of_json(base)
    orphan, _ = delta_line(bid, {"z": Entry(9, 9, 0o100644, "hz")}, [])  # a killed sync's line
    one, id1 = delta_line(bid, {"a": Entry(5, 5, 0o100644, "h5")}, ["b"])
    two, id2 = delta_line(id1, {"c": Entry(3, 3, 0o100644, "h3")}, [])
    journal = orphan + one + '{"prev": "torn' + "\n" + two
    got = replay(base, journal, id2)
    assert got == {"a": Entry(5, 5, 0o100644, "h5"), "c": Entry(3, 3, 0o100644, "h3")}
    assert replay(base, journal, id1) == {"a": Entry(5, 5, 0o100644, "h5")}
    assert replay(base, journal, bid) == m
    assert replay(base, journal, "unknown") is None
    assert replay(None, journal, id2) is None


def test_ignored_single_file_the_rules_ship_and_escaping_links_stay_reported(repo, tmp_path) -> None:
    repo.write(".gitignore", "node_modules/\n*.log\ndist/\nlocal.json\n")
    repo.write("local.json", "{}\n")
    (tmp_path / "outside.txt").write_text("secret")
    os.symlink("../../outside.txt", repo.source / "apps/escape.txt")
    fast, slow, res = both(repo)
    assert res.accelerator == "git" and fast == slow and "local.json" in fast["added"]
    assert res.skipped_links == ["apps/escape.txt"]
    run(repo)
    git(repo.source, "add", "-A")
    git(repo.source, "commit", "-qm", "link")
    run(repo)  # records the new commit
    again = run(repo)
    assert again.accelerator == "git" and not again.changes
    assert again.files_scanned == 1  # only local.json (git lists ignored files every time)
    assert again.skipped_links == ["apps/escape.txt"]  # carried, though git no longer names it
    repo.write("local.json", '{"a": 1}\n')
    fast, slow, _ = both(repo)
    assert fast == slow == {"added": [], "modified": ["local.json"], "deleted": []}
    run(repo)
    (repo.source / "local.json").unlink()
    fast, slow, _ = both(repo)
    assert fast == slow == {"added": [], "modified": [], "deleted": ["local.json"]}


# ------------------------------------------------------------------ ignore coverage (no --ignored)
def _status_mode(project, exclude: tuple[str, ...] = ("node_modules/", "*.log", "dist/")) -> bool:
    from stageflow.sync import gitscan
    from stageflow.sync.profile import EnvironmentProfile
    from stageflow.sync.rules import SelectionRules

    profile = EnvironmentProfile(role="apiserver", exclude=list(exclude))
    run_ = gitscan.StatusRun(project.source, SelectionRules.from_profile(profile, project.source).skip_lines)
    run_.result()
    return run_.fast


@pytest.mark.parametrize("seed", [4, 5])
def test_covered_ignores_use_the_untracked_cache_and_equal_the_walk(cli, project, snapshot, seed) -> None:
    """Every .gitignore line is also an exclude rule: git status runs without --ignored (untracked
    cache). A new nested .gitignore or a new root line that ignores something the rules ship (gen/,
    tmp/) is noticed, and the change sets still equal the walk's."""
    project.env(exclude='["node_modules/", "*.log", "dist/"]')
    make_repo(project)
    assert cli("target", "init", project.target, "--role", "apiserver")[0] == 0
    run(project)
    assert _status_mode(project) is True
    rng = random.Random(seed)
    src = project.source
    for counter in range(12):
        op = rng.choice(["edit", "add", "dist", "nested-ignore", "root-ignore", "commit"])
        if op == "edit":
            project.write("packages/lib/lib.js", f"v{counter}\n")
        elif op == "add":
            project.write(f"apps/new{counter}.js", f"n{counter}\n")
        elif op == "dist":  # ignored and excluded: never ships
            project.write(f"packages/p{counter % 2}/dist/o.js", f"d{counter}\n")
        elif op == "nested-ignore":  # ignores gen/, which the rules ship
            project.write("apps/web/.gitignore", "gen/\n")
            project.write(f"apps/web/gen/g{counter}.js", f"g{counter}\n")
        elif op == "root-ignore":
            with open(src / ".gitignore", "a", encoding="utf-8") as fh:
                fh.write("tmp/\n")
            project.write(f"tmp/t{counter}.txt", f"t{counter}\n")
        else:
            git(src, "add", "-A")
            git(src, "commit", "-qm", f"c{counter}", "--allow-empty")
        fast, slow, res = both(project)
        assert res.accelerator == "git", res.accelerator_reason
        same_but_mtime(project, fast, slow)
        assert run(project).changes.as_dict() == fast
        expected = {
            k: v
            for k, v in snapshot(src).items()
            if not k.startswith((".git/", "node_modules/")) and not k.endswith(".log") and "/dist/" not in k
        }
        assert snapshot(project.target) == expected
    uncovered = (src / "apps/web/.gitignore").exists() or "tmp/" in (src / ".gitignore").read_text()
    assert _status_mode(project) is not uncovered


def test_uncovered_ignore_line_keeps_ignored_listing(cli, project, monkeypatch) -> None:
    project.env(exclude='["node_modules/", "*.log"]')  # dist/ is ignored by git but shipped
    make_repo(project)
    assert _status_mode(project, ("node_modules/", "*.log")) is False
    assert _status_mode(project) is True
    monkeypatch.setenv("GIT_OPTIONAL_LOCKS", "0")  # the user's "never write the index" wins
    assert _status_mode(project) is False
