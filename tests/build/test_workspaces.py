"""Discovery: workspace globs in every form, the DAG from every dependency field and version spec,
and each malformed repository as a one-line exit-2 error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from stageflow.build.workspaces import discover
from stageflow.errors import BadInput

from .conftest import write_monorepo

WS = {
    "packages/types": ("@x/types", []),
    "packages/utils": ("@x/utils", ["@x/types"]),
    "apps/web": ("@x/web", ["@x/utils"]),
}


@pytest.mark.parametrize(
    "field", ["dependencies", "devDependencies", "peerDependencies", "optionalDependencies"]
)
@pytest.mark.parametrize("spec", ["*", "^1.0.0", "workspace:*", "workspace:^"])
def test_dag_from_every_dependency_field_and_spec(tmp_path: Path, field: str, spec: str):
    write_monorepo(tmp_path, WS, dep_field=field, spec=spec, git_init=False)
    if field == "peerDependencies" and not spec.startswith("workspace:"):
        # npm does not link peer-only ranges (test_peer_only_...); pnpm installs them
        (tmp_path / "pnpm-workspace.yaml").write_text("packages:\n  - 'apps/*'\n  - 'packages/*'\n")
    graph = discover(tmp_path)
    assert graph.dependencies("@x/web") == {"@x/utils"}
    assert graph.dependencies("@x/utils") == {"@x/types"}
    assert graph.levels(graph.names) == [["@x/types"], ["@x/utils"], ["@x/web"]]


def test_packages_object_form_and_external_deps(tmp_path: Path):
    write_monorepo(
        tmp_path, WS, globs={"packages": ["apps/*", "packages/*"], "nohoist": ["**/x"]}, git_init=False
    )
    manifest = tmp_path / "apps/web/package.json"
    data = json.loads(manifest.read_text())
    data["dependencies"]["left-pad"] = "^1.3.0"
    manifest.write_text(json.dumps(data))
    graph = discover(tmp_path)
    assert sorted(graph.names) == ["@x/types", "@x/utils", "@x/web"]
    assert graph.workspaces["@x/web"].external == {"left-pad": "^1.3.0"}
    assert graph.manager == "npm"


def test_pnpm_workspace_yaml_with_negation(tmp_path: Path):
    write_monorepo(tmp_path, {**WS, "packages/legacy": ("@x/legacy", [])}, spec="workspace:*", git_init=False)
    (tmp_path / "pnpm-workspace.yaml").write_text(
        "packages:\n  - 'apps/*'\n  - 'packages/*'\n  - '!packages/legacy'\n"
    )
    graph = discover(tmp_path)
    assert graph.globs_source == "pnpm-workspace.yaml"
    assert graph.manager == "pnpm"
    assert "@x/legacy" not in graph.names and graph.dependencies("@x/web") == {"@x/utils"}


def test_nested_glob_and_owner_lookup(tmp_path: Path):
    write_monorepo(
        tmp_path,
        {"libs/a/core": ("core", []), "libs/b/extra": ("extra", ["core"])},
        globs=["libs/**"],
        git_init=False,
    )
    graph = discover(tmp_path)
    assert graph.owner_of("libs/b/extra/src/index.txt") == "extra"
    assert graph.owner_of("libs/README.md") is None
    assert graph.closure({"core"}, dependents=True) == {"core", "extra"}


def _expect_exit2(cli, repo: Path, *fragments: str) -> str:
    code, out, err = cli("build", str(repo))
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    for fragment in fragments:
        assert fragment in err
    return err


def test_not_a_workspaces_repo(tmp_path: Path, cli):
    _expect_exit2(cli, tmp_path, "not a workspaces repository", "pass the monorepo root")
    (tmp_path / "package.json").write_text('{"name": "plain"}')
    _expect_exit2(cli, tmp_path, 'no "workspaces" field')


def test_glob_matching_nothing_warns(tmp_path: Path, cli):
    write_monorepo(tmp_path, WS, globs=["apps/*", "packages/*", "libs/*"], git_init=False)
    code, out, err = cli("build", str(tmp_path), "--dry-run", "--json")
    assert code == 0, err
    assert "warning: " in err and "'libs/*' matches no directory" in err
    assert "'libs/*' matches no directory" in json.loads(out)["warnings"][0]


def test_duplicate_package_names(tmp_path: Path, cli):
    write_monorepo(tmp_path, {**WS, "apps/web2": ("@x/web", [])}, git_init=False)
    _expect_exit2(
        cli, tmp_path, "duplicate package name '@x/web'", "apps/web/package.json", "apps/web2/package.json"
    )


def test_cycle_names_the_cycle(tmp_path: Path, cli):
    write_monorepo(
        tmp_path,
        {"packages/a": ("a", ["c"]), "packages/b": ("b", ["a"]), "packages/c": ("c", ["b"])},
        globs=["packages/*"],
        git_init=False,
    )
    err = _expect_exit2(cli, tmp_path, "dependency cycle")
    cycle = err.split("dependency cycle between workspaces: ")[1].split(":")[0].split(" -> ")
    assert cycle[0] == cycle[-1] and sorted(set(cycle)) == ["a", "b", "c"]
    deps = {"a": "c", "b": "a", "c": "b"}  # each arrow reads "depends on"
    assert all(deps[x] == y for x, y in zip(cycle, cycle[1:], strict=False))
    with pytest.raises(BadInput):
        discover(tmp_path)


def test_invalid_manifest_and_missing_name(tmp_path: Path, cli):
    write_monorepo(tmp_path, WS, git_init=False)
    (tmp_path / "apps/web/package.json").write_text("{not json")
    _expect_exit2(cli, tmp_path, "apps/web/package.json", "not valid JSON")
    (tmp_path / "apps/web/package.json").write_text('{"version": "1.0.0"}')
    graph = discover(tmp_path)  # a nameless package is skipped with a warning, as npm/pnpm/yarn do
    assert sorted(graph.names) == ["@x/types", "@x/utils"]
    assert any('apps/web/package.json: no "name"' in w for w in graph.warnings)


def _manifest(path: Path, **fields) -> None:
    data = json.loads(path.read_text())
    data.update(fields)
    path.write_text(json.dumps(data))


@pytest.mark.parametrize("spec", ["workspace:../types", "file:../types", "link:../types"])
def test_path_specs_are_edges(tmp_path: Path, spec: str):
    write_monorepo(tmp_path, WS, git_init=False)
    _manifest(tmp_path / "packages/utils/package.json", dependencies={"types-alias": spec})
    graph = discover(tmp_path)
    assert graph.dependencies("@x/utils") == {"@x/types"}
    assert "types-alias" not in graph.workspaces["@x/utils"].external


@pytest.mark.parametrize(
    ("manager", "npmrc", "edge"),
    [
        ("npm", "", False),
        ("yarn", "", False),
        ("pnpm", "", True),
        ("pnpm", "auto-install-peers=false\n", False),
    ],
)
def test_peer_only_dependencies_follow_the_package_manager(
    tmp_path: Path, manager: str, npmrc: str, edge: bool
):
    write_monorepo(tmp_path, WS, git_init=False)
    _manifest(tmp_path / "package.json", packageManager=f"{manager}@9.0.0")
    (tmp_path / ".npmrc").write_text(npmrc)
    _manifest(tmp_path / "apps/web/package.json", peerDependencies={"@x/types": "^1.0.0"})
    _manifest(tmp_path / "packages/utils/package.json", peerDependencies={"@x/web": "workspace:*"})
    web = tmp_path / "apps/web/package.json"
    _manifest(web, dependencies={})
    graph = discover(tmp_path)
    assert graph.dependencies("@x/web") == ({"@x/types"} if edge else set())
    # a workspace: protocol peer is linked by every manager that knows the protocol
    assert "@x/web" in graph.dependencies("@x/utils")


def test_cycle_is_broken_by_ignore_edges(tmp_path: Path, cli):
    write_monorepo(
        tmp_path,
        {"packages/a": ("a", ["b"]), "packages/b": ("b", ["a"]), "packages/c": ("c", ["a"])},
        globs=["packages/*"],
        git_init=False,
    )
    err = _expect_exit2(cli, tmp_path, "dependency cycle", "[build] ignore_edges = [")
    suggested = err.split("ignore_edges = [")[1].split("]")[0]
    (tmp_path / "stageflow.toml").write_text(f"[build]\nignore_edges = [{suggested}]\n")
    code, out, err = cli("build", str(tmp_path), "--dry-run", "--json")
    assert code == 0, err
    assert json.loads(out)["order"] in ([["b"], ["a"], ["c"]], [["a"], ["b", "c"]])
    (tmp_path / "stageflow.toml").write_text('[build.workspaces.b]\nignore_dependencies = ["a"]\n')
    code, out, err = cli("build", str(tmp_path), "--dry-run", "--json")
    assert code == 0 and json.loads(out)["order"] == [["b"], ["a"], ["c"]], err  # a -> b remains
    (tmp_path / "stageflow.toml").write_text('[build]\nignore_edges = ["a -> nope"]\n')
    _expect_exit2(cli, tmp_path, "ignore_edges 'a -> nope': no workspace 'nope'")
    (tmp_path / "stageflow.toml").write_text('[build]\nignore_edges = ["a b"]\n')
    _expect_exit2(cli, tmp_path, "ignore_edges 'a b': write an edge as")


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, npm_config_audit="false", npm_config_fund="false", CI="1")
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.skipif(shutil.which("pnpm") is None, reason="pnpm not installed")
def test_pnpm_projects_negations_and_workspace_path_match_real_pnpm(tmp_path: Path):
    """Real pnpm: the project set (``!./`` negation, a glob matching nothing) and the link a
    ``workspace:../path`` spec makes equal stageflow's workspaces and edge."""
    write_monorepo(tmp_path, {**WS, "packages/legacy": ("@x/legacy", [])}, git_init=False)
    _manifest(tmp_path / "packages/utils/package.json", dependencies={"@x/types": "workspace:../types"})
    _manifest(tmp_path / "apps/web/package.json", dependencies={"@x/utils": "workspace:*"})
    (tmp_path / "pnpm-workspace.yaml").write_text(
        "packages:\n  - 'apps/*'\n  - 'packages/*'\n  - 'libs/*'\n  - '!./packages/legacy'\n"
    )
    proc = _run(["pnpm", "install", "--offline"], tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = _run(["pnpm", "ls", "-r", "--depth", "-1", "--json"], tmp_path)
    projects = {p["name"] for p in json.loads(listed.stdout) if p["path"] != str(tmp_path)}
    graph = discover(tmp_path)
    assert set(graph.names) == projects == {"@x/types", "@x/utils", "@x/web"}
    link = tmp_path / "packages/utils/node_modules/@x/types"
    assert link.resolve() == (tmp_path / "packages/types").resolve()
    assert graph.dependencies("@x/utils") == {"@x/types"}
    assert any("'libs/*' matches no directory" in w for w in graph.warnings)


@pytest.mark.parametrize(("tool", "spec"), [("npm", "file:../types"), ("yarn", "link:../types")])
def test_npm_and_yarn_path_specs_and_unmatched_globs_match_real_binaries(
    tmp_path: Path, tool: str, spec: str
):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed")
    write_monorepo(tmp_path, WS, globs=["apps/*", "packages/*", "libs/*"], git_init=False)
    _manifest(tmp_path / "packages/utils/package.json", dependencies={"@x/types": spec})
    cmd = (
        ["npm", "install", "--offline"]
        if tool == "npm"
        else ["yarn", "install", "--offline", "--non-interactive"]
    )
    proc = _run(cmd, tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr  # the package manager tolerates libs/*
    linked = (tmp_path / "node_modules/@x/types").resolve()
    assert linked == (tmp_path / "packages/types").resolve()
    graph = discover(tmp_path)
    assert graph.dependencies("@x/utils") == {"@x/types"}
    assert any("'libs/*' matches no directory" in w for w in graph.warnings)
