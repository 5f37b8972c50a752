"""The start-up fast paths, on the top floor beside :mod:`stageflow.entry`: the stdlib-only
no-change ``stageflow build`` (:mod:`.build`), the Typer-free ``stageflow sync`` parser
(:mod:`.sync_cli`) and the warm sync server (:mod:`.sync_server`: the client half; its forking loop
:mod:`.sync_zygote`, started as :mod:`.sync_daemon`).

They may import the engines below them; nothing below imports them (tests/test_architecture.py).
The server itself knows no command: it runs the handler its launcher gives it.
"""
