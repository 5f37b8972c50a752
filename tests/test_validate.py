"""`stageflow validate`: every problem listed at once, with the known names, before anything deploys."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stageflow.samples import SAMPLES_DIR

from stageflow.cli import main

FEED = SAMPLES_DIR / "youtube_channel_feed.xml"


def run(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(args)
    out = capsys.readouterr()
    return exit_.value.code or 0, out.out, out.err


def write(tmp_path: Path, toml: str, yaml: str | None = None) -> list[str]:
    (tmp_path / "stageflow.toml").write_text(toml, encoding="utf-8")
    args = ["validate", "--config", str(tmp_path / "stageflow.toml")]
    if yaml is not None:
        (tmp_path / "prefect.yaml").write_text(yaml, encoding="utf-8")
        args += ["--prefect-yaml", str(tmp_path / "prefect.yaml")]
    return args


GOOD_YAML = """
deployments:
  - name: video-discovery
    entrypoint: stageflow.flows.video:video_discovery
    work_pool: {name: cpu}
    parameters: {config_path: /etc/stageflow.toml}
"""


def test_valid_project(tmp_path, capsys):
    args = write(tmp_path, f'[discover]\noptions = {{ feeds = ["{FEED}"] }}\n', GOOD_YAML)
    code, out, err = run(args + ["--json"], capsys)
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and doc["problems"] == []
    assert (
        "prefect.yaml: deployment 'video-discovery' -> stageflow.flows.video:video_discovery"
        in doc["checked"]
    )


def test_unknown_backends_and_bad_options_are_all_listed(tmp_path, capsys):
    toml = (
        '[notify]\nbackend = "pager"\n'
        f'[discover]\noptions = {{ feeds = ["{FEED}"] }}\nsinks = [{{ backend = "jsonl" }}]\n'
        '[[monitor.checks]]\nname = "api"\nuse = "ping"\n'
    )
    code, _, err = run(write(tmp_path, toml), capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("FAIL [notify] backend: unknown notifiers backend 'pager' (known: log")
    assert lines[1] == (
        "FAIL [discover] sinks[0]: sinks backend 'jsonl': option 'directory': Field required"
        " (options: directory, key)"
    )
    assert lines[2].startswith(
        "FAIL [[monitor.checks]] api: unknown checks backend 'ping' (known: disk, drift, gpu, http"
    )


def test_prefect_yaml_problems(tmp_path, capsys):
    yaml = """
deployments:
  - name: typo
    entrypoint: stageflow.flows.video:video_discovry
    work_pool: {name: cpu}
  - name: bad-params
    entrypoint: stageflow.flows.video:video_discovery
    work_pool: {name: cpu}
    parameters: {params: {source: [1, 2]}}
  - name: no-pool
    entrypoint: stageflow.flows.monitor:monitor
"""
    code, _, err = run(write(tmp_path, "", yaml), capsys)
    assert code == 2
    assert "deployment 'typo': entrypoint stageflow.flows.video:video_discovry does not load" in err
    assert "deployment 'bad-params': parameters do not fit video-discovery" in err
    assert "deployment 'no-pool' names no work_pool" in err
    assert "Parameter validation failed" not in err  # Prefect's own log line is not repeated


def test_malformed_config_is_one_problem(tmp_path, capsys):
    code, _, err = run(write(tmp_path, "[notify\n"), capsys)
    assert code == 2 and err.count("FAIL") == 1 and ":1: invalid TOML" in err


def test_block_references_are_counted_without_an_api(tmp_path, capsys):
    yaml = GOOD_YAML.replace(
        "parameters: {config_path: /etc/stageflow.toml}",
        "parameters: {config_path: '{{ prefect.blocks.stageflow-slack-credentials.ops }}'}",
    )
    code, out, _ = run(write(tmp_path, "", yaml), capsys)
    assert code == 0 and "1 block reference(s) not checked (no --check-blocks)" in out


def test_family_backends_are_checked(tmp_path, capsys):
    toml = (
        '[video]\ntranscriber = "whisperx"\nocr = ["rapidocr", "easyocr"]\n'
        '[build]\ncache = "s3"\n'
        '[sync.environments.api]\nrole = "apiserver"\nhooks = [{ use = "pm3" }]\n'
    )
    code, out, err = run(write(tmp_path, toml), capsys)
    assert code == 2
    assert "FAIL [sync.environments.api] hooks[0]: unknown deploy_hooks backend 'pm3'" in err
    assert "FAIL [build] cache: unknown build_caches backend 's3'" in err
    assert "FAIL [video] transcriber: unknown transcribers backend 'whisperx'" in err
    assert "FAIL [video] ocr: unknown ocr_engines backend 'easyocr'" in err
    assert "ok   [video] ocr: ocr_engines backend 'rapidocr'" in out


def test_repository_prefect_yaml_validates(capsys, monkeypatch, tmp_path):
    from stageflow.validate import validate_project

    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(tmp_path)
    report = validate_project(None, root / "prefect.yaml", check_blocks=False)
    assert report.problems == []
    assert (
        "prefect.yaml: deployment 'video-inference' -> stageflow.flows.inference:video_inference "
        "(given at run time: job, video)" in report.checked
    )


def test_unknown_deployment_parameter(tmp_path, capsys):
    yaml = GOOD_YAML.replace("parameters: {config_path: /etc/stageflow.toml}", "parameters: {config: x}")
    code, _, err = run(write(tmp_path, "", yaml), capsys)
    assert (
        code == 2
        and "unknown parameter(s) config for video-discovery (parameters: params, config_path)" in err
    )
