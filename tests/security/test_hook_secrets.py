"""Secrets and hooks: a local shell hook sees only a clean environment plus the names it asks for,
and values passed to a hook on an ssh target never appear on any process's command line."""

from __future__ import annotations

from pathlib import Path


def test_local_shell_hook_gets_only_what_it_asks_for(cli, project, monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-slack-secret")
    monkeypatch.setenv("GEMINI_API_KEY", "gemini-secret")
    monkeypatch.setenv("API_ENV_FILE", "A=1")
    seen = tmp_path / "hook-env.txt"
    project.env(hooks=f'[{{ use = "shell", run = "env > {seen}", pass_env = ["API_ENV_FILE"] }}]')
    code, _, err = cli("target", "init", project.target, "--role", "apiserver")
    assert code == 0, err
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    env = dict(line.split("=", 1) for line in seen.read_text().splitlines() if "=" in line)
    assert env["API_ENV_FILE"] == "A=1"
    assert "SLACK_BOT_TOKEN" not in env and "GEMINI_API_KEY" not in env
    assert "PATH" in env


def test_ssh_pass_env_values_not_on_any_command_line(cli, project, fake_ssh, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-3f9a-secret-value")
    cmdlines, got = tmp_path / "cmdlines.txt", tmp_path / "got.txt"
    # While the hook runs, every process's command line is recorded (what `ps` shows).
    hook = (
        f"for f in /proc/[0-9]*/cmdline; do tr '\\\\000' ' ' < $f 2>/dev/null; echo; done > {cmdlines}; "
        f"printenv DEPLOY_TOKEN > {got}"
    )
    remote = f"deploy@apihost:{project.target}"
    project.env(
        target=remote,
        ssh_command=f'"{fake_ssh}"',
        hooks=f'[{{ use = "shell", run = "{hook}", pass_env = ["DEPLOY_TOKEN"] }}]',
    )
    code, _, err = cli("target", "init", remote, "--role", "apiserver", "--ssh-command", fake_ssh)
    assert code == 0, err
    code, _, err = cli("sync", project.source, "--env", "api")
    assert code == 0, err
    assert got.read_text().strip() == "tok-3f9a-secret-value"
    assert "printenv DEPLOY_TOKEN" in cmdlines.read_text()  # recorded while the hook ran
    assert "tok-3f9a-secret-value" not in cmdlines.read_text()
