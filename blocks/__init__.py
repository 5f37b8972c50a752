"""Prefect Block types for stageflow's credentials and deploy targets.

Exposed through the ``prefect.collections`` entry point, so ``Block.load("stageflow-slack-credentials/x")``
works in any process, even one that never imported this module. Secrets are pydantic SecretStr /
SecretDict fields: Prefect stores them encrypted-at-rest by the server and never prints them.
"""

from stageflow.blocks.credentials import (
    BLOCK_TYPES,
    CoupangCredentials,
    GeminiCredentials,
    GoogleServiceAccount,
    SlackCredentials,
    SshDeployTarget,
)

__all__ = [
    "BLOCK_TYPES",
    "CoupangCredentials",
    "GeminiCredentials",
    "GoogleServiceAccount",
    "SlackCredentials",
    "SshDeployTarget",
]
