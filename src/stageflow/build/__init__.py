"""Selective build engine for npm/pnpm/yarn workspace monorepos (DESIGN §3 "selective-build").

Plain typed modules: discovery of workspaces and their DAG (:mod:`.workspaces`), change detection
through git (:mod:`.changes`), selection and filters (:mod:`.selection`), task hashing
(:mod:`.hashing`), script resolution (:mod:`.scripts`), output archives (:mod:`.outputs`), the
parallel scheduler (:mod:`.scheduler`) and the engine that ties them (:mod:`.engine`). Nothing here
imports Prefect or a plugin module: runners and caches arrive as objects built from registries.
"""
