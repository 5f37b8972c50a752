"""Task hash inputs at turbo's granularity, on real lockfiles written by npm, pnpm 9 and yarn 1
(tests/build/data/lockfiles/<manager>: ``@l/a`` uses is-odd -> is-number 6, ``@l/b`` uses left-pad
and ``@l/a``, ``@l/c`` uses is-number 7). Each task hash holds only the lockfile entries its own
external dependencies reach and the root package.json's build fields: a root script changes no hash;
bumping one external dependency changes only the workspaces that (transitively) use it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stageflow.build.hashing import Lockfile
from stageflow.errors import BadInput

from .conftest import git

DATA = Path(__file__).parent / "data" / "lockfiles"
IS_NUMBER_6 = "sha512-Wu1VHeILBK8KAWJUAiSZQX94GmOE45Rg6"  # is-number@6.0.0's integrity prefix
LEFT_PAD = "sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24"  # left-pad@1.3.0
LOCKS = {"npm": "package-lock.json", "pnpm": "pnpm-lock.yaml", "yarn": "yarn.lock"}


def _repo(tmp_path: Path, manager: str) -> Path:
    root = tmp_path / manager
    shutil.copytree(DATA / manager, root)
    (root / ".gitignore").write_text("node_modules/\n.stageflow/\n")
    for ws in (root / "packages").iterdir():
        (ws / "index.js").write_text(f"// {ws.name}\n")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "initial")
    return root


def _hashes(cli_json, root: Path) -> dict[str, str]:
    code, doc, err = cli_json(str(root), "--dry-run")
    assert code == 0, err
    return {t["name"]: t["hash"] for t in doc["tasks"]}


def _changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {n for n in before if before[n] != after[n]}


def _edit_root(root: Path, **fields) -> None:
    manifest = json.loads((root / "package.json").read_text())
    manifest.update(fields)
    (root / "package.json").write_text(json.dumps(manifest, indent=2))


@pytest.mark.parametrize("manager", ["npm", "pnpm", "yarn"])
def test_hash_inputs_follow_each_workspace_s_own_dependencies(tmp_path: Path, cli_json, manager: str):
    root = _repo(tmp_path, manager)
    lock = root / LOCKS[manager]
    base = _hashes(cli_json, root)
    assert set(base) == {"@l/a", "@l/b", "@l/c"}

    _edit_root(root, scripts={"lint": "eslint ."}, description="a root script and description")
    assert _changed(base, _hashes(cli_json, root)) == set()  # turbo: 0 of 3 as well

    text = lock.read_text()
    assert IS_NUMBER_6 in text and LEFT_PAD in text
    lock.write_text(text.replace(IS_NUMBER_6, "sha512-BUMPEDBUMPEDBUMPEDBUMPEDBUMPEDBUMPED"))
    bumped = _hashes(cli_json, root)
    # is-number 6 is reached from @l/a (is-odd); @l/b depends on @l/a; @l/c has is-number 7
    assert _changed(base, bumped) == {"@l/a", "@l/b"}

    lock.write_text(lock.read_text().replace(LEFT_PAD, "sha512-LEFTPADBUMPEDLEFTPADBUMPEDLEFTPAD"))
    assert _changed(bumped, _hashes(cli_json, root)) == {"@l/b"}

    before_dev = _hashes(cli_json, root)
    _edit_root(root, devDependencies={"typescript": "^5.0.0"})  # a root tool: every workspace
    assert _changed(before_dev, _hashes(cli_json, root)) == {"@l/a", "@l/b", "@l/c"}


@pytest.mark.parametrize("manager", ["npm", "pnpm", "yarn"])
def test_lockfile_entries_per_workspace(manager: str):
    lock = Lockfile(DATA / manager)
    a = lock.entries("packages/a", {"is-odd": "^3.0.1"})
    c = lock.entries("packages/c", {"is-number": "^7.0.0"})
    versions_a = sorted(a) if manager != "npm" else sorted(k.split("node_modules/")[-1] for k in a)
    assert any("is-odd" in k for k in versions_a) and any("is-number" in k for k in versions_a)
    assert len(a) == 2 and len(c) == 1
    assert not set(a.values()) & set(c.values())  # is-number 6 for a, 7 for c
    assert lock.entries("packages/b", {"left-pad": "^1.3.0", "@l/a": "*"}) != {}


@pytest.mark.parametrize("manager", ["npm", "pnpm", "yarn"])
def test_a_broken_lockfile_is_one_line_exit_2(tmp_path: Path, cli, manager: str):
    root = _repo(tmp_path, manager)
    (root / LOCKS[manager]).write_text("{{{ not a lockfile\n")
    with pytest.raises(BadInput, match=LOCKS[manager]):
        Lockfile(root)
    code, _, err = cli("build", str(root), "--dry-run")
    assert code == 2 and err.count("\n") == 1 and "regenerate it" in err
