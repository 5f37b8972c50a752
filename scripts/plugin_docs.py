"""Regenerate the built-in backend tables in README.md and docs/plugins.md from the plugin registry.

    python scripts/plugin_docs.py          # rewrite the generated blocks in place
    python scripts/plugin_docs.py --check  # exit 1 (naming the file) when a block has drifted (CI)

Only the built-in entry points (distribution ``stageflow``) are read, so plugins installed on the
machine never change the output. Each generated block sits between ``<!-- BEGIN generated:NAME -->``
and ``<!-- END generated:NAME -->``; everything outside the markers stays hand-written.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = "scripts/plugin_docs.py"


def builtin_registries() -> dict[str, Any]:
    from stageflow.plugin_manager import BUILTIN_DISTRIBUTION, ENTRY_POINT_GROUP, load_plugins

    eps = [
        ep
        for ep in md.entry_points(group=ENTRY_POINT_GROUP)
        if ep.dist is not None and ep.dist.metadata["Name"] == BUILTIN_DISTRIBUTION
    ]
    manager = load_plugins(entry_points=eps)
    if manager.problems:
        raise SystemExit("plugin_docs: a built-in plugin did not load: " + manager.problems[0].error)
    return manager.registries


def _default(field: Any) -> str:
    if field.is_required():
        return "required"
    if field.default_factory is not None:
        value = field.default_factory()
    else:
        value = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "none"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return f"`{json.dumps(value, ensure_ascii=False, default=str)}`"  # as TOML writes it, near enough


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def readme_table(registries: dict[str, Any]) -> str:
    lines = ["| kind | backend | extra | what it is |", "|---|---|---|---|"]
    for kind, registry in registries.items():
        for spec in registry.specs():
            extra = f"`{spec.extra}`" if spec.extra else ""
            lines.append(f"| {kind} | `{spec.name}` | {extra} | {_cell(spec.description)} |")
    return "\n".join(lines)


def options_reference(registries: dict[str, Any]) -> str:
    out: list[str] = []
    for kind, registry in registries.items():
        specs = registry.specs()
        out.append(f"### {kind}")
        out.append("")
        if not specs:
            out.append("No built-in backend.")
            out.append("")
            continue
        for spec in specs:
            extra = f" (extra `{spec.extra}`)" if spec.extra else ""
            out.append(f"- **`{spec.name}`**{extra}: {_cell(spec.description)}")
            fields = spec.config.model_fields
            if fields:
                opts = ", ".join(f"`{name}` ({_default(f)})" for name, f in fields.items())
                out.append(f"  Options: {opts}.")
            else:
                out.append("  No options.")
        out.append("")
    return "\n".join(out).rstrip()


BLOCKS = {
    "README.md": {"builtin-backends": readme_table},
    "docs/plugins.md": {"builtin-options": options_reference},
}


def render(text: str, blocks: dict[str, Any], registries: dict[str, Any], where: str) -> str:
    for name, make in blocks.items():
        pattern = re.compile(
            rf"(<!-- BEGIN generated:{name} [^>]*-->\n).*?(\n<!-- END generated:{name} -->)", re.DOTALL
        )
        if not pattern.search(text):
            raise SystemExit(f"plugin_docs: {where} has no '<!-- BEGIN generated:{name} ... -->' block")
        body = make(registries)
        text = pattern.sub(lambda m, body=body: m.group(1) + body + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail on drift instead of rewriting")
    args = parser.parse_args(argv)
    registries = builtin_registries()
    drifted = []
    for rel, blocks in BLOCKS.items():
        path = ROOT / rel
        old = path.read_text(encoding="utf-8")
        new = render(old, blocks, registries, rel)
        if new != old:
            drifted.append(rel)
            if not args.check:
                path.write_text(new, encoding="utf-8")
    if drifted and args.check:
        print(
            f"plugin_docs: {', '.join(drifted)} drifted from the registry: run `python {SCRIPT}` and commit",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
