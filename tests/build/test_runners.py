"""Build runners: direct execution on a pnpm-workspace.yaml repo (no pnpm binary needed), the
direct-is-safe rule, and the command chain with pre/post scripts per package manager."""

from __future__ import annotations

import json
from pathlib import Path

from stageflow.build import scripts
from stageflow.build.model import Workspace
from stageflow.plugin_manager import get_plugin_manager

from .conftest import write_monorepo


def _ws(scripts_: dict[str, str]) -> Workspace:
    return Workspace("x", "x", Path("/r/x"), "1", scripts_, frozenset(), {})


def test_chain_and_pre_post():
    ws = _ws({"prebuild": "a", "build": "b", "postbuild": "c", "lint": "l"})
    assert scripts.command_chain(ws, "build") == [("prebuild", "a"), ("build", "b"), ("postbuild", "c")]
    assert scripts.command_chain(ws, "build", pre_post=False) == [("build", "b")]
    assert scripts.command_chain(ws, "test") == []


def test_direct_is_safe(tmp_path: Path):
    assert scripts.direct_is_safe([("build", "tsc -b")], tmp_path)
    assert not scripts.direct_is_safe([("build", "echo $npm_config_foo")], tmp_path)
    (tmp_path / ".pnp.cjs").write_text("")
    assert not scripts.direct_is_safe([("build", "tsc -b")], tmp_path)


def test_bin_path_nearest_first(tmp_path: Path):
    assert scripts.bin_path(tmp_path / "apps" / "web", tmp_path) == [
        str(tmp_path / "apps/web/node_modules/.bin"),
        str(tmp_path / "apps/node_modules/.bin"),
        str(tmp_path / "node_modules/.bin"),
    ]


def test_pnpm_repo_builds_directly_without_pre_scripts(tmp_path: Path, monkeypatch, cli_json):
    repo = write_monorepo(
        tmp_path / "p",
        {"packages/core": ("core", []), "apps/site": ("site", ["core"])},
        spec="workspace:*",
        git_init=False,
    )
    for name in ("core", "site"):
        manifest = repo.path(name) / "package.json"
        data = json.loads(manifest.read_text())
        data["scripts"]["prebuild"] = "mkdir -p dist && touch dist/PRE_RAN"
        manifest.write_text(json.dumps(data))
    (repo.root / "pnpm-workspace.yaml").write_text("packages:\n  - 'apps/*'\n  - 'packages/*'\n")
    root_manifest = json.loads((repo.root / "package.json").read_text())
    root_manifest["packageManager"] = "pnpm@7.33.0"  # pnpm 7 ran no pre/post scripts; 8 and later do
    (repo.root / "package.json").write_text(json.dumps(root_manifest))
    (repo.root / "pnpm-lock.yaml").write_text("lockfileVersion: '9.0'\n")
    monkeypatch.setenv("BUILD_TRACE", str(repo.trace))
    code, doc, err = cli_json(str(repo.root))
    assert code == 0, err
    assert repo.built() == ["core", "site"] and "core:" in repo.out("site")
    assert not (repo.path("core") / "dist" / "PRE_RAN").exists()  # pnpm 7 did not run pre/post scripts
    (repo.root / "stageflow.toml").write_text("[build]\nrunner_options = {pre_post = true}\n")
    assert cli_json(str(repo.root), "--force")[0] == 0
    assert (repo.path("core") / "dist" / "PRE_RAN").exists() and repo.built() == ["core", "site"]
    assert cli_json(str(repo.root))[0] == 0 and repo.built() == []
    # the lockfile is hashed per workspace, by the entries its own external dependencies reach (#14,
    # as turbo does): an edit no workspace resolves through rebuilds nothing
    (repo.root / "pnpm-lock.yaml").write_text("lockfileVersion: '9.0'\n# changed\n")
    assert cli_json(str(repo.root))[0] == 0 and repo.built() == []


def test_runner_registry_and_unknown_runner(small, cli):
    assert get_plugin_manager().registry("build_runners").names() == ["npm", "pnpm", "yarn"]
    (small.root / "stageflow.toml").write_text('[build]\nrunner = "bun"\n')
    code, _, err = cli("build", str(small.root))
    assert code == 2 and "unknown build_runners backend 'bun' (known: npm, pnpm, yarn)" in err


def test_pre_post_default_follows_the_package_manager(tmp_path: Path):
    def runs(manifest: dict, npmrc: str | None = None, manager: str = "pnpm") -> bool:
        (tmp_path / "package.json").write_text(json.dumps(manifest))
        (tmp_path / ".npmrc").unlink(missing_ok=True)
        if npmrc is not None:
            (tmp_path / ".npmrc").write_text(npmrc)
        return scripts.manager_runs_pre_post(manager, tmp_path)

    assert runs({}, manager="npm") and runs({}, manager="yarn")
    assert runs({}) and runs({"packageManager": "pnpm@9.15.9"}) and runs({"packageManager": "pnpm@8.0.0"})
    assert not runs({"packageManager": "pnpm@7.33.0"})
    assert not runs({"packageManager": "pnpm@9.1.0"}, "registry=x\nenable-pre-post-scripts = false\n")
    assert runs({"packageManager": "pnpm@7.33.0"}, "enable-pre-post-scripts=true\n")
