"""`stageflow sync / rollback / target init` driven in-process: behaviour and every bad input of
issue 3 (exit 2 bad input, 3 refused, 1 failed; one line; nothing written)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def init(cli, project, role: str = "apiserver") -> None:
    code, out, err = cli("target", "init", project.target, "--role", role)
    assert code == 0, err


def one_line_error(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith("stageflow: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_first_sync_then_changes_only(cli, project, snapshot) -> None:
    project.env(exclude='["node_modules/", "*.log"]', protect='[".env*", "uploads/"]')
    init(cli, project)
    (project.target / ".env").write_text("KEEP=1\n")
    (project.target / "uploads").mkdir()
    (project.target / "uploads/u.png").write_text("u")
    project.write(".env", "LOCAL=1\n")
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert set(doc) >= {
        "environment",
        "target",
        "role",
        "mode",
        "release",
        "changes",
        "bytes_sent",
        "files_scanned",
        "excluded",
        "hooks",
        "duration_s",
    }
    assert doc["changes"]["added"] == [
        "apps/api-server/index.js",
        "apps/web/page.js",
        "packages/lib/lib.js",
        "stageflow.toml",
    ]
    assert not (project.target / "node_modules").exists() and not (project.target / "server.log").exists()
    src_mode = (project.source / "apps/web/page.js").stat()
    dst_mode = (project.target / "apps/web/page.js").stat()
    assert (src_mode.st_mode, src_mode.st_mtime_ns) == (dst_mode.st_mode, dst_mode.st_mtime_ns)

    project.write("packages/lib/lib.js", "v2\n")
    (project.source / "apps/web/page.js").unlink()
    (project.source / "uploads").mkdir()
    project.write("uploads/u.png", "overwrite?")
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    doc = json.loads(out)
    assert doc["changes"] == {
        "added": [],
        "modified": ["packages/lib/lib.js"],
        "deleted": ["apps/web/page.js"],
    }
    assert (project.target / "packages/lib/lib.js").read_text() == "v2\n"
    # apps/web is still a (now empty) directory in the source: kept, as rsync keeps it
    assert (project.target / "apps/web").is_dir() and not any((project.target / "apps/web").iterdir())
    assert (project.target / ".env").read_text() == "KEEP=1\n"  # protected: never sent or overwritten
    assert (project.target / "uploads/u.png").read_text() == "u"

    code, out, _ = cli("sync", project.source, "--env", "api", "--json")
    assert json.loads(out)["changes"] == {"added": [], "modified": [], "deleted": []}


def test_dry_run_writes_nothing(cli, project, snapshot, stageflow_home) -> None:
    project.env(hooks='[{ use = "shell", run = "touch hooked" }]')
    init(cli, project)
    before = snapshot(project.target, skip_state=False)
    code, out, err = cli("sync", project.source, "--env", "api", "--dry-run")
    assert code == 0, err
    assert "+ packages/lib/lib.js" in out and "hook shell: planned" in out and "nothing written" in out
    assert snapshot(project.target, skip_state=False) == before
    code, out, _ = cli("sync", project.source, "--env", "api", "--dry-run", "--json")
    doc = json.loads(out)
    assert doc["dry_run"] and doc["hooks"] == [{"name": "shell", "status": "planned"}]


def test_names_with_spaces_unicode_newlines(cli, project, snapshot) -> None:
    project.env(exclude='["node_modules/"]')
    init(cli, project)
    for name in ("with space.txt", "한글/파일.txt", "new\nline.txt", "dir with space/é.js"):
        project.write(name, name)
    for transport in ("local", "rsync"):
        target = project.target.parent / f"dst-{transport}"
        code, _, err = cli("target", "init", target, "--role", "apiserver")
        project.env(exclude='["node_modules/"]', transport=f'"{transport}"', target=target)
        code, out, err = cli("sync", project.source, "--env", "api", "--json")
        assert code == 0, err
        assert "new\nline.txt" in json.loads(out)["changes"]["added"]
        expected = {k: v for k, v in snapshot(project.source).items() if not k.startswith("node_modules")}
        expected["stageflow.toml"] = (project.source / "stageflow.toml").read_bytes()
        assert snapshot(target) == expected
        (project.source / "new\nline.txt").unlink()
        code, out, err = cli("sync", project.source, "--env", "api", "--json")
        assert json.loads(out)["changes"]["deleted"] == ["new\nline.txt"]
        assert not (target / "new\nline.txt").exists()
        (project.source / "dir with space/é.js").unlink()
        (project.source / "dir with space").rmdir()
        code, out, err = cli("sync", project.source, "--env", "api", "--json")
        assert code == 0, err
        assert json.loads(out)["changes"]["deleted"] == ["dir with space/é.js"]
        assert not (target / "dir with space").exists()  # emptied directories go too
        project.write("dir with space/é.js", "back")
        project.write("new\nline.txt", "again")


def test_links_copied_as_links_escaping_ones_skipped_and_reported(cli, project, tmp_path) -> None:
    project.env()
    init(cli, project)
    (tmp_path / "outside.txt").write_text("secret")
    os.symlink("../packages/lib/lib.js", project.source / "apps/link.js")
    os.symlink("../../outside.txt", project.source / "apps/escape.txt")
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0
    doc = json.loads(out)
    assert doc["skipped_links"] == ["apps/escape.txt"]
    assert "symlink apps/escape.txt points outside the source: skipped" in err
    assert os.readlink(project.target / "apps/link.js") == "../packages/lib/lib.js"
    assert not os.path.lexists(project.target / "apps/escape.txt")


def test_source_missing(cli, project) -> None:
    code, _, err = cli("sync", project.source / "nope", "--env", "api")
    assert code == 2 and "source" in one_line_error(err) and "does not exist" in err


def test_unknown_environment(cli, project) -> None:
    project.env()
    code, _, err = cli("sync", project.source, "--env", "web")
    assert code == 2 and "unknown environment 'web'" in one_line_error(err) and "api" in err


def test_malformed_toml_names_the_line(cli, project) -> None:
    project.write("stageflow.toml", '[sync.environments.api]\nrole = "apiserver"\ntarget = \n')
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 2 and "stageflow.toml:3" in one_line_error(err)
    project.write("stageflow.toml", '[sync.environments.api]\nrole = "apiserver"\nmode = "blue"\n')
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 2 and "stageflow.toml:3" in one_line_error(err) and "mode" in err


def test_bad_ssh_persist_is_bad_input(cli, project) -> None:
    project.env(ssh_persist='"forever"')
    init(cli, project)
    code, _, err = cli("sync", project.source, "--env", "api")
    line = one_line_error(err)
    assert code == 2 and "stageflow.toml:4" in line and "ssh_persist" in line and '"10m"' in line
    assert set(os.listdir(project.target)) == {".stageflow"}
    from stageflow.sync.target import parse_persist

    assert [parse_persist(v) for v in ("10m", "90s", "1h", 30, 0, "0", "no", "2.5m")] == [
        600,
        90,
        3600,
        30,
        0,
        0,
        0,
        150,
    ]


def test_unknown_hook_and_bad_hook_option_are_bad_input(cli, project) -> None:
    project.env(hooks='[{ use = "pm3" }]')
    init(cli, project)
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 2 and "hooks[0]" in one_line_error(err) and "pm3" in err
    project.env(hooks='[{ use = "health", url = "http://x", retries = 3 }]')
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 2 and "retries" in one_line_error(err)
    assert set(os.listdir(project.target)) == {".stageflow"}


def test_wrong_role_refused_nothing_written(cli, project, snapshot) -> None:
    project.env()
    init(cli, project, role="webserver")
    before = snapshot(project.target, skip_state=False)
    code, _, err = cli("sync", project.source, "--env", "api")
    line = one_line_error(err)
    assert code == 3 and "expected 'apiserver', found 'webserver'" in line
    assert snapshot(project.target, skip_state=False) == before


def test_target_without_role_refused(cli, project, monkeypatch) -> None:
    project.env()
    for var in ("STAGEFLOW_ROLE", "SERVER_TYPE"):
        monkeypatch.delenv(var, raising=False)
    project.target.mkdir()
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 3 and "declares no role" in one_line_error(err) and "target init" in err
    assert os.listdir(project.target) == []
    code, _, err = cli("sync", project.source, "--env", "api", "--target", project.target / "missing")
    assert code == 3 and "does not exist" in one_line_error(err)


@pytest.mark.parametrize("how", ["env", "dotenv"])
def test_role_fallbacks_of_the_original_system(cli, project, monkeypatch, how) -> None:
    project.env()
    project.target.mkdir()
    monkeypatch.delenv("STAGEFLOW_ROLE", raising=False)
    if how == "env":
        monkeypatch.setenv("SERVER_TYPE", "webserver")
    else:
        monkeypatch.delenv("SERVER_TYPE", raising=False)
        (project.target / ".env").write_text("PORT=1\nSERVER_TYPE=webserver\n")
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 3 and "found 'webserver'" in one_line_error(err)
    if how == "env":
        monkeypatch.setenv("SERVER_TYPE", "apiserver")
    else:
        (project.target / ".env").write_text("SERVER_TYPE=apiserver\n")
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err


def test_target_init_refuses_to_change_role(cli, project) -> None:
    init(cli, project)
    code, _, err = cli("target", "init", project.target, "--role", "webserver")
    assert code == 3 and "already declares role 'apiserver'" in one_line_error(err)
    assert cli("target", "init", project.target, "--role", "webserver", "--force")[0] == 0


def test_pm2_config_naming_other_roles_apps_refused(cli, project, snapshot) -> None:
    project.write(
        "ecosystem.web.config.cjs", "module.exports = { apps: [{ name: 'web-server', script: 'x' }] }"
    )
    project.config(
        f"""
        [sync.environments.api]
        role = "apiserver"
        target = "{project.target}"
        apps = ["api-server"]
        hooks = [{{ use = "pm2", config = "ecosystem.web.config.cjs" }}]
        [sync.environments.web]
        role = "webserver"
        target = "/nowhere"
        apps = ["web-server"]
    """
    )
    init(cli, project)
    before = snapshot(project.target, skip_state=False)
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 3 and "names app 'web-server' of environment 'web'" in one_line_error(err)
    assert snapshot(project.target, skip_state=False) == before


def test_include_pattern_selecting_nothing_warns(cli, project) -> None:
    project.env(include='["apps/api-server/**", "apps/does-not-exist/**"]')
    init(cli, project)
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0
    assert "warning: include pattern 'apps/does-not-exist/**' selects nothing" in err
    assert json.loads(out)["changes"]["added"] == ["apps/api-server/index.js"]


def test_target_unreachable_over_ssh(cli, project, fake_ssh) -> None:
    project.env(ssh_command=f'"{fake_ssh}"', target="deploy@unreachable.invalid:/srv/app")
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 1 and "unreachable" in one_line_error(err)


def test_remote_target_through_ssh_command(cli, project, fake_ssh, tmp_path, snapshot, monkeypatch) -> None:
    """The ssh path end to end: role marker read, lock, rsync -e <ssh>, manifest, hooks over 'ssh'."""
    log = tmp_path / "ssh.log"
    monkeypatch.setenv("FAKE_SSH_LOG", str(log))
    remote = f"deploy@apihost:{project.target}"
    project.env(
        ssh_command=f'"{fake_ssh}"',
        target=remote,
        exclude='["node_modules/", "*.log"]',
        hooks='[{ use = "shell", run = "pwd > hook-ran-here" }]',
    )
    code, _, err = cli("target", "init", remote, "--role", "apiserver", "--ssh-command", fake_ssh)
    assert code == 0, err
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["hooks"] == [{"name": "shell", "status": "ok"}] and doc["bytes_sent"] > 0
    assert (project.target / "hook-ran-here").read_text().strip() == str(project.target)
    assert (project.target / "packages/lib/lib.js").read_text() == "lib\n"
    assert set(log.read_text().split()) == {"deploy@apihost", "apihost"}  # rsync passes the user as -l
    project.write("packages/lib/lib.js", "v2\n")
    code, out, err = cli("sync", project.source, "--env", "api", "--json")
    assert json.loads(out)["changes"]["modified"] == ["packages/lib/lib.js"]
    assert (project.target / "packages/lib/lib.js").read_text() == "v2\n"


def test_permission_denied_on_target_changes_nothing(project, tmp_path, snapshot) -> None:
    """Run as an unprivileged user (setpriv) against a root-owned target: exit 1, target unchanged."""
    import shutil
    import subprocess
    import sys
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to drop privileges")
    base = Path(tempfile.mkdtemp(prefix="stageflow-perm-"))
    try:
        os.chmod(base, 0o755)
        src, dst, home = base / "src", base / "dst", base / "home"
        shutil.copytree(project.source, src)
        (dst / ".stageflow").mkdir(parents=True)
        (dst / ".stageflow/role").write_text("apiserver\n")
        (dst / "packages/lib").mkdir(parents=True)
        (dst / "packages/lib/lib.js").write_text("old\n")
        os.chmod(dst / ".stageflow", 0o777)  # lock and journal writable; the deployed tree is not
        home.mkdir()
        os.chmod(home, 0o777)
        (src / "stageflow.toml").write_text(
            f'[sync.environments.api]\nrole = "apiserver"\ntarget = "{dst}"\n'
        )
        for p in [base, *base.rglob("*")]:
            if p.is_dir():
                os.chmod(p, os.stat(p).st_mode | 0o755)
            else:
                os.chmod(p, os.stat(p).st_mode | 0o644)
        before = snapshot(dst)
        env = {**os.environ, "STAGEFLOW_HOME": str(home)}
        proc = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sys.executable,
                "-m",
                "stageflow.cli",
                "sync",
                str(src),
                "--env",
                "api",
            ],
            capture_output=True,
            text=True,
            env=env,
            cwd=base,
        )
        assert proc.returncode == 1, proc.stderr
        assert "Permission denied" in proc.stderr and "Traceback" not in proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1
        assert snapshot(dst) == before
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_second_sync_waits_for_the_lock_then_fails(cli, project) -> None:
    import fcntl

    project.env(lock_timeout="0.3")
    init(cli, project)
    fd = os.open(project.target / ".stageflow/lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        code, _, err = cli("sync", project.source, "--env", "api")
    finally:
        os.close(fd)
    assert code == 1 and "locked by another sync" in one_line_error(err)
    assert not (project.target / "apps").exists()
    assert cli("sync", project.source, "--env", "api")[0] == 0


def test_paths_newly_excluded_or_protected_are_not_deleted(cli, project) -> None:
    project.env()
    init(cli, project)
    assert cli("sync", project.source, "--env", "api")[0] == 0
    assert (project.target / "server.log").exists()
    project.env(exclude='["*.log"]', protect='["apps/web/"]')
    (project.source / "apps/web/page.js").unlink()
    code, out, _ = cli("sync", project.source, "--env", "api", "--json")
    assert json.loads(out)["changes"]["deleted"] == []
    assert (project.target / "server.log").exists() and (project.target / "apps/web/page.js").exists()


# --------------------------------------------------------------------- the console script's fast path
def _script(*args: object) -> subprocess.CompletedProcess[str]:
    """The real console entry (stageflow.entry), where `stageflow sync` skips Typer."""
    return subprocess.run(
        [sys.executable, "-m", "stageflow.entry", *(str(a) for a in args)], capture_output=True, text=True
    )


def test_sync_fast_path_prints_what_typer_prints(cli, project) -> None:
    from stageflow.fast.sync_cli import parse

    project.env(exclude='["node_modules/", "*.log"]')
    init(cli, project)
    proc = _script("sync", project.source, "--env", "api", "--dry-run")
    code, out, err = cli("sync", project.source, "--env", "api", "--dry-run")
    assert proc.returncode == code == 0 and proc.stdout == out, (proc.stderr, err)
    proc = _script("sync", project.source, "-e", "api", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert "apps/web/page.js" in doc["changes"]["added"]
    project.write("apps/web/page.js", "v2\n")
    proc = _script("sync", project.source, "--env=api")
    assert proc.returncode == 0 and proc.stdout.startswith("synced api to ") and "1 modified" in proc.stdout
    # Errors: the same one line and exit code as the Typer path.
    for args, expected in (
        (("--env", "web"), 2),
        (("--env", "api", "--target", str(project.target / "nowhere")), 3),
    ):
        proc = _script("sync", project.source, *args)
        code, _, err = cli("sync", project.source, *args)
        assert proc.returncode == code == expected and proc.stderr == err
    # What the fast path leaves to Typer.
    for argv in (["--help"], [".", "--env", "a", "--prefect"], [".", "--debug", "--env", "a"]):
        assert parse(argv) is None
    assert parse([".", "x", "--env", "a"]) is None and parse([".", "--env", "a", "--bogus"]) is None
    assert parse([".", "--env"]) is None and parse(["."]) is None
    assert parse(["src", "-e", "a", "-t", "/x", "-c", "f.toml", "--json", "--no-git", "--dry-run"]) == {
        "source": "src",
        "env": "a",
        "target": "/x",
        "config": "f.toml",
        "dry_run": True,
        "as_json": True,
        "no_git": True,
    }
    proc = _script("sync", "--help")
    assert proc.returncode == 0 and "Usage" in proc.stdout
