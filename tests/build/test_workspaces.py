"""Discovery: workspace globs in every form, the DAG from every dependency field and version spec,
and each malformed repository as a one-line exit-2 error."""

from __future__ import annotations

import json
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


def test_glob_matching_nothing(tmp_path: Path, cli):
    write_monorepo(tmp_path, WS, globs=["apps/*", "packages/*", "libs/*"], git_init=False)
    _expect_exit2(cli, tmp_path, "'libs/*' matches no directory", "fix the glob or remove it")


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
    _expect_exit2(cli, tmp_path, 'no "name"')
