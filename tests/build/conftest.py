"""Fixture monorepos for the selective-build tests: real directories, real git, real node.

Every workspace's ``build`` script is the sample monorepo's dependency-free ``tools/build.js``: it
writes dist/out.txt embedding its dependencies' dist/out.txt (so a stale dependency is visible) and
appends its name to $BUILD_TRACE, which tells the tests which builds really ran.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from stageflow.samples import SAMPLES_DIR

BUILDER = SAMPLES_DIR / "monorepo" / "tools" / "build.js"

if shutil.which("node") is None or shutil.which("git") is None:  # pragma: no cover
    pytest.skip("selective-build tests need node and git on PATH", allow_module_level=True)


def git(root: Path, *args: str) -> str:
    env = dict(
        os.environ,
        GIT_AUTHOR_NAME="t",
        GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t",
        GIT_COMMITTER_EMAIL="t@example.com",
    )
    proc = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, env=env, check=True
    )
    return proc.stdout


@dataclass
class Monorepo:
    root: Path
    trace: Path
    dirs: dict[str, str]  # workspace name -> directory relative to root

    def path(self, name: str) -> Path:
        return self.root / self.dirs[name]

    def out(self, name: str) -> str:
        return (self.path(name) / "dist" / "out.txt").read_text()

    def built(self) -> list[str]:
        """Workspaces whose build really ran since the last call, in the order they finished."""
        if not self.trace.exists():
            return []
        names = self.trace.read_text().split()
        self.trace.unlink()
        return names

    def edit(self, name: str, text: str = "changed\n", file: str = "src/index.txt") -> None:
        (self.path(name) / file).write_text(text)

    def commit(self, message: str = "change") -> None:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", message)


def write_monorepo(
    root: Path,
    workspaces: Mapping[str, tuple[str, Sequence[str]]],
    *,
    globs: Any = None,
    scripts: Mapping[str, Mapping[str, str]] | None = None,
    dep_field: str = "dependencies",
    spec: str = "*",
    git_init: bool = True,
) -> Monorepo:
    """``workspaces``: directory -> (package name, [workspace dependencies])."""
    if globs is None:
        globs = sorted({f"{Path(d).parts[0]}/*" for d in workspaces})
    root.mkdir(parents=True, exist_ok=True)
    (root / "tools").mkdir(exist_ok=True)
    shutil.copy(BUILDER, root / "tools" / "build.js")
    (root / "package.json").write_text(
        json.dumps(
            {
                "name": "fixture-root",
                "private": True,
                "workspaces": list(globs) if isinstance(globs, (list, tuple)) else globs,
            },
            indent=2,
        )
    )
    (root / ".gitignore").write_text("node_modules/\ndist/\n.stageflow/\n")
    for directory, (name, deps) in workspaces.items():
        ws = root / directory
        (ws / "src").mkdir(parents=True, exist_ok=True)
        depth = "/".join([".."] * len(Path(directory).parts))
        pkg: dict[str, Any] = {
            "name": name,
            "version": "1.0.0",
            "scripts": dict((scripts or {}).get(name, {"build": f"node {depth}/tools/build.js {depth}"})),
        }
        if deps:
            pkg[dep_field] = {d: spec for d in deps}
        (ws / "package.json").write_text(json.dumps(pkg, indent=2))
        (ws / "src" / "index.txt").write_text(f"source of {name}\n")
    if git_init:
        git(root, "init", "-q", "-b", "main")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "initial")
    return Monorepo(root, root.parent / f"{root.name}-trace.txt", {n: d for d, (n, _) in workspaces.items()})


def o4o_shape() -> dict[str, tuple[str, list[str]]]:
    """8 apps and 9 packages like the O4O monorepo: shared types/utils under everything."""
    packages = {
        "packages/types": ("@o4o/types", []),
        "packages/utils": ("@o4o/utils", ["@o4o/types"]),
        "packages/auth": ("@o4o/auth", ["@o4o/types", "@o4o/utils"]),
        "packages/api-client": ("@o4o/api-client", ["@o4o/types", "@o4o/utils"]),
        "packages/ui": ("@o4o/ui", ["@o4o/types", "@o4o/utils"]),
        "packages/forms": ("@o4o/forms", ["@o4o/ui"]),
        "packages/shortcodes": ("@o4o/shortcodes", ["@o4o/ui", "@o4o/utils"]),
        "packages/config": ("@o4o/config", []),
        "packages/crowdfunding": ("@o4o/crowdfunding", ["@o4o/types", "@o4o/api-client"]),
    }
    apps = {
        "apps/api-server": ("@o4o/api-server", ["@o4o/types", "@o4o/utils", "@o4o/auth", "@o4o/config"]),
        "apps/main-site": ("@o4o/main-site", ["@o4o/ui", "@o4o/shortcodes", "@o4o/api-client"]),
        "apps/admin-dashboard": ("@o4o/admin-dashboard", ["@o4o/ui", "@o4o/forms", "@o4o/auth"]),
        "apps/ecommerce": ("@o4o/ecommerce", ["@o4o/ui", "@o4o/api-client"]),
        "apps/crowdfunding": ("@o4o/crowdfunding-app", ["@o4o/crowdfunding", "@o4o/ui"]),
        "apps/forum": ("@o4o/forum", ["@o4o/ui", "@o4o/auth"]),
        "apps/signage": ("@o4o/signage", ["@o4o/utils"]),
        "apps/docs": ("@o4o/docs", []),
    }
    return {**packages, **apps}


@pytest.fixture
def o4o(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Monorepo:
    repo = write_monorepo(tmp_path / "o4o", o4o_shape())
    monkeypatch.setenv("BUILD_TRACE", str(repo.trace))
    return repo


@pytest.fixture
def small(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Monorepo:
    """A diamond plus an independent app: types <- utils <- web, types <- ui <- web; docs alone."""
    repo = write_monorepo(
        tmp_path / "small",
        {
            "packages/types": ("@s/types", []),
            "packages/utils": ("@s/utils", ["@s/types"]),
            "packages/ui": ("@s/ui", ["@s/types"]),
            "apps/web": ("@s/web", ["@s/utils", "@s/ui"]),
            "apps/docs": ("@s/docs", []),
        },
    )
    monkeypatch.setenv("BUILD_TRACE", str(repo.trace))
    return repo


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]):
    """Run ``stageflow ARGS`` in-process: (exit code, stdout, stderr)."""
    from stageflow.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            main([*args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def cli_json(cli):
    def run(*args: str) -> tuple[int, dict[str, Any], str]:
        code, out, err = cli("build", *args, "--json")
        return code, (json.loads(out) if out.strip() else {}), err

    return run
