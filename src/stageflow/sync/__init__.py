"""deploy-sync engine: environment profiles, the role safety net, manifests and change sets, targets
(local or over ssh), releases and post-deploy hooks.

Plain typed modules: nothing here imports Prefect or a plugin module; backends (transports, deploy
hooks) are reached through the plugin manager only.
"""
