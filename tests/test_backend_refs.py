"""Backend references are declared once (``Annotated[str, BackendRef(kind)]`` in the section models):
``stageflow validate`` walks those declarations, so it rejects every unknown backend name that run time
rejects, and a new backend-naming key without the declaration fails here."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from stageflow.backend_refs import backend_fields, field_ref
from stageflow.cli import main
from stageflow.config import SECTIONS, ProjectConfig, section_model
from stageflow.stages import KINDS

#: Words that, as a field name, say "this key names a backend" (the kinds, their singulars, and the
#: names the sections use). A field so named must be a BackendRef.
BACKEND_WORDS = {
    *KINDS,
    *(k.removesuffix("s") for k in KINDS),
    "backend", "use", "runner", "cache", "transport", "notifier", "source", "ocr", "commerce",
}  # fmt: skip

#: One TOML line per BackendRef field (dotted path from the section root -> a file that sets that key
#: to an unknown name). Adding a BackendRef field means adding its line here (the test below says so).
UNKNOWN_NAME_AT = {
    "notify.backend": '[notify]\nbackend = "nosuch-notify"\n',
    "discover.source": '[discover]\nsource = "nosuch-source"\n',
    "discover.sinks.backend": '[discover]\nsinks = [{ backend = "nosuch-sink" }]\n',
    "sync.environments.hooks.use": '[sync.environments.a]\nrole = "r"\nhooks = [{ use = "nosuch-hook" }]\n',
    "sync.environments.transport": '[sync.environments.a]\nrole = "r"\ntransport = "nosuch-transport"\n',
    "build.runner": '[build]\nrunner = "nosuch-runner"\n',
    "build.cache": '[build]\ncache = "nosuch-cache"\n',
    "video.transcriber": '[video]\ntranscriber = "nosuch-transcriber"\n',
    "video.detector": '[video]\ndetector = "nosuch-detector"\n',
    "video.ocr": '[video]\nocr = ["nosuch-ocr"]\n',
    "video.analyzer": '[video]\nanalyzer = "nosuch-analyzer"\n',
    "video.commerce": '[video]\ncommerce = "nosuch-commerce"\n',
    "video.sinks.backend": '[video]\nsinks = [{ backend = "nosuch-sink" }]\n',
    "monitor.checks.use": '[[monitor.checks]]\nname = "c"\nuse = "nosuch-check"\n',
    "monitor.notifier": '[monitor]\nnotifier = "nosuch-notifier"\n',
}


def _models() -> list[tuple[str, type[BaseModel]]]:
    """Every model reachable from the project file's sections, with its dotted path."""
    out: list[tuple[str, type[BaseModel]]] = []

    def walk(path: str, model: type[BaseModel]) -> None:
        if any(m is model for _, m in out):
            return
        out.append((path, model))
        for name, field in model.model_fields.items():
            for sub in _submodels(field.annotation):
                walk(f"{path}.{name}", sub)

    for name, field in ProjectConfig.model_fields.items():
        walk(name, field.annotation)
    for name in SECTIONS:
        walk(name, section_model(name))
    return out


def _submodels(annotation):
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
    for arg in typing.get_args(annotation):
        yield from _submodels(arg)


def declared() -> set[str]:
    out = {f"notify.{p}" for p, _ in backend_fields(section_model_of("notify"))}
    out |= {f"discover.{p}" for p, _ in backend_fields(section_model_of("discover"))}
    for name in SECTIONS:
        out |= {f"{name}.{p}" for p, _ in backend_fields(section_model(name))}
    return out


def section_model_of(name: str) -> type[BaseModel]:
    return ProjectConfig.model_fields[name].annotation


def test_every_backend_naming_key_is_a_backend_ref():
    """A field named like a backend key (``commerce``, ``notifier``, ``use``, ...) must be declared
    ``Annotated[str, BackendRef(kind)]``, and every declared kind and options attribute exists."""
    missing = []
    for path, model in _models():
        for name, field in model.model_fields.items():
            ref = field_ref(field)
            if ref is None:
                if name in BACKEND_WORDS and not any(_submodels(field.annotation)):
                    missing.append(f"{path}.{name} ({model.__name__})")
                continue
            assert ref[0].kind in KINDS, f"{path}.{name}: unknown kind {ref[0].kind!r}"
            assert hasattr(model, ref[0].options) or ref[0].options in model.model_fields, (
                f"{path}.{name}: {model.__name__} has no options attribute {ref[0].options!r}"
            )
    assert not missing, "backend-naming keys without BackendRef: " + ", ".join(missing)


def test_every_backend_ref_is_checked_by_validate(tmp_path, capsys):
    """Each declared key, set to an unknown name, is one FAIL line of ``stageflow validate`` (exit 2)."""
    assert declared() == set(UNKNOWN_NAME_AT), "add the new BackendRef key to UNKNOWN_NAME_AT"
    for key, toml in UNKNOWN_NAME_AT.items():
        code, _, err = _validate(tmp_path, toml, capsys)
        name = toml.split('"nosuch-')[1].split('"')[0]
        assert code == 2, f"{key}: validate accepted an unknown backend"
        assert f"backend 'nosuch-{name}' (known:" in err, (key, err)


def _validate(tmp_path: Path, toml: str, capsys) -> tuple[int, str, str]:
    cfg = tmp_path / "stageflow.toml"
    cfg.write_text(toml, encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        main(["validate", "--config", str(cfg)])
    out = capsys.readouterr()
    return exit_.value.code or 0, out.out, out.err


@pytest.mark.parametrize(
    ("toml", "where", "needle"),
    [
        ('[video]\ncommerce = "coupnag"\n', "[video] commerce", "unknown commerce backend 'coupnag'"),
        ('[video]\nsinks = [{backend = "jsonll"}]\n', "[video] sinks[0]", "unknown sinks backend 'jsonll'"),
    ],
)
def test_validate_rejects_what_analyze_rejects(tmp_path, capsys, toml, where, needle):
    code, _, err = _validate(tmp_path, toml, capsys)
    assert code == 2 and f"FAIL {where}: {needle}" in err, err

    cfg = tmp_path / "stageflow.toml"
    with pytest.raises(SystemExit) as exit_:  # run time: the analysis check, before any input is read
        main(["analyze", str(tmp_path / "none.mp4"), "--config", str(cfg), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{where}: {needle}" in err, err
