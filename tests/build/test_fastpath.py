"""The no-change fast path of ``stageflow build`` (stageflow.fast.build) against the normal path:
same decision, same JSON document, same lines, and never "up to date" after a change that the normal
path would rebuild for. Real git, real node builds; $BUILD_TRACE tells which builds really ran."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from stageflow.fast import build as fastpath

from .conftest import Monorepo, git, write_monorepo

TIMES = re.compile(r"\d+\.\d+s")


def _strip_times(doc: dict[str, Any]) -> dict[str, Any]:
    out = dict(doc, duration_s=0)
    out["tasks"] = [dict(t, duration_s=0) for t in doc["tasks"]]
    return out


@pytest.fixture
def normal(cli, monkeypatch: pytest.MonkeyPatch):
    """``stageflow build ARGS`` with the fast path switched off: (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        with monkeypatch.context() as m:
            m.setattr(fastpath, "run", lambda argv: False)
            return cli("build", *args)

    return run


def _normal_json(normal, *args: str) -> dict[str, Any]:
    code, out, err = normal(*args, "--json")
    assert code == 0, err
    return json.loads(out)


def test_fast_path_answers_exactly_what_the_normal_path_answers(small: Monorepo, cli, normal):
    root = str(small.root)
    first = _normal_json(normal, root)
    assert len(first["built"]) == 5 and fastpath.stamp_path(small.root).is_file()
    small.built()

    answer = fastpath.decide([root, "--json"])
    assert answer is not None
    slow = _normal_json(normal, root)
    assert slow["built"] == [] and len(slow["cached"]) == 5
    assert _strip_times(answer.doc) == _strip_times(slow)

    for flags in ([], ["--json"], ["--logs", "none"], ["--logs=errors", "-j", "1"]):
        code_f, out_f, err_f = cli("build", root, *flags)
        assert fastpath.decide([root, *flags]) is not None  # the line above was the fast path
        code_n, out_n, err_n = normal(root, *flags)
        assert code_f == code_n == 0
        if "--json" in flags:
            assert _strip_times(json.loads(out_f)) == _strip_times(json.loads(out_n))
        else:
            assert TIMES.sub("T", out_f) == TIMES.sub("T", out_n)
        # the normal path prints in completion order (threads); every line is prefixed by its workspace
        assert sorted(TIMES.sub("T", err_f).splitlines()) == sorted(TIMES.sub("T", err_n).splitlines())
        assert err_f.strip() or flags
    assert small.built() == []  # nothing really ran along the way


def _edit_file(repo: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.edit("@s/ui", "edited\n")


def _add_untracked(repo: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo.path("@s/utils") / "src" / "extra.txt").write_text("new file\n")


def _delete_tracked(repo: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo.path("@s/types") / "src" / "index.txt").unlink()


def _change_lockfile(repo: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lock = repo.root / "pnpm-lock.yaml"  # an edit no workspace's resolved entries see (#14: as turbo)
    lock.write_text(lock.read_text() + "# changed\n")


def _change_env(repo: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FASTPATH_FLAVOUR", "other")


def _change_config(repo: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = repo.root / "stageflow.toml"
    cfg.write_text(cfg.read_text().replace('env = ["FASTPATH_FLAVOUR"]', 'env = ["FASTPATH_OTHER"]'))


def _switch_node(repo: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which("node")
    bindir = tmp_path / "other-node"
    bindir.mkdir()
    fake = bindir / "node"
    fake.write_text(f'#!/bin/sh\n[ "$1" = --version ] && echo v99.0.0 && exit 0\nexec "{real}" "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")


def _touch_output(repo: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo.path("@s/docs") / "dist" / "out.txt").write_text("tampered\n")


def _stage_edit(repo: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    repo.edit("@s/web", "staged\n")
    git(repo.root, "add", "-A")


def _new_workspace(repo: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = repo.root / "apps" / "admin"
    (ws / "src").mkdir(parents=True)
    (ws / "src" / "index.txt").write_text("admin\n")
    (ws / "package.json").write_text(
        json.dumps({"name": "@s/admin", "scripts": {"build": "node ../../tools/build.js ../.."}})
    )


CHANGES = {
    "edit a tracked file": (_edit_file, {"@s/ui", "@s/web"}),
    "add an untracked file": (_add_untracked, {"@s/utils", "@s/web"}),
    "delete a tracked file": (_delete_tracked, {"@s/types", "@s/utils", "@s/ui", "@s/web"}),
    "change the lockfile": (_change_lockfile, set()),  # the fast path steps aside; nothing rebuilds
    "change a [build] env value": (_change_env, {"@s/types", "@s/utils", "@s/ui", "@s/web", "@s/docs"}),
    "change stageflow.toml": (_change_config, {"@s/types", "@s/utils", "@s/ui", "@s/web", "@s/docs"}),
    "switch node through PATH": (_switch_node, {"@s/types", "@s/utils", "@s/ui", "@s/web", "@s/docs"}),
    "touch an output": (_touch_output, set()),  # restored from the cache, not rebuilt
    "stage an edit": (_stage_edit, {"@s/web"}),
    "add a workspace": (_new_workspace, {"@s/admin"}),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_fast_path_never_says_up_to_date_after_a_change(
    change: str, small: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, normal, cli
):
    (small.root / "stageflow.toml").write_text('[build]\nenv = ["FASTPATH_FLAVOUR"]\n')
    (small.root / "pnpm-lock.yaml").write_text("lockfileVersion: '9.0'\n")
    (small.root / "package.json").write_text(
        json.dumps(
            {
                "name": "r",
                "private": True,
                "packageManager": "npm@10.0.0",
                "workspaces": ["apps/*", "packages/*"],
            }
        )
    )
    small.commit("config, lockfile")
    monkeypatch.setenv("FASTPATH_FLAVOUR", "one")
    root = str(small.root)
    assert _normal_json(normal, root)["failed"] == []
    small.built()
    assert fastpath.decide([root]) is not None  # settled: the fast path would answer

    mutate, rebuilt = CHANGES[change]
    mutate(small, tmp_path, monkeypatch)
    assert fastpath.decide([root]) is None
    assert fastpath.decide([root, "--json"]) is None
    code, out, err = cli("build", root, "--json")  # through main(): the fast path must step aside
    doc = json.loads(out)
    assert code == 0, err
    assert set(small.built()) == rebuilt == set(doc["built"])

    answer = fastpath.decide([root, "--json"])  # the rebuild recorded a new stamp
    assert answer is not None
    assert _strip_times(answer.doc) == _strip_times(_normal_json(normal, root))
    assert small.built() == []


@pytest.mark.parametrize(
    "flags",
    [
        ["--base", "main"],
        ["--filter", "@s/web"],
        ["--role", "x"],
        ["--task", "lint"],
        ["--dry-run"],
        ["--force"],
        ["--prefect"],
        ["--committed-only"],
        ["-j", "0"],
        ["--logs", "loud"],
        ["--debug"],
        ["--help"],
        ["extra-positional"],
    ],
)
def test_flags_the_fast_path_does_not_know_fall_through(small: Monorepo, normal, flags: list[str]):
    root = str(small.root)
    _normal_json(normal, root)
    assert fastpath.decide([root]) is not None
    assert fastpath.decide([root, *flags]) is None


def test_runs_that_may_change_state_discard_the_stamp(small: Monorepo, cli, normal):
    root = str(small.root)
    _normal_json(normal, root)
    assert fastpath.stamp_path(small.root).is_file()
    assert cli("build", root, "--dry-run")[0] == 0
    assert fastpath.stamp_path(small.root).is_file()  # a plan changes nothing
    assert cli("build", root, "--force", "--json")[0] == 0
    assert not fastpath.stamp_path(small.root).exists()  # --force rebuilt outside the stamp's view
    assert fastpath.decide([root]) is None
    _normal_json(normal, root)
    assert fastpath.decide([root]) is not None


def test_build_that_changes_its_own_inputs_records_no_stamp(tmp_path: Path, monkeypatch, normal):
    repo = write_monorepo(
        tmp_path / "gen",
        {"packages/a": ("@g/a", [])},
        scripts={"@g/a": {"build": "mkdir -p dist && echo a > dist/out.txt && date +%N > generated.txt"}},
    )
    root = str(repo.root)
    _normal_json(normal, root)
    assert not fastpath.stamp_path(repo.root).exists()  # generated.txt appeared while building
    assert fastpath.decide([root]) is None


def test_failed_build_leaves_no_stamp(small: Monorepo, cli, normal):
    root = str(small.root)
    _normal_json(normal, root)
    pkg = small.path("@s/docs") / "package.json"
    pkg.write_text(pkg.read_text().replace("node ", "exit 3; node "))
    code, _, _ = cli("build", root)
    assert code == 1 and fastpath.decide([root]) is None
    assert not fastpath.stamp_path(small.root).exists()


def test_non_git_repo_never_takes_the_fast_path(tmp_path: Path, monkeypatch, normal):
    repo = write_monorepo(tmp_path / "plain", {"packages/a": ("@p/a", [])}, git_init=False)
    monkeypatch.setenv("BUILD_TRACE", str(repo.trace))
    _normal_json(normal, str(repo.root))
    _normal_json(normal, str(repo.root))
    assert fastpath.decide([str(repo.root)]) is None


def test_fast_path_imports_only_the_standard_library(small: Monorepo, normal):
    root = str(small.root)
    _normal_json(normal, root)
    script = (
        "import sys\n"
        "from stageflow.fast import build as fastpath\n"
        f"assert fastpath.run([{root!r}, '--json'])\n"
        "heavy = [m for m in ('typer', 'click', 'pydantic', 'pluggy', 'prefect', 'pathspec', 'yaml', 'rich')"
        " if m in sys.modules]\n"
        "print(heavy, file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["cached"] and proc.stderr.strip().endswith("[]")


@pytest.mark.parametrize("name", ["@o4o/api-server", "a_@@b", "__x", "x y/z_", "ok.name-1", "@s/ui"])
def test_state_file_name_is_the_engines_naming(name: str):
    from stageflow.build import probe

    assert probe.state_file_name(name) == re.sub(r"[^A-Za-z0-9._-]+", "_", name) + ".json"


def test_parse_accepts_only_the_flags_it_can_answer_for():
    args = fastpath.parse(["repo", "--json", "--logs=none", "-j", "3", "-c", "x.toml"])
    assert args is not None
    assert (str(args.repo), args.as_json, args.logs, args.concurrency, str(args.config)) == (
        "repo",
        True,
        "none",
        3,
        "x.toml",
    )
    assert fastpath.parse([]) is not None and str(fastpath.parse([]).repo) == "."  # type: ignore[union-attr]
    for bad in (
        ["-j"],
        ["-j", "x"],
        ["--logs"],
        ["a", "b"],
        ["-j4"],
        ["--concurrency", "2", "-j", "2"],
        [""],
    ):
        assert fastpath.parse(bad) is None, bad


def test_a_project_file_appearing_elsewhere_on_the_lookup_path_falls_through(
    small: Monorepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, normal
):
    root = str(small.root)
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    _normal_json(normal, root)
    assert fastpath.decide([root]) is not None
    (elsewhere / "stageflow.toml").write_text("[build]\nmemory_mb = 512\n")  # ./stageflow.toml is read
    assert fastpath.decide([root]) is None
    (elsewhere / "stageflow.toml").unlink()
    monkeypatch.setenv("STAGEFLOW_CONFIG", str(tmp_path / "missing.toml"))  # the normal path errors
    assert fastpath.decide([root]) is None
    monkeypatch.delenv("STAGEFLOW_CONFIG")
    assert fastpath.decide([root, "--config", str(tmp_path / "missing.toml")]) is None
    assert fastpath.decide([root]) is not None
