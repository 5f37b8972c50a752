"""Selection on a discovered O4O-shaped repo: changed files -> owners -> dependents, root inputs,
Turborepo filters and roles (dependencies pulled in), and git change detection."""

from __future__ import annotations

import pytest

from stageflow.build import changes
from stageflow.build.config import RoleConfig
from stageflow.build.selection import apply_filter, select
from stageflow.build.workspaces import discover
from stageflow.errors import BadInput

from .conftest import Monorepo, git


def test_changed_shared_package_selects_it_and_all_dependents(o4o: Monorepo):
    graph = discover(o4o.root)
    sel = select(graph, ["packages/ui/src/index.txt"])
    assert set(sel.affected) == {
        "@o4o/ui",
        "@o4o/forms",
        "@o4o/shortcodes",
        "@o4o/main-site",
        "@o4o/admin-dashboard",
        "@o4o/ecommerce",
        "@o4o/crowdfunding-app",
        "@o4o/forum",
    }
    # dependencies of the affected are in the run (their outputs must be present), not in "affected"
    assert "@o4o/types" in sel.run and "@o4o/types" not in sel.affected
    assert "@o4o/docs" not in sel.run and "@o4o/api-server" not in sel.run


def test_app_change_selects_only_the_app(o4o: Monorepo):
    sel = select(discover(o4o.root), ["apps/signage/src/index.txt"])
    assert sel.affected == ["@o4o/signage"]
    assert set(sel.run) == {"@o4o/signage", "@o4o/utils", "@o4o/types"}


@pytest.mark.parametrize(
    "path", ["package.json", "package-lock.json", "pnpm-lock.yaml", "yarn.lock", "tsconfig.base.json"]
)
def test_root_inputs_affect_everything(o4o: Monorepo, path: str):
    graph = discover(o4o.root)
    sel = select(graph, [path], global_inputs=["tsconfig.base.json"])
    assert set(sel.affected) == set(graph.names) and sel.global_change == [path]


def test_unrelated_root_file_affects_nothing(o4o: Monorepo):
    sel = select(discover(o4o.root), ["README.md", "tools/notes.txt"])
    assert sel.affected == [] and sel.run == []


def test_filters_like_turborepo(o4o: Monorepo):
    graph = discover(o4o.root)
    assert apply_filter(graph, "@o4o/forms") == {"@o4o/forms"}
    # NAME...: with its dependencies; ...NAME: with its dependents (turbo's direction)
    assert apply_filter(graph, "@o4o/forms...") == {"@o4o/forms", "@o4o/ui", "@o4o/utils", "@o4o/types"}
    assert apply_filter(graph, "...@o4o/forms") == {"@o4o/forms", "@o4o/admin-dashboard"}
    assert apply_filter(graph, "@o4o/forms^...") == {"@o4o/ui", "@o4o/utils", "@o4o/types"}
    assert apply_filter(graph, "...^@o4o/forms") == {"@o4o/admin-dashboard"}
    assert apply_filter(graph, "./apps/docs") == {"@o4o/docs"}
    assert apply_filter(graph, "{./apps/api-*}") == {"@o4o/api-server"}
    assert apply_filter(graph, "@o4o/api-*") == {"@o4o/api-server", "@o4o/api-client"}
    assert apply_filter(graph, ["{./packages/*}", "!@o4o/u*"]) == apply_filter(graph, "{./packages/*}") - {
        "@o4o/ui",
        "@o4o/utils",
    }
    assert apply_filter(graph, "!...@o4o/ui") == set(graph.names) - apply_filter(graph, "...@o4o/ui")
    assert apply_filter(graph, "@o4o/zz*") == set()  # a glob may match nothing, as in turbo
    with pytest.raises(BadInput, match="--filter '@o4o/nope'"):
        apply_filter(graph, "@o4o/nope")
    with pytest.raises(BadInput, match=r"write '\{./apps/\*\}'"):
        apply_filter(graph, "apps/*")
    with pytest.raises(BadInput, match="'{./nope/\\*}': directory 'nope' does not exist"):
        apply_filter(graph, "{./nope/*}")
    with pytest.raises(BadInput, match="empty directory"):
        apply_filter(graph, "{}")
    sel = select(graph, None, filters=["@o4o/forum"])
    assert sel.affected == ["@o4o/forum"] and set(sel.run) == {
        "@o4o/forum",
        "@o4o/ui",
        "@o4o/auth",
        "@o4o/utils",
        "@o4o/types",
    }


def test_git_range_filters(o4o: Monorepo, cli_json):
    base = git(o4o.root, "rev-parse", "HEAD").strip()
    o4o.edit("@o4o/ui")
    o4o.commit()
    code, doc, err = cli_json(str(o4o.root), "--filter", f"[{base}]", "--dry-run")
    assert code == 0, err
    assert doc["affected"] == ["@o4o/ui"]
    code, doc, _ = cli_json(str(o4o.root), "--filter", f"...[{base}]", "--dry-run")
    assert set(doc["affected"]) == apply_filter(discover(o4o.root), "...@o4o/ui")
    # NAME...[ref]: the app whose dependency changed; [a...b]: committed range only
    code, doc, _ = cli_json(str(o4o.root), "--filter", f"{{./apps/*}}...[{base}]", "--dry-run")
    assert set(doc["affected"]) == {
        "@o4o/main-site",
        "@o4o/admin-dashboard",
        "@o4o/ecommerce",
        "@o4o/crowdfunding-app",
        "@o4o/forum",
    }
    o4o.edit("@o4o/docs")  # uncommitted: in [ref], not in [a...b]
    code, doc, _ = cli_json(str(o4o.root), "--filter", f"[{base}]", "--dry-run")
    assert doc["affected"] == ["@o4o/ui", "@o4o/docs"] or set(doc["affected"]) == {"@o4o/ui", "@o4o/docs"}
    code, doc, _ = cli_json(str(o4o.root), "--filter", f"[{base}...HEAD]", "--dry-run")
    assert doc["affected"] == ["@o4o/ui"]
    code, _, err = cli_json(str(o4o.root), "--filter", "[no-such-ref]", "--dry-run")
    assert code == 2 and "--filter [no-such-ref] 'no-such-ref': unknown git ref" in err


def test_filter_intersects_changes(o4o: Monorepo):
    sel = select(discover(o4o.root), ["packages/utils/src/index.txt"], filters=["{./apps/*}"])
    assert "@o4o/utils" not in sel.affected and "@o4o/signage" in sel.affected
    assert "@o4o/docs" not in sel.affected


def test_role_pulls_in_dependencies(o4o: Monorepo):
    graph = discover(o4o.root)
    roles = {"apiserver": RoleConfig(workspaces=["@o4o/api-server"])}
    sel = select(graph, None, role="apiserver", roles=roles)
    assert set(sel.affected) == {"@o4o/api-server", "@o4o/types", "@o4o/utils", "@o4o/auth", "@o4o/config"}
    changed = select(graph, ["packages/ui/src/index.txt"], role="apiserver", roles=roles)
    assert changed.affected == []
    with pytest.raises(BadInput, match=r"--role 'web'.*\[build.roles.web\]"):
        select(graph, None, role="web", roles=roles)


def test_git_changes_committed_uncommitted_and_untracked(o4o: Monorepo):
    base = git(o4o.root, "rev-parse", "HEAD").strip()
    o4o.edit("@o4o/utils")
    o4o.commit()
    o4o.edit("@o4o/docs")  # uncommitted
    (o4o.path("@o4o/signage") / "src" / "new.txt").write_text("untracked\n")
    (o4o.path("@o4o/forum") / "dist").mkdir()
    (o4o.path("@o4o/forum") / "dist" / "ignored.txt").write_text("ignored\n")
    all_changes = changes.changed_files(o4o.root, base)
    assert all_changes == [
        "apps/docs/src/index.txt",
        "apps/signage/src/new.txt",
        "packages/utils/src/index.txt",
    ]
    assert changes.changed_files(o4o.root, base, committed_only=True) == ["packages/utils/src/index.txt"]
    assert changes.changed_files(o4o.root, "HEAD", committed_only=True) == []
    with pytest.raises(BadInput, match="--base 'no-such-branch': unknown git ref"):
        changes.changed_files(o4o.root, "no-such-branch")
