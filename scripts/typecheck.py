"""Run mypy on stageflow as it installs: src/stageflow plus the remapped packages.

plugins/, flows/, blocks/, deployments/ and samples/ install as stageflow.plugins, stageflow.flows, ...
(pyproject.toml [tool.setuptools.package-dir]). mypy derives a module's name from its path, so on the
command line plugins/sinks.py would be a module `plugins.sinks`, and `import stageflow.plugins.sinks`
elsewhere would not resolve. This script hands mypy each of those files with its real module name
(mypy's BuildSource(path, module)), so the per-module settings of pyproject.toml [tool.mypy] apply to
stageflow.plugins.* etc., cross-imports resolve, and errors print with the real file paths.

Usage: .venv/bin/python scripts/typecheck.py [extra mypy options]   (CI: .ci/run). Exit code is mypy's.
"""

from __future__ import annotations

import sys
import time
import tomllib
from pathlib import Path

from mypy import build, util
from mypy.fscache import FileSystemCache
from mypy.main import process_options
from mypy.modulefinder import BuildSource

ROOT = Path(__file__).resolve().parent.parent


def remapped_sources(root: Path = ROOT) -> list[BuildSource]:
    """One BuildSource per .py file of each package that pyproject.toml maps to its own directory."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    package_dir: dict[str, str] = pyproject["tool"]["setuptools"]["package-dir"]
    sources = []
    for package, directory in sorted(package_dir.items()):
        base = root / directory
        if package == "stageflow" or not (base / "__init__.py").is_file():
            continue  # stageflow itself is found through mypy_path = "src"
        for path in sorted(base.rglob("*.py")):
            parts = path.relative_to(base).with_suffix("").parts
            # only files inside Python packages (every folder on the way has an __init__.py)
            if any(not (base.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            module = ".".join((package, *parts))
            sources.append(BuildSource(str(path.relative_to(root)), module, None, base_dir=str(root)))
    return sources


def main(argv: list[str]) -> int:
    t0 = time.time()
    fscache = FileSystemCache()
    sources, options = process_options(
        [*argv, "src/stageflow"], stdout=sys.stdout, stderr=sys.stderr, fscache=fscache
    )
    sources += remapped_sources()
    formatter = util.FancyFormatter(sys.stdout, sys.stderr, options.hide_error_codes)
    messages: list[str] = []

    def flush_errors(filename: str | None, new_messages: list[str], serious: bool) -> None:
        if options.pretty:
            new_messages = formatter.fit_in_terminal(new_messages)
        messages.extend(new_messages)
        stream = sys.stderr if serious else sys.stdout
        for message in new_messages:
            print(formatter.colorize(message) if options.color_output else message, file=stream)

    blockers = False
    try:
        result = build.build(sources, options, None, flush_errors, fscache, sys.stdout, sys.stderr)
        result.manager.metastore.close()
    except build.CompileError:
        blockers = True  # the messages went through flush_errors
    n_errors, n_notes, n_files = util.count_stats(messages)
    if n_errors or blockers:
        summary = formatter.format_error(n_errors, n_files, len(sources), blockers=blockers)
        print(summary, f"({time.time() - t0:.0f} s)")
        return 2 if blockers else 1
    print(formatter.format_success(len(sources), options.color_output), f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
