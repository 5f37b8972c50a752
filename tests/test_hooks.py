"""One test per hookspec (guarded by test_plugin_guards): a plugin implementing the hook registers a
backend, the registry builds it from a validated config, and the backend satisfies its Protocol."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from pydantic import BaseModel, ConfigDict

from stageflow.hookspecs import hookimpl
from stageflow.plugin_manager import load_plugins
from stageflow.stages import CheckResult, MediaItem, Message, TransferStats


class Opts(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: int = 1


def _build(hook: str, kind: str, backend_cls, config=None):
    plugin = SimpleNamespace()

    def impl(register):
        register("t", backend_cls, config=Opts)

    impl.__name__ = hook
    setattr(plugin, hook, hookimpl(impl))
    manager = load_plugins(entry_points=[], extra_plugins=[("test-plugin", plugin)])
    spec = manager.registry(kind).get("t")
    assert spec.distribution == "<test-plugin>"
    return manager.build(kind, "t", config or {"value": 3})


def test_hook_register_sources():
    class S:
        def __init__(self, c):
            self.c = c

        def discover(self):
            return [MediaItem("t", str(self.c.value), "title", "u")]

    assert _build("register_sources", "sources", S).discover()[0].item_id == "3"


def test_hook_register_downloaders(tmp_path: Path):
    class D:
        def __init__(self, c):
            pass

        def can_handle(self, url):
            return url.startswith("x://")

        def download(self, url, dest):
            out = dest / "v.mp4"
            out.write_bytes(b"x")
            return out

    d = _build("register_downloaders", "downloaders", D)
    assert d.can_handle("x://a") and d.download("x://a", tmp_path).read_bytes() == b"x"


def test_hook_register_transcribers():
    class T:
        def __init__(self, c):
            self.c = c

        def transcribe(self, audio, language=None):
            return {"language": language, "n": len(audio) * self.c.value}

    assert _build("register_transcribers", "transcribers", T).transcribe([0.0, 0.1], "ko") == {
        "language": "ko",
        "n": 6,
    }


def test_hook_register_detectors():
    class D:
        def __init__(self, c):
            pass

        def detect(self, frames):
            return [{"frame": i, "label": "cup"} for i, _ in enumerate(frames)]

    assert len(_build("register_detectors", "detectors", D).detect([1, 2])) == 2


def test_hook_register_ocr_engines():
    class Ocr:
        def __init__(self, c):
            pass

        def read(self, frames):
            return [{"text": "SALE"} for _ in frames]

    assert _build("register_ocr_engines", "ocr_engines", Ocr).read([0])[0]["text"] == "SALE"


def test_hook_register_analyzers():
    class A:
        def __init__(self, c):
            pass

        def find_ranges(self, transcript):
            return [(0.0, 1.0)]

        def candidate(self, time_range, evidence):
            return {"range": time_range, "evidence": evidence}

    a = _build("register_analyzers", "analyzers", A)
    assert a.candidate(a.find_ranges("t")[0], {"ocr": []})["range"] == (0.0, 1.0)


def test_hook_register_commerce():
    class C:
        def __init__(self, c):
            pass

        def search(self, keyword, limit=10):
            return [{"name": keyword}][:limit]

        def deeplink(self, urls):
            return [u + "?ref=1" for u in urls]

    c = _build("register_commerce", "commerce", C)
    assert c.search("립스틱")[0]["name"] == "립스틱" and c.deeplink(["u"]) == ["u?ref=1"]


def test_hook_register_sinks():
    class S:
        def __init__(self, c):
            self.rows = []

        def write(self, table, records):
            self.rows.extend(records)
            return len(records)

    assert _build("register_sinks", "sinks", S).write("videos", [{"id": 1}]) == 1


def test_hook_register_notifiers():
    class N:
        def __init__(self, c):
            self.sent = []

        def notify(self, message):
            self.sent.append(message.title)

    n = _build("register_notifiers", "notifiers", N)
    n.notify(Message(title="done"))
    assert n.sent == ["done"]


def test_hook_register_transports(tmp_path: Path):
    class T:
        def __init__(self, c):
            pass

        def send(self, source, dest, changes):
            return TransferStats(files=len(changes))

    assert _build("register_transports", "transports", T).send(tmp_path, "x", ["a", "b"]).files == 2


def test_hook_register_build_runners():
    class R:
        def __init__(self, c):
            pass

        def run(self, task):
            return {"task": task, "ok": True}

    assert _build("register_build_runners", "build_runners", R).run("web")["ok"]


def test_hook_register_build_caches(tmp_path: Path):
    class C:
        def __init__(self, c):
            self.entries = {}

        def fetch(self, key, dest):
            return self.entries.get(key)

        def store(self, key, root, outputs, log):
            self.entries[key] = log

    c = _build("register_build_caches", "build_caches", C)
    c.store("k", tmp_path, ["dist"], "built")
    assert c.fetch("k", tmp_path) == "built" and c.fetch("other", tmp_path) is None


def test_hook_register_deploy_hooks():
    class H:
        def __init__(self, c):
            pass

        def run(self, context):
            return {"ran_for": context}

    assert _build("register_deploy_hooks", "deploy_hooks", H).run("web")["ran_for"] == "web"


def test_hook_register_checks():
    class C:
        def __init__(self, c):
            self.c = c

        def probe(self):
            return CheckResult("disk", ok=self.c.value > 2)

    assert _build("register_checks", "checks", C).probe().ok is True
