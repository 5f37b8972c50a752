"""Block types: Coupang Partners keys, a Gemini API key, a Google service account, Slack credentials,
and SSH deploy targets. Data only: no network, no stageflow imports beyond models."""

from __future__ import annotations

from typing import Any

from prefect.blocks.core import Block
from prefect.blocks.fields import SecretDict
from pydantic import Field, SecretStr


class CoupangCredentials(Block):
    """Coupang Partners Open API keys (HMAC-signed requests)."""

    _block_type_name = "Stageflow Coupang Credentials"
    _block_type_slug = "stageflow-coupang-credentials"
    access_key: SecretStr = Field(description="Partners access key")
    secret_key: SecretStr = Field(description="Partners secret key used to sign requests")
    base_url: str = "https://api-gateway.coupang.com"


class GeminiCredentials(Block):
    """Gemini API key and model for the `gemini` analyzer."""

    _block_type_name = "Stageflow Gemini Credentials"
    _block_type_slug = "stageflow-gemini-credentials"
    api_key: SecretStr
    model: str = "gemini-2.0-flash"
    base_url: str = "https://generativelanguage.googleapis.com"


class GoogleServiceAccount(Block):
    """A Google service account (the JSON key's contents) for the `gsheets` sink."""

    _block_type_name = "Stageflow Google Service Account"
    _block_type_slug = "stageflow-google-service-account"
    service_account_info: SecretDict = Field(description="The service account JSON key as a mapping")

    def client_email(self) -> str | None:
        return self.service_account_info.get_secret_value().get("client_email")


class SlackCredentials(Block):
    """A Slack bot token (chat.postMessage) or an incoming-webhook URL."""

    _block_type_name = "Stageflow Slack Credentials"
    _block_type_slug = "stageflow-slack-credentials"
    bot_token: SecretStr | None = None
    webhook_url: SecretStr | None = None
    default_channel: str | None = None


class SshDeployTarget(Block):
    """A remote deploy target for deploy-sync: ``user@host:path`` with its role and key."""

    _block_type_name = "Stageflow SSH Deploy Target"
    _block_type_slug = "stageflow-ssh-deploy-target"
    host: str
    user: str
    path: str
    role: str
    port: int = 22
    private_key: SecretStr | None = None
    known_hosts: str | None = None

    def destination(self) -> str:
        return f"{self.user}@{self.host}:{self.path}"

    def ssh_options(self) -> dict[str, Any]:
        return {"port": self.port}


BLOCK_TYPES: tuple[type[Block], ...] = (
    CoupangCredentials,
    GeminiCredentials,
    GoogleServiceAccount,
    SlackCredentials,
    SshDeployTarget,
)
