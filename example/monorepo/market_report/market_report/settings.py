"""Settings, read from the environment in this one place.

In production the environment is filled by gunicorn.conf.py from the decrypted env file; locally
`load_settings()` also reads the app folder's plain `.env` (never committed, never in an image).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from dotenv import load_dotenv

DEFAULT_MODULE_NAME = "MARKET_REPORT"
DEFAULT_API_BASE = "https://gateway.unique.app/public/chat-gen2"
MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Everything the app reads from its environment. Immutable, so safe to share between threads."""

    api_key: str = ""
    app_id: str = ""
    api_base: str = DEFAULT_API_BASE
    company_id: str = ""
    base_url: str = ""
    endpoint_secret: str = ""
    module_name: str = DEFAULT_MODULE_NAME
    # Deployed: the production image sets ENCRYPTED_ENV_FILE; `flask run`, compose and tests do not.
    deployed: bool = False
    handler_threads: int = 8  # handlers mostly wait on the platform: threads are cheap
    handler_timeout: int = 20  # seconds one event may take; sizes how many events are accepted at once
    webhook_max_bytes: int = MIB
    webhook_max_age: int = 3600  # seconds a signed event stays acceptable (the platform's retries)
    delivered_ids_dir: str = ""  # shared by the gunicorn workers of a replica (set by gunicorn.conf.py)
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(
            api_key=env.get("API_KEY", ""),
            app_id=env.get("APP_ID", ""),
            api_base=env.get("API_BASE") or DEFAULT_API_BASE,
            company_id=env.get("COMPANY_ID", ""),
            base_url=env.get("BASE_URL", ""),
            endpoint_secret=env.get("ENDPOINT_SECRET", ""),
            module_name=env.get("MODULE_NAME") or DEFAULT_MODULE_NAME,
            deployed=bool(env.get("ENCRYPTED_ENV_FILE")),
            handler_threads=_whole_number(env, "HANDLER_THREADS", 8, 1, 64),
            handler_timeout=_whole_number(env, "HANDLER_TIMEOUT", 20, 1, 3600),
            webhook_max_bytes=_whole_number(env, "WEBHOOK_MAX_BYTES", MIB, 1024, 64 * MIB),
            webhook_max_age=_whole_number(env, "WEBHOOK_MAX_AGE", 3600, 300, 7 * 24 * 3600),
            delivered_ids_dir=env.get("WEBHOOK_DELIVERED_IDS_DIR", ""),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
        )

    def __repr__(self) -> str:  # never print secrets, even in a traceback
        signed = "signed" if self.endpoint_secret else "unsigned"
        return f"Settings(module_name={self.module_name!r}, {signed}, deployed={self.deployed})"


def load_settings(env_file: str = ".env") -> Settings:
    """Settings from the process environment, completed by `env_file` if it exists (it never overrides)."""
    load_dotenv(env_file, override=False)
    return Settings.from_env(os.environ)


def _whole_number(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number from {low} to {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be from {low} to {high}, got {value}")
    return value
