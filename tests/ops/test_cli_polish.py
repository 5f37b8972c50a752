"""The CLI's contract in the cases Click and Rich used to own: help text is plain text, usage errors
are one line with exit 2, shell completion is offered, a missing extra is named, and the build
progress bar names the workspaces building now."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _run(*args: str, code: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", "STAGEFLOW_HOME": os.environ.get("STAGEFLOW_HOME", "/tmp")}
    env.pop("PREFECT_API_URL", None)
    argv = [sys.executable, "-c", code, *args] if code else [str(BIN / "stageflow"), *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)


def test_bracketed_help_text_is_not_eaten_as_markup():
    out = _run("sync", "--help").stdout
    assert "Environment in [sync.environments]." in out


def test_usage_errors_are_one_line_with_exit_2():
    for args, text in [
        (("build", "--no-such-flag"), "No such option: --no-such-flag"),
        (("sync",), "Missing argument 'source'."),
        (("no-such-command",), "No such command 'no-such-command'."),
    ]:
        proc = _run(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("stageflow: error: ") and text in lines[0], lines
        assert "--help'" in lines[0]


def test_shell_completion_is_offered():
    out = _run("--help").stdout
    assert "--install-completion" in out and "--show-completion" in out
    proc = _run("--show-completion", "bash")
    assert proc.returncode == 0 and "_STAGEFLOW_COMPLETE" in proc.stdout


def test_pools_create_without_the_docker_extra_names_it():
    blocker = (
        "import sys; sys.modules['prefect_docker'] = None; sys.modules['prefect_docker.worker'] = None\n"
        "from stageflow.cli import run_app; run_app(sys.argv[1:])"
    )
    proc = _run("pools", "create", code=blocker)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == (
        "stageflow: error: the gpu work pool needs the docker extra (prefect_docker is not installed): "
        'pip install "stageflow[docker]"'
    )


def test_build_progress_names_the_running_workspaces():
    from stageflow.commands.build import _Progress

    label = _Progress.running_label
    assert label([]) == ""
    assert label(["@app/web", "@lib/ui"]) == "@app/web, @lib/ui"
    assert label([f"@scope/package-{i}" for i in range(5)], width=30) == "@scope/package-0 +4 more"
    progress = _Progress(3, logs="none", quiet=True)
    progress.start("@app/web")
    progress.start("@lib/ui")
    assert progress.running == ["@app/web", "@lib/ui"]

    class Result:
        name, status, reason, log, duration_s, cache = "@app/web", "built", "", "", 0.1, ""

    progress.done(Result())
    assert progress.running == ["@lib/ui"]
