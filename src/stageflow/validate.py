"""`stageflow validate`: check a project before deploying it — stageflow.toml, every backend it
names (and that backend's options), prefect.yaml's deployments (entrypoints load, parameters fit the
flow, work pools named), and, when a Prefect API is reachable, the blocks they reference.

Read-only: validation never writes anything, locally or to the Prefect API.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stageflow.backend_refs import BackendUse
from stageflow.config import backend_refs as declared
from stageflow.config import load_config
from stageflow.errors import StageflowError
from stageflow.plugin_manager import get_plugin_manager

BLOCK_REF = re.compile(r"\{\{\s*prefect\.blocks\.([a-z0-9-]+)\.([A-Za-z0-9_-]+)\s*\}\}")


@dataclass
class Report:
    checked: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def backend_refs(cfg: Any) -> Iterator[BackendUse]:
    """Every backend a project config names, with where: the generic walk over every section
    model's ``BackendRef`` fields (:func:`stageflow.config.backend_refs`), plus the option tables of
    the built-in downloader, which no key names (downloaders are picked by URL)."""
    yield from declared(cfg)
    if cfg.given("video"):
        v = cfg.video
        if "http" in (v.model_extra or {}):  # the built-in downloader's options (max_bytes, ...)
            yield BackendUse("downloaders", "http", v.options("http"), "[video.http]")


def _check_backends(cfg: Any, report: Report) -> None:
    plugins = get_plugin_manager()
    for problem in plugins.problems:
        report.problems.append(f"plugin skipped: {problem.error}")
    for ref in backend_refs(cfg):
        try:
            plugins.registry(ref.kind).validate_config(ref.name, ref.options)
        except StageflowError as exc:
            report.problems.append(f"{ref.where}: {exc}")
        else:
            report.checked.append(f"{ref.where}: {ref.kind} backend '{ref.name}'")


def _check_prefect_yaml(path: Path, report: Report) -> list[tuple[str, str]]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        report.problems.append(f"{path}: cannot read: {exc}")
        return []
    blocks = sorted(set(BLOCK_REF.findall(path.read_text(encoding="utf-8"))))
    from prefect.flows import load_flow_from_entrypoint

    for dep in doc.get("deployments") or []:
        name = dep.get("name", "?")
        entrypoint = dep.get("entrypoint")
        if not entrypoint:
            report.problems.append(f"{path}: deployment '{name}' has no entrypoint")
            continue
        try:
            flow: Any = load_flow_from_entrypoint(entrypoint)
        except Exception as exc:
            report.problems.append(
                f"{path}: deployment '{name}': entrypoint {entrypoint} does not load: {exc}"
            )
            continue
        if not (dep.get("work_pool") or {}).get("name"):
            report.problems.append(f"{path}: deployment '{name}' names no work_pool")
        params = dep.get("parameters") or {}
        signature = inspect.signature(flow.fn)
        unknown = sorted(set(params) - set(signature.parameters))
        if unknown:
            report.problems.append(
                f"{path}: deployment '{name}': unknown parameter(s) {', '.join(unknown)} for {flow.name} "
                f"(parameters: {', '.join(signature.parameters)})"
            )
            continue
        unresolved = [k for k, v in params.items() if isinstance(v, str) and "{{" in v]
        required = [n for n, p in signature.parameters.items() if p.default is inspect.Parameter.empty]
        at_run_time = [n for n in required if n not in params]
        if not at_run_time:
            try:
                quiet = logging.getLogger("prefect.flows")
                level = quiet.level
                quiet.setLevel(
                    logging.CRITICAL
                )  # our one-line problem says it; Prefect's log would repeat it
                try:
                    flow.validate_parameters({k: v for k, v in params.items() if k not in unresolved})
                finally:
                    quiet.setLevel(level)
            except Exception as exc:
                report.problems.append(
                    f"{path}: deployment '{name}': parameters do not fit {flow.name}: {exc}"
                )
                continue
        note = f" (given at run time: {', '.join(at_run_time)})" if at_run_time else ""
        report.checked.append(f"{path.name}: deployment '{name}' -> {entrypoint}{note}")
    return blocks


def _check_blocks(blocks: list[tuple[str, str]], report: Report) -> None:
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    with get_client(sync_client=True) as client:
        for slug, name in blocks:
            try:
                client.read_block_document_by_name(name=name, block_type_slug=slug)
            except ObjectNotFound:
                report.problems.append(
                    f"block {slug}/{name} does not exist: create it in the Prefect UI (Blocks) "
                    f"or in Python with .save('{name}'), then deploy"
                )
            else:
                report.checked.append(f"block {slug}/{name}")


def validate_project(config_path: Path | None, prefect_yaml: Path | None, check_blocks: bool) -> Report:
    report = Report()
    try:
        cfg = load_config(config_path)
    except StageflowError as exc:
        report.problems.append(str(exc))
        return report
    report.checked.append(f"{cfg.source_path or 'defaults (no stageflow.toml)'}: valid")
    _check_backends(cfg, report)
    _check_sync_rule_files(cfg, report)
    _check_job_storage(cfg, report)
    blocks: list[tuple[str, str]] = []
    if prefect_yaml is not None:
        if prefect_yaml.is_file():
            blocks = _check_prefect_yaml(prefect_yaml, report)
        else:
            report.problems.append(f"{prefect_yaml}: not found: pass --prefect-yaml PATH")
    if blocks and check_blocks:
        _check_blocks(blocks, report)
    elif blocks:
        report.checked.append(f"{len(blocks)} block reference(s) not checked (no --check-blocks)")
    return report


def _check_sync_rule_files(cfg: Any, report: Report) -> None:
    """Every environment's selection rules and rule files (exclude_from, filter_from, ignore_from),
    read as sync reads them, relative to stageflow.toml's directory (the sync source when the
    config is the default ``SOURCE/stageflow.toml``); each problem is the line sync would stop on."""
    from stageflow.sync.rules import selection_problems

    environments = cfg.sync.environments
    if not environments:
        return
    source = Path(cfg.source_path).resolve().parent if cfg.source_path else Path.cwd()
    seen: set[str] = set()
    for env_name, profile in environments.items():
        problems = [p for p in selection_problems(profile, source) if p not in seen]
        seen.update(problems)
        report.problems += problems
        files = profile.exclude_files() + profile.filter_files() + profile.ignore_files()
        if not problems and files:
            report.checked.append(f"[sync.environments.{env_name}] rule files: {', '.join(files)}")


def _check_job_storage(cfg: Any, report: Report) -> None:
    """``[video] job_storage``: its scheme is checked when the config loads; here, that the scheme's
    fsspec backend is installed (this machine stands for the workers: both pools need it)."""
    if not cfg.given("video") or not cfg.video.job_storage:
        return
    from stageflow.video.jobstore import storage_problem

    url = cfg.video.job_storage
    problem = storage_problem(url)
    if problem:
        report.problems.append(f"[video] job_storage {url}: {problem}")
    elif not cfg.video.inference_deployment:
        report.checked.append(f"[video] job_storage {url} (unused: inference_deployment is not set)")
    else:
        report.checked.append(f"[video] job_storage {url}")
