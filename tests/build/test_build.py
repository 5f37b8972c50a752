"""End-to-end selective builds through the CLI (in-process) on real git repos with real node builds.
Assertions are on side effects: which builds really ran ($BUILD_TRACE) and what dist/ holds."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Monorepo, git, o4o_shape, write_monorepo


def _assert_fresh(repo: Monorepo, name: str) -> None:
    """dist/out.txt of ``name`` embeds the current outputs of each of its dependencies."""
    pkg = json.loads((repo.path(name) / "package.json").read_text())
    for dep in pkg.get("dependencies", {}):
        assert repo.out(dep).split("\n")[0] in repo.out(name), f"{name} embeds a stale {dep}"


def test_full_build_then_no_change_then_shared_change(o4o: Monorepo, cli_json):
    code, doc, err = cli_json(str(o4o.root))
    assert code == 0, err
    ran = o4o.built()
    assert sorted(ran) == sorted(doc["workspaces"]) and len(ran) == 17
    graph_deps = {n: set(d) for n, (_, d) in ((v[0], v) for v in o4o_shape().values())}
    for i, name in enumerate(ran):  # every dependency finished before its dependent
        assert graph_deps[name] <= set(ran[:i])
    for name in doc["workspaces"]:
        _assert_fresh(o4o, name)
    assert doc["order"][0] == ["@o4o/config", "@o4o/docs", "@o4o/types"]
    assert set(doc) >= {
        "workspaces",
        "changed",
        "affected",
        "order",
        "built",
        "cached",
        "skipped",
        "failed",
        "duration_s",
        "tasks",
    }
    assert all(set(t) >= {"name", "hash", "status", "duration_s"} for t in doc["tasks"])

    code, doc, _ = cli_json(str(o4o.root))
    assert code == 0 and o4o.built() == [] and len(doc["cached"]) == 17 and doc["built"] == []

    before = o4o.out("@o4o/main-site")
    o4o.edit("@o4o/ui", "new ui\n")
    code, doc, _ = cli_json(str(o4o.root))
    expected = {
        "@o4o/ui",
        "@o4o/forms",
        "@o4o/shortcodes",
        "@o4o/main-site",
        "@o4o/admin-dashboard",
        "@o4o/ecommerce",
        "@o4o/crowdfunding-app",
        "@o4o/forum",
    }
    assert code == 0 and set(o4o.built()) == expected == set(doc["built"])
    assert o4o.out("@o4o/main-site") != before
    for name in expected:
        _assert_fresh(o4o, name)


def test_base_ref_builds_only_affected_and_their_missing_dependencies(o4o: Monorepo, cli_json):
    o4o.edit("@o4o/signage")
    o4o.commit()
    code, doc, _ = cli_json(str(o4o.root), "--base", "HEAD~1")
    assert code == 0
    assert doc["changed"] == ["apps/signage/src/index.txt"] and doc["affected"] == ["@o4o/signage"]
    # fresh clone: the app's dependencies have no outputs yet, so they are built first
    assert o4o.built() == ["@o4o/types", "@o4o/utils", "@o4o/signage"]
    _assert_fresh(o4o, "@o4o/signage")
    code, doc, _ = cli_json(str(o4o.root), "--base", "HEAD~1", "--committed-only")
    assert code == 0 and o4o.built() == [] and doc["cached"] == ["@o4o/types", "@o4o/utils", "@o4o/signage"]


def test_cache_restores_outputs_and_replays_log(small: Monorepo, cli, cli_json):
    assert cli_json(str(small.root))[0] == 0
    small.built()
    import shutil

    for name in small.dirs:
        shutil.rmtree(small.path(name) / "dist")
    code, out, err = cli("build", str(small.root))
    assert code == 0 and small.built() == []
    assert "@s/web: built @s/web" in err  # the recorded log, replayed
    assert "cached (hit)" in err
    for name in small.dirs:
        _assert_fresh(small, name)
    # a revert to previously built content is a hit too
    small.edit("@s/types", "v2\n")
    assert cli_json(str(small.root))[0] == 0 and sorted(small.built()) == [
        "@s/types",
        "@s/ui",
        "@s/utils",
        "@s/web",
    ]
    small.edit("@s/types", "source of @s/types\n")
    code, doc, _ = cli_json(str(small.root))
    assert code == 0 and small.built() == [] and "@s/web" in doc["cached"]
    assert small.out("@s/web").count("@s/types:") == 2


def test_dry_run_runs_nothing(small: Monorepo, cli_json, cli):
    code, doc, _ = cli_json(str(small.root), "--dry-run")
    assert code == 0 and doc["dry_run"] and small.built() == []
    assert not (small.path("@s/types") / "dist").exists()
    assert {t["cache"] for t in doc["tasks"]} == {"miss"} and all(len(t["hash"]) == 64 for t in doc["tasks"])
    assert doc["order"] == [["@s/docs", "@s/types"], ["@s/ui", "@s/utils"], ["@s/web"]]
    cli_json(str(small.root))
    small.built()
    small.edit("@s/ui")
    code, doc, _ = cli_json(str(small.root), "--dry-run")
    status = {t["name"]: t["cache"] for t in doc["tasks"]}
    assert status == {
        "@s/docs": "up-to-date",
        "@s/types": "up-to-date",
        "@s/utils": "up-to-date",
        "@s/ui": "miss",
        "@s/web": "miss",
    }
    code, out, _ = cli("build", str(small.root), "--dry-run")
    assert code == 0 and "level 3: @s/web" in out and small.built() == []


def test_failing_build_blocks_dependents_and_stores_nothing(tmp_path: Path, monkeypatch, cli_json):
    repo = write_monorepo(
        tmp_path / "r",
        {
            "packages/types": ("@f/types", []),
            "packages/bad": ("@f/bad", ["@f/types"]),
            "apps/web": ("@f/web", ["@f/bad"]),
            "apps/other": ("@f/other", ["@f/types"]),
        },
        scripts={
            "@f/bad": {
                "build": "node -e \"console.log('compiling'); console.error('TS2322: boom'); "
                'process.exit(2)"'
            }
        },
    )
    monkeypatch.setenv("BUILD_TRACE", str(repo.trace))
    code, doc, err = cli_json(str(repo.root))
    assert code == 1
    assert doc["failed"] == ["@f/bad"] and doc["blocked"] == ["@f/web"]
    assert sorted(repo.built()) == ["@f/other", "@f/types"]
    assert not (repo.path("@f/web") / "dist").exists()
    assert "TS2322: boom" in err and "build failed: @f/bad (exit code 2): TS2322: boom" in err
    assert "Traceback" not in err
    bad_hash = next(t["hash"] for t in doc["tasks"] if t["name"] == "@f/bad")
    assert not (repo.root / ".stageflow" / "cache" / f"{bad_hash}.tar").exists()
    assert len(list((repo.root / ".stageflow" / "cache").glob("*.tar"))) == 2


def test_fail_fast_stops_everything(tmp_path: Path, monkeypatch, cli_json):
    repo = write_monorepo(
        tmp_path / "r",
        {
            "packages/bad": ("@f/bad", []),
            "packages/slow": ("@f/slow", []),
            "apps/after": ("@f/after", ["@f/slow"]),
        },
        scripts={
            "@f/bad": {"build": "exit 3"},
            "@f/slow": {"build": 'node -e "setTimeout(() => {}, 20000)"'},
        },
    )
    monkeypatch.setenv("BUILD_TRACE", str(repo.trace))
    code, doc, _ = cli_json(str(repo.root), "--fail-fast", "--concurrency", "2")
    assert code == 1 and "@f/bad" in doc["failed"]
    assert "@f/after" in doc["blocked"] and repo.built() == []
    slow = next(t for t in doc["tasks"] if t["name"] == "@f/slow")
    assert (slow["status"], slow["reason"]) == ("failed", "stopped by --fail-fast")  # terminated, not awaited


def test_missing_script_is_skipped_and_reported(tmp_path: Path, monkeypatch, cli_json, cli):
    repo = write_monorepo(
        tmp_path / "r",
        {"packages/config": ("@m/config", []), "apps/web": ("@m/web", ["@m/config"])},
        scripts={"@m/config": {"lint": "true"}},
    )
    monkeypatch.setenv("BUILD_TRACE", str(repo.trace))
    code, doc, _ = cli_json(str(repo.root))
    assert code == 0 and doc["skipped"] == ["@m/config"] and doc["built"] == ["@m/web"]
    assert next(t for t in doc["tasks"] if t["name"] == "@m/config")["reason"] == "no 'build' script"
    code, _, err = cli("build", str(repo.root), "--task", "lint")
    assert code == 0 and "skipped (no 'lint' script)" in err


def test_unknown_base_ref(small: Monorepo, cli):
    code, out, err = cli("build", str(small.root), "--base", "origin/nope")
    assert code == 2 and out == ""
    assert err.strip() == (
        f"stageflow: error: --base 'origin/nope': unknown git ref in {small.root}: pass a "
        "branch, tag or commit (run `git fetch` first if it only exists on the remote)"
    )


def test_unwritable_cache_dir_builds_without_caching(small: Monorepo, cli_json):
    blocker = small.root.parent / "not-a-dir"
    blocker.write_text("a file where the cache directory should be")
    (small.root / "stageflow.toml").write_text(f'[build]\ncache_options = {{dir = "{blocker}/cache"}}\n')
    small.commit()
    code, doc, err = cli_json(str(small.root))
    assert code == 0 and len(small.built()) == 5
    assert any("cache store failed, not cached" in w for w in doc["warnings"])
    assert "warning:" in err


def test_corrupt_cache_entry_is_a_reported_miss(small: Monorepo, cli_json):
    assert cli_json(str(small.root))[0] == 0
    small.built()
    cache = small.root / ".stageflow" / "cache"
    code, doc, _ = cli_json(str(small.root), "--dry-run")
    web_hash = next(t["hash"] for t in doc["tasks"] if t["name"] == "@s/web")
    (cache / f"{web_hash}.tar").write_bytes(b"\x00garbage, not a tar")
    import shutil

    shutil.rmtree(small.path("@s/web") / "dist")
    code, doc, err = cli_json(str(small.root))
    assert code == 0 and small.built() == ["@s/web"] and doc["built"] == ["@s/web"]
    assert any("corrupt cache entry treated as a miss" in w for w in doc["warnings"])
    assert (cache / f"{web_hash}.tar").stat().st_size > 100  # replaced by a good entry
    _assert_fresh(small, "@s/web")


def test_missing_outputs_are_warned_and_not_cached(tmp_path: Path, monkeypatch, cli_json):
    repo = write_monorepo(
        tmp_path / "r",
        {"packages/lib": ("@o/lib", [])},
        scripts={"@o/lib": {"build": "node -e \"require('fs').writeFileSync('out.js', '1')\""}},
    )
    code, doc, err = cli_json(str(repo.root))
    assert code == 0 and doc["built"] == ["@o/lib"]
    assert "declared outputs missing after a successful build: dist/" in err
    assert not list((repo.root / ".stageflow" / "cache").glob("*.tar"))


def test_env_memory_cap_path_and_pre_post_scripts(tmp_path: Path, monkeypatch, cli_json):
    (tmp_path / "r" / "packages/lib/node_modules/.bin").mkdir(parents=True)
    tool = tmp_path / "r" / "packages/lib/node_modules/.bin/mytool"
    tool.write_text("#!/bin/sh\necho tool-ran >> dist/steps.txt\n")
    tool.chmod(0o755)
    record = (
        "node -e \"const fs=require('fs');fs.mkdirSync('dist',{recursive:true});fs.appendFileSync("
        "'dist/steps.txt', process.env.npm_lifecycle_event+' '+process.env.NODE_OPTIONS+' '+"
        "process.env.npm_package_name+' '+process.env.STAGE+'\\n')\""
    )
    repo = write_monorepo(
        tmp_path / "r",
        {"packages/lib": ("@e/lib", [])},
        scripts={"@e/lib": {"prebuild": record, "build": f"{record} && mytool", "postbuild": record}},
    )
    (repo.root / "stageflow.toml").write_text('[build]\nenv = ["STAGE"]\nmemory_mb = 512\n')
    repo.commit()
    monkeypatch.delenv("NODE_OPTIONS", raising=False)
    monkeypatch.setenv("STAGE", "one")
    code, doc, _ = cli_json(str(repo.root))
    steps = (repo.path("@e/lib") / "dist/steps.txt").read_text().splitlines()
    assert code == 0 and steps == [
        "prebuild --max-old-space-size=512 @e/lib one",
        "build --max-old-space-size=512 @e/lib one",
        "tool-ran",
        "postbuild --max-old-space-size=512 @e/lib one",
    ]
    first_hash = doc["tasks"][0]["hash"]
    monkeypatch.setenv("STAGE", "two")
    monkeypatch.setenv("NODE_OPTIONS", "--max-old-space-size=300")
    code, doc, _ = cli_json(str(repo.root))
    assert doc["built"] == ["@e/lib"] and doc["tasks"][0]["hash"] != first_hash  # declared env var is hashed
    steps = (repo.path("@e/lib") / "dist/steps.txt").read_text().splitlines()
    assert steps[4] == "prebuild --max-old-space-size=300 @e/lib two"  # the user's NODE_OPTIONS wins


def test_script_reading_npm_config_runs_through_npm(tmp_path: Path, cli_json):
    script = (
        "node -e \"require('fs').mkdirSync('dist');require('fs').writeFileSync('dist/ua.txt', "
        "process.env.npm_config_user_agent || 'none')\" # $npm_config_user_agent"
    )
    repo = write_monorepo(
        tmp_path / "r", {"packages/lib": ("@n/lib", [])}, scripts={"@n/lib": {"build": script}}
    )
    code, doc, err = cli_json(str(repo.root))
    assert code == 0, err
    assert (repo.path("@n/lib") / "dist/ua.txt").read_text().startswith("npm/")


def test_lockfile_entry_change_rebuilds_only_its_users(small: Monorepo, cli_json):
    manifest = small.path("@s/utils") / "package.json"
    data = json.loads(manifest.read_text())
    data["dependencies"]["left-pad"] = "^1.3.0"
    manifest.write_text(json.dumps(data))
    lock = {
        "name": "fixture-root",
        "lockfileVersion": 3,
        "packages": {
            "": {"name": "fixture-root"},
            "node_modules/left-pad": {"version": "1.3.0", "integrity": "sha512-aaa"},
            "node_modules/other": {"version": "2.0.0", "integrity": "sha512-bbb"},
        },
    }
    (small.root / "package-lock.json").write_text(json.dumps(lock))
    small.commit()
    assert cli_json(str(small.root))[0] == 0
    small.built()
    lock["packages"]["node_modules/other"]["version"] = "2.0.1"
    (small.root / "package-lock.json").write_text(json.dumps(lock))
    code, doc, _ = cli_json(str(small.root), "--base", "HEAD")
    assert code == 0 and small.built() == [] and len(doc["affected"]) == 5  # affected, but every hash hits
    lock["packages"]["node_modules/left-pad"]["integrity"] = "sha512-ccc"
    (small.root / "package-lock.json").write_text(json.dumps(lock))
    assert cli_json(str(small.root))[0] == 0
    assert sorted(small.built()) == ["@s/utils", "@s/web"]


def test_global_inputs_and_filters_on_the_cli(small: Monorepo, cli_json):
    (small.root / "tsconfig.base.json").write_text("{}")
    (small.root / "stageflow.toml").write_text('[build]\nglobal_inputs = ["tsconfig.base.json"]\n')
    small.commit()
    assert cli_json(str(small.root))[0] == 0
    small.built()
    (small.root / "tsconfig.base.json").write_text('{"strict": true}')
    code, doc, _ = cli_json(str(small.root), "--base", "HEAD", "--filter", "@s/utils...")
    assert code == 0 and doc["root_changes"] == ["tsconfig.base.json"]
    assert sorted(small.built()) == ["@s/types", "@s/utils"] and doc["affected"] == ["@s/types", "@s/utils"]


def test_non_git_repo_builds_and_caches(tmp_path: Path, monkeypatch, cli_json, cli):
    repo = write_monorepo(
        tmp_path / "plain", {"packages/a": ("a", []), "apps/b": ("b", ["a"])}, git_init=False
    )
    monkeypatch.setenv("BUILD_TRACE", str(repo.trace))
    assert cli_json(str(repo.root))[0] == 0 and repo.built() == ["a", "b"]
    assert cli_json(str(repo.root))[0] == 0 and repo.built() == []
    code, _, err = cli("build", str(repo.root), "--base", "main")
    assert code == 2 and "is not a git repository" in err


def test_bad_config_key_is_exit_2(small: Monorepo, cli):
    (small.root / "stageflow.toml").write_text("[build]\nconcurrenc = 2\n")
    code, _, err = cli("build", str(small.root))
    assert code == 2 and "stageflow.toml:2: unknown key 'build.concurrenc'" in err


def test_head_is_compared_with_base(o4o: Monorepo, cli_json):
    git(o4o.root, "checkout", "-qb", "feature")
    o4o.edit("@o4o/config")
    o4o.commit()
    git(o4o.root, "checkout", "-q", "main")
    code, doc, _ = cli_json(str(o4o.root), "--base", "main", "--head", "feature", "--dry-run")
    assert code == 0 and doc["affected"] == ["@o4o/api-server", "@o4o/config"]


def test_up_to_date_run_loads_no_plugins(small: Monorepo, cli_json):
    from stageflow.plugin_manager import get_plugin_manager, reset_plugin_manager

    assert cli_json(str(small.root))[0] == 0
    reset_plugin_manager()
    code, doc, _ = cli_json(str(small.root))
    assert code == 0 and len(doc["cached"]) == 5
    assert get_plugin_manager.cache_info().currsize == 0  # runner and cache were never needed
