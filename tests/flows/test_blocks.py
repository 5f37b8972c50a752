"""Block types through the Prefect API: registered by the CLI, saved here, and loaded by a separate
process that never imported stageflow.blocks (the prefect.collections entry point), secrets intact
and never printed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from stageflow.cli import main


def test_blocks_register_save_and_load_in_a_fresh_process(capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        main(["blocks", "register"])
    assert exit_.value.code in (0, None)
    assert "registered stageflow-slack-credentials" in capsys.readouterr().out

    from prefect.settings import PREFECT_API_URL
    from stageflow.blocks import SlackCredentials, SshDeployTarget

    SlackCredentials(bot_token="xoxb-very-secret", default_channel="C42").save("ops", overwrite=True)
    SshDeployTarget(host="10.9.9.9", user="deploy", path="/srv/app", role="apiserver").save(
        "api", overwrite=True
    )

    code = (
        "from prefect.blocks.core import Block\n"
        "slack = Block.load('stageflow-slack-credentials/ops')\n"
        "target = Block.load('stageflow-ssh-deploy-target/api')\n"
        "secret_ok = slack.bot_token.get_secret_value() == 'xoxb-very-secret'\n"
        "print(type(slack).__module__, slack.default_channel, secret_ok)\n"
        "print(repr(slack))\n"
        "print(target.destination(), target.role)\n"
    )
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == "stageflow.blocks.credentials C42 True"
    assert "xoxb-very-secret" not in proc.stdout.replace(lines[0], "") + proc.stderr
    assert lines[2] == "deploy@10.9.9.9:/srv/app apiserver"


def test_validate_check_blocks_finds_a_missing_block(tmp_path):
    from stageflow.blocks import SlackCredentials

    from stageflow.validate import validate_project

    SlackCredentials(bot_token="xoxb-x").save("present", overwrite=True)
    (tmp_path / "prefect.yaml").write_text(
        "deployments:\n"
        "  - name: video-discovery\n"
        "    entrypoint: stageflow.flows.video:video_discovery\n"
        "    work_pool: {name: cpu}\n"
        "    parameters:\n"
        "      config_path: '{{ prefect.blocks.stageflow-slack-credentials.present }}'\n"
        "    job_variables: {env: {TOKEN: '{{ prefect.blocks.stageflow-slack-credentials.missing }}'}}\n"
    )
    (tmp_path / "stageflow.toml").write_text("")
    report = validate_project(tmp_path / "stageflow.toml", tmp_path / "prefect.yaml", check_blocks=True)
    assert "block stageflow-slack-credentials/present" in report.checked
    assert [p for p in report.problems if "missing" in p] == [
        "block stageflow-slack-credentials/missing does not exist: create it in the Prefect UI (Blocks) "
        "or in Python with .save('missing'), then deploy"
    ]
