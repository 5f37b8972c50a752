"""stageflow: Prefect 3 flows made of plugin-swappable stages.

Importing this package must stay cheap (no Prefect, no plugin loading): the CLI's start-up depends on it.
"""

__version__ = "0.1.0"

#: Major version of the plugin API (hookspecs, Protocols, register() signature). A plugin module may
#: declare ``STAGEFLOW_PLUGIN_API = 1``; a plugin that declares another major version is skipped.
PLUGIN_API_VERSION = 1

__all__ = ["__version__", "PLUGIN_API_VERSION"]
