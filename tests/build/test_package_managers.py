"""pnpm and yarn workspaces with the real binaries: the fixture is installed by the package manager
itself (offline: only workspace-internal dependencies), discovered, and built; the runner is chosen by
the ``packageManager`` field (pnpm) or the lockfile (yarn), pre/post scripts follow each manager's rule,
and a script that needs the package manager (it reads ``$npm_execpath``) really runs through it.

.ci/run installs pnpm@9 and yarn@1 next to pm2; locally a missing binary skips with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from .conftest import Monorepo, git, write_monorepo

PNPM = shutil.which("pnpm")
YARN = shutil.which("yarn")

LAYOUT = {
    "packages/core": ("core", []),
    "packages/ui": ("ui", ["core"]),
    "apps/site": ("site", ["ui", "core"]),
}
BUILD = "node ../../tools/build.js ../.."
#: Only a package manager sets $npm_execpath: this build fails when run directly, and prints who ran it.
VIA_MANAGER = 'test -n "$npm_execpath" && echo "ran by $(basename $npm_execpath)" && ' + BUILD
MARKERS = {"prebuild": "mkdir -p dist && touch dist/PRE_RAN", "postbuild": "touch dist/POST_RAN"}


def _version(binary: str) -> str:
    return subprocess.run([binary, "--version"], capture_output=True, text=True, check=True).stdout.strip()


def _install(repo: Monorepo, argv: list[str]) -> None:
    env = dict(os.environ, CI="1", npm_config_update_notifier="false")
    proc = subprocess.run(argv, cwd=repo.root, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, f"{argv} failed:\n{proc.stdout}\n{proc.stderr}"


def _fixture(root: Path, spec: str) -> Monorepo:
    scripts = {
        "core": {**MARKERS, "build": BUILD},
        "ui": {"build": BUILD},
        "site": {"build": VIA_MANAGER},
    }
    return write_monorepo(root, LAYOUT, scripts=scripts, spec=spec, git_init=False)


def _commit(repo: Monorepo) -> None:
    git(repo.root, "init", "-q", "-b", "main")
    git(repo.root, "add", "-A")
    git(repo.root, "commit", "-qm", "initial")


def _markers(repo: Monorepo) -> tuple[bool, bool]:
    dist = repo.path("core") / "dist"
    return (dist / "PRE_RAN").exists(), (dist / "POST_RAN").exists()


@pytest.mark.skipif(PNPM is None, reason="pnpm is not on PATH (.ci/run installs it: npm install -g pnpm@9)")
def test_pnpm_workspace_with_the_real_binary(tmp_path: Path, monkeypatch, cli_json):
    repo = _fixture(tmp_path / "pnpm", "workspace:*")
    manifest = json.loads((repo.root / "package.json").read_text())
    del manifest["workspaces"]  # pnpm reads pnpm-workspace.yaml only
    manifest["packageManager"] = f"pnpm@{_version(PNPM)}"
    (repo.root / "package.json").write_text(json.dumps(manifest, indent=2))
    globs = "packages:\n  - 'packages/*'\n  - 'apps/*'\n  - '!apps/ignored'\n"
    (repo.root / "pnpm-workspace.yaml").write_text(globs)
    ignored = repo.root / "apps" / "ignored"
    ignored.mkdir()
    (ignored / "package.json").write_text(json.dumps({"name": "ignored", "scripts": {"build": "exit 1"}}))
    _install(repo, [PNPM, "install", "--offline", "--no-frozen-lockfile", "--reporter=silent"])
    assert (repo.root / "pnpm-lock.yaml").is_file()
    assert (repo.path("site") / "node_modules" / "ui").is_symlink()  # workspace:* linked by pnpm
    _commit(repo)
    monkeypatch.setenv("BUILD_TRACE", str(repo.trace))

    code, doc, err = cli_json(str(repo.root))
    assert code == 0, err
    assert sorted(doc["workspaces"]) == ["core", "site", "ui"]  # apps/ignored excluded by "!"
    assert doc["order"] == [["core"], ["ui"], ["site"]]
    assert repo.built() == ["core", "ui", "site"]
    assert "site: ran by pnpm" in err  # the $npm_execpath script went through pnpm run
    assert _markers(repo) == (True, True)  # pnpm >= 8 runs pre/post scripts, so the direct runner does
    assert "ui:" in repo.out("site") and "core:" in repo.out("ui")

    assert cli_json(str(repo.root))[0] == 0 and repo.built() == []
    repo.edit("core")
    code, doc, err = cli_json(str(repo.root))
    assert code == 0 and doc["built"] == ["core", "ui", "site"], err
    assert repo.built() == ["core", "ui", "site"]

    # everything through the package manager: pnpm run agrees on pre/post, with and without
    # enable-pre-post-scripts=false in .npmrc (which the direct runner honours too)
    (repo.root / "stageflow.toml").write_text("[build]\nrunner_options = {direct = false}\n")
    for npmrc, ran in (None, (True, True)), ("enable-pre-post-scripts=false\n", (False, False)):
        if npmrc is not None:
            (repo.root / ".npmrc").write_text(npmrc)
        for direct in ("false", "true"):
            (repo.root / "stageflow.toml").write_text(f"[build]\nrunner_options = {{direct = {direct}}}\n")
            for dist in repo.root.glob("*/*/dist"):
                shutil.rmtree(dist)
            code, doc, err = cli_json(str(repo.root), "--force")
            assert code == 0, err
            assert repo.built() == ["core", "ui", "site"] and _markers(repo) == ran, (npmrc, direct)


@pytest.mark.skipif(YARN is None, reason="yarn is not on PATH (.ci/run installs it: npm install -g yarn@1)")
def test_yarn_workspace_with_the_real_binary(tmp_path: Path, monkeypatch, cli_json):
    repo = _fixture(tmp_path / "yarn", "*")
    manifest = json.loads((repo.root / "package.json").read_text())
    manifest["workspaces"] = {"packages": ["packages/*", "apps/*"]}  # yarn's object form
    (repo.root / "package.json").write_text(json.dumps(manifest, indent=2))
    _install(repo, [YARN, "install", "--offline", "--non-interactive", "--silent", "--no-progress"])
    assert (repo.root / "yarn.lock").is_file()  # no packageManager field: the lockfile picks yarn
    assert (repo.root / "node_modules" / "ui").is_symlink()
    _commit(repo)
    monkeypatch.setenv("BUILD_TRACE", str(repo.trace))

    code, doc, err = cli_json(str(repo.root))
    assert code == 0, err
    assert doc["order"] == [["core"], ["ui"], ["site"]]
    assert repo.built() == ["core", "ui", "site"]
    assert "site: ran by yarn" in err  # the $npm_execpath script went through yarn run
    assert _markers(repo) == (True, True)  # yarn 1 runs prebuild/postbuild: so does the direct runner
    assert cli_json(str(repo.root))[0] == 0 and repo.built() == []

    # through yarn run for every workspace: yarn runs the pre/post scripts itself
    (repo.root / "stageflow.toml").write_text("[build]\nrunner_options = {direct = false}\n")
    for dist in repo.root.glob("*/*/dist"):
        shutil.rmtree(dist)
    code, doc, err = cli_json(str(repo.root), "--force")
    assert code == 0, err
    assert repo.built() == ["core", "ui", "site"] and _markers(repo) == (True, True)
    assert "core: $ mkdir -p dist && touch dist/PRE_RAN" in err  # yarn's own echo of each script
