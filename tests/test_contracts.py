"""The contracts package (issue #19 item 1): one module per family holds each kind's Protocol and
its data types; no Protocol member is typed ``Any`` except where the contract says why; the public
facade ``stageflow.api`` exports every contract; every built-in backend satisfies its kind; and the
package is the bottom floor (standard library, pydantic and ``stageflow.errors`` only)."""

from __future__ import annotations

import ast
import importlib
import inspect
import sys
import typing
from pathlib import Path

import pytest

import stageflow.api as api
from stageflow import contracts
from stageflow.contracts.kinds import FAMILIES, KINDS
from stageflow.plugin_manager import load_plugins

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ROOT / "src" / "stageflow" / "contracts"

#: (Protocol, member, parameter or "return") typed with ``Any`` on purpose, and why. Keep it short.
ANY_ALLOWED = {
    ("Transcriber", "transcribe", "audio"): "a numpy array; contracts never import numpy",
    ("Sink", "write", "records"): "JSON-like record values (str, numbers, bools, None, lists, dicts)",
}

#: Built-ins whose factory is a function (not the backend class): built with these options (offline).
FUNCTION_FACTORY_OPTIONS = {
    ("analyzers", "rules"): {},
    ("analyzers", "gemini"): {},
    ("commerce", "coupang"): {"use_store": False, "alerts": False},
}


def _families() -> dict[str, object]:
    return {name: importlib.import_module(name) for name in FAMILIES}


def _protocols() -> list[type]:
    """Every Protocol defined in a family module (the kinds' and the helpers', e.g. DeployTarget)."""
    out = []
    for module in _families().values():
        for obj in vars(module).values():
            ours = inspect.isclass(obj) and obj.__module__ == module.__name__
            if ours and getattr(obj, "_is_protocol", False):
                out.append(obj)
    return out


def _members(protocol: type) -> set[str]:
    """A Protocol's members (``typing._get_protocol_attrs`` is private; ``__protocol_attrs__`` is 3.12+)."""
    out: set[str] = set()
    for base in protocol.__mro__:
        if base in (typing.Protocol, typing.Generic, object) or not getattr(base, "_is_protocol", False):
            continue
        out |= {n for n in vars(base) if not n.startswith("_")}
        out |= {n for n in getattr(base, "__annotations__", {}) if not n.startswith("_")}
    return out


def _mentions_any(hint: object) -> bool:
    if hint is typing.Any:
        return True
    return any(_mentions_any(arg) for arg in typing.get_args(hint))


def test_every_family_module_exists_and_the_package_lists_them():
    assert {name.rpartition(".")[2] for name in FAMILIES} == {
        "media",
        "analysis",
        "commerce",
        "deploy",
        "build",
        "ops",
    }
    on_disk = {p.stem for p in CONTRACTS.glob("*.py")} - {"__init__", "kinds"}
    assert on_disk == {name.rpartition(".")[2] for name in FAMILIES}


def test_every_kind_has_its_protocol_in_exactly_one_contract_module():
    families = _families()
    for kind, protocol in KINDS.items():
        assert getattr(protocol, "_is_protocol", False), f"{kind}: {protocol} is not a Protocol"
        assert getattr(protocol, "_is_runtime_protocol", False), f"{kind}: {protocol} not runtime_checkable"
        defined_in = [
            name
            for name, module in families.items()
            if inspect.isclass(getattr(module, protocol.__name__, None))
            and getattr(module, protocol.__name__).__module__ == name
        ]
        assert defined_in == [protocol.__module__], f"{kind}: {protocol.__name__} defined in {defined_in}"


def test_no_protocol_member_is_typed_any_except_where_documented():
    found = set()
    members = 0
    for protocol in _protocols():
        for member in sorted(_members(protocol)):
            func = getattr(protocol, member)
            func = func.fget if isinstance(func, property) else func
            members += 1
            hints = typing.get_type_hints(func)
            for param, hint in hints.items():
                if _mentions_any(hint):
                    found.add((protocol.__name__, member, param))
    assert members >= len(KINDS)
    extra = found - set(ANY_ALLOWED)
    assert found == set(ANY_ALLOWED), f"Any-typed members beyond the documented ones: {extra}"
    for (protocol, member, _), why in ANY_ALLOWED.items():
        proto = next(p for p in _protocols() if p.__name__ == protocol)
        doc = (proto.__doc__ or "") + (getattr(proto, member).__doc__ or "")
        assert "Any" in doc, f"{protocol}.{member}: the contract must say why it is typed Any ({why})"


def test_lifecycle_methods_are_optional_not_required_members():
    for protocol in _protocols():
        assert not {"preflight", "close"} & _members(protocol), protocol

    class Bare:
        pass

    calls = []

    class Full:
        def preflight(self) -> None:
            calls.append("preflight")

        def close(self) -> None:
            calls.append("close")

    contracts.preflight(Bare())
    contracts.close(Bare())
    contracts.preflight(Full())
    contracts.close(Full())
    assert calls == ["preflight", "close"]

    class Refusing:
        def preflight(self) -> None:
            raise api.Refused("not on this host")

    with pytest.raises(api.Refused, match="not on this host"):
        contracts.preflight(Refusing())


def test_the_facade_exports_every_contract_and_every_error():
    exported = set(api.__all__)
    assert len(exported) == len(api.__all__), "duplicates in stageflow.api.__all__"
    for name, module in _families().items():
        public = set(module.__all__)
        defined = {
            n
            for n, obj in vars(module).items()
            if not n.startswith("_") and getattr(obj, "__module__", None) in FAMILIES
        } | {n for n in vars(module) if n.isupper() and not n.startswith("_")}
        assert defined <= public, f"{name}: public names missing from __all__: {defined - public}"
        assert public <= exported, f"stageflow.api lacks {sorted(public - exported)} of {name}"
        for n in public:
            assert getattr(api, n) is getattr(module, n), n
    import stageflow.errors as errors

    for n, obj in vars(errors).items():
        if inspect.isclass(obj) and issubclass(obj, errors.StageflowError):
            assert n in exported and getattr(api, n) is obj, n
    assert {"hookimpl", "PLUGIN_API_VERSION", "KINDS", "preflight", "close", "Register"} <= exported
    assert api.KINDS is KINDS


def test_old_import_paths_still_name_the_one_definition():
    """The data moved, not copied: the old modules re-export the contracts' objects."""
    from stageflow import stages
    from stageflow.build import model
    from stageflow.commerce import coupang
    from stageflow.sync import hooks, manifest
    from stageflow.video.analysis import evidence

    assert stages.KINDS is KINDS and stages.Message is api.Message
    assert stages.TransferStats is api.TransferStats
    assert model.BuildTask is api.BuildTask and model.CacheEntryCorrupt is api.CacheEntryCorrupt
    assert hooks.DeployContext is api.DeployContext and hooks.HookOutcome is api.HookOutcome
    assert manifest.ChangeSet is api.ChangeSet
    assert evidence.Candidate is api.Candidate and evidence.CommerceMatch is api.CommerceMatch
    assert issubclass(coupang.CoupangProduct, api.Product)


def test_the_engines_targets_satisfy_the_deploy_target_contract():
    from stageflow.sync.target import LocalTarget, SshTarget

    assert issubclass(LocalTarget, api.DeployTarget) and issubclass(SshTarget, api.DeployTarget)


def test_every_builtin_backend_satisfies_its_kinds_protocol(monkeypatch):
    monkeypatch.setenv("COUPANG_ACCESS_KEY", "test-access")
    monkeypatch.setenv("COUPANG_SECRET_KEY", "test-secret")
    monkeypatch.setenv("GEMINI_API_KEY", "test-key")
    manager = load_plugins()
    seen = 0
    for kind, protocol in KINDS.items():
        for spec in manager.registry(kind).specs():
            if spec.distribution != "stageflow":
                continue
            seen += 1
            if inspect.isclass(spec.factory):
                assert issubclass(spec.factory, protocol), f"{kind} {spec.name}: {spec.factory}"
                continue
            options = FUNCTION_FACTORY_OPTIONS.get((kind, spec.name))
            assert options is not None, f"{kind} {spec.name}: add its offline options to this test"
            backend = manager.registry(kind).build(spec.name, options)
            try:
                assert isinstance(backend, protocol), f"{kind} {spec.name}: {type(backend)}"
            finally:
                contracts.close(backend)
    assert seen >= 30


def _imports(path: Path) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}:{node.lineno}: import absolutely"
            out.append((node.module or "", node.lineno))
    return out


def test_contracts_are_the_bottom_floor():
    """Every import in contracts/ (lazy ones included): the standard library, pydantic, typing, and
    of ours only stageflow.errors and the contracts themselves."""
    bad = []
    for path in sorted(CONTRACTS.glob("*.py")):
        for name, line in _imports(path):
            top = name.partition(".")[0]
            ok = (
                top in sys.stdlib_module_names
                or top in {"__future__", "pydantic", "typing_extensions"}
                or name == "stageflow.errors"
                or name == "stageflow.contracts"
                or name.startswith("stageflow.contracts.")
            )
            if not ok:
                bad.append(f"{path.name}:{line} imports {name}")
    assert not bad, bad


def test_a_family_module_loads_without_the_others_or_pydantic():
    """The deploy contracts (what the sync fast paths reach) import neither pydantic nor another family."""
    import subprocess

    code = (
        "import sys, stageflow.contracts.deploy\n"
        "print(sorted(m for m in sys.modules if m == 'pydantic' or m.startswith('stageflow.contracts.')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "['stageflow.contracts.deploy']"
