"""The runtime's settings: the platform's credentials and how the app serves, read from the environment.

In production the container's start program (sdk_runtime/start.py) decrypts the app's env file into
the environment; locally `load_settings()` also reads the app folder's plain `.env` (never committed,
never in an image). Your app's own settings are in `<app>/settings.py`.

Every platform setting is read under the platform toolkit's names (unique_toolkit's UniqueSettings,
repository Unique-AG/ai: unique_toolkit/app/unique_settings.py) and under unique_sdk's classic names,
in the toolkit's order of precedence, so one `.env` configures both the same way. (The previous
secret, which verifies too while the endpoint secret is rotated, is this runtime's own: neither the
toolkit nor the SDK has one, so it is named after the toolkit's field with the SDK-style alias.)

| setting            | names, first found wins                                          |
|--------------------|------------------------------------------------------------------|
| API key            | UNIQUE_APP_KEY, KEY, API_KEY                                     |
| app id             | UNIQUE_APP_ID, APP_ID                                            |
| endpoint secret    | UNIQUE_APP_ENDPOINT_SECRET, ENDPOINT_SECRET                      |
| previous secret    | UNIQUE_APP_ENDPOINT_SECRET_PREVIOUS, ENDPOINT_SECRET_PREVIOUS    |
| company id         | UNIQUE_AUTH_COMPANY_ID, COMPANY_ID                               |
| user id            | UNIQUE_AUTH_USER_ID, USER_ID  (Event Socket only)                |
| platform URL       | UNIQUE_API_BASE_URL, BASE_URL, API_BASE                          |
| modules            | UNIQUE_CHAT_EVENT_FILTER_OPTIONS_REFERENCES_IN_CODE, MODULE_NAME |
| assistants         | UNIQUE_CHAT_EVENT_FILTER_OPTIONS_ASSISTANT_IDS                   |

The platform URL names the gateway (`https://gateway.<tenant>.unique.app`); the SDK's API base and
the Event Socket's stream are derived from it as the toolkit derives them (`api_base`, `stream_base`),
with one difference that keeps working configurations working: an API path written out (API_BASE's
`/public/chat-gen2`) is kept, where the toolkit would infer one from the host. So 0.2.0's pair
`BASE_URL=<gateway host>` + `API_BASE=<gateway>/public/chat-gen2` still reaches the same API.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dotenv import load_dotenv

from .queueing import StorageSettings

MIB = 1024 * 1024
DEFAULT_PLATFORM_URL = "https://gateway.unique.app"
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"

API_KEY_NAMES = ("UNIQUE_APP_KEY", "KEY", "API_KEY")
APP_ID_NAMES = ("UNIQUE_APP_ID", "APP_ID")
ENDPOINT_SECRET_NAMES = ("UNIQUE_APP_ENDPOINT_SECRET", "ENDPOINT_SECRET")
PREVIOUS_SECRET_NAMES = ("UNIQUE_APP_ENDPOINT_SECRET_PREVIOUS", "ENDPOINT_SECRET_PREVIOUS")
COMPANY_ID_NAMES = ("UNIQUE_AUTH_COMPANY_ID", "COMPANY_ID")
USER_ID_NAMES = ("UNIQUE_AUTH_USER_ID", "USER_ID")
PLATFORM_URL_NAMES = ("UNIQUE_API_BASE_URL", "BASE_URL", "API_BASE")
MODULE_NAMES = ("UNIQUE_CHAT_EVENT_FILTER_OPTIONS_REFERENCES_IN_CODE", "MODULE_NAME")
ASSISTANT_IDS_NAMES = ("UNIQUE_CHAT_EVENT_FILTER_OPTIONS_ASSISTANT_IDS",)
API_TYPE_NAMES = ("UNIQUE_API_API_TYPE",)
API_TYPES = ("legacy", "next", "external", "internal")


@dataclass(frozen=True)
class AppConfig:
    """What the template wrote into the app's pyproject.toml ([tool.sdk_runtime]): this app's defaults."""

    module_name: str = ""
    local_port: int = 8080

    @classmethod
    def read(cls, path: Path = PYPROJECT) -> AppConfig:
        try:
            table = tomllib.loads(path.read_text(encoding="utf-8")).get("tool", {}).get("sdk_runtime", {})
        except FileNotFoundError:
            return cls()
        return cls(module_name=str(table.get("module_name", "")), local_port=int(table.get("local_port", 8080)))


@dataclass(frozen=True)
class RuntimeSettings:
    """Everything the runtime reads from the environment. Immutable, so safe to share between threads."""

    api_key: str = ""
    app_id: str = ""
    platform_url: str = DEFAULT_PLATFORM_URL
    api_path: str = ""  # written out in the settings; else inferred as the toolkit does
    api_type: str = "legacy"
    company_id: str = ""
    user_id: str = ""
    endpoint_secret: str = ""
    previous_endpoint_secret: str = ""  # while the secret is rotated: deliveries signed with it verify too
    module_names: tuple[str, ...] = ()  # empty: every module (the toolkit's rule)
    assistant_ids: tuple[str, ...] = ()  # empty: every assistant
    # Deployed: the production image sets ENCRYPTED_ENV_FILE; `flask run`, compose and tests do not.
    deployed: bool = False
    handler_threads: int = 128  # per worker; handlers mostly wait on the platform: threads are cheap
    handler_timeout: int = 20  # seconds one event may take before the runtime apologizes and completes it
    webhook_max_bytes: int = MIB
    webhook_max_age: int = 3600  # seconds a signed event stays acceptable (the platform's retries)
    delivered_ids_dir: str = ""  # shared by the gunicorn workers of a replica (set by gunicorn.conf.py)
    log_level: str = "INFO"
    local_port: int = 8080  # where `docker compose` and the Event Socket bridge reach the app locally
    storage: StorageSettings | None = None  # the event queue in Azure Storage (sdk_runtime/queueing.py)

    @classmethod
    def from_env(cls, env: Mapping[str, str], config: AppConfig | None = None) -> RuntimeSettings:
        config = config or AppConfig.read()
        modules = _names(env, MODULE_NAMES) or ((config.module_name,) if config.module_name else ())
        url = platform_url(first(env, PLATFORM_URL_NAMES) or DEFAULT_PLATFORM_URL)
        return cls(
            api_key=first(env, API_KEY_NAMES),
            app_id=first(env, APP_ID_NAMES),
            platform_url=url,
            api_path=explicit_api_path(url, env.get("API_BASE", "")),
            api_type=api_type(first(env, API_TYPE_NAMES)),
            company_id=first(env, COMPANY_ID_NAMES),
            user_id=first(env, USER_ID_NAMES),
            endpoint_secret=first(env, ENDPOINT_SECRET_NAMES),
            previous_endpoint_secret=first(env, PREVIOUS_SECRET_NAMES),
            module_names=modules,
            assistant_ids=_names(env, ASSISTANT_IDS_NAMES),
            deployed=bool(env.get("ENCRYPTED_ENV_FILE")),
            handler_threads=whole_number(env, "HANDLER_THREADS", 128, 1, 512),
            handler_timeout=whole_number(env, "HANDLER_TIMEOUT", 20, 1, 3600),
            webhook_max_bytes=whole_number(env, "WEBHOOK_MAX_BYTES", MIB, 1024, 64 * MIB),
            webhook_max_age=whole_number(env, "WEBHOOK_MAX_AGE", 3600, 300, 7 * 24 * 3600),
            delivered_ids_dir=env.get("WEBHOOK_DELIVERED_IDS_DIR", ""),
            log_level=(env.get("LOG_LEVEL") or "INFO").upper(),
            local_port=config.local_port,
            storage=StorageSettings.from_env(env),
        )

    @property
    def endpoint_secrets(self) -> tuple[str, ...]:
        """The secrets a delivery's signature may be made with: the current one, then the previous one."""
        return tuple(secret for secret in (self.endpoint_secret, self.previous_endpoint_secret) if secret)

    @property
    def api_base(self) -> str:
        """unique_sdk's api_base: the platform URL with the API's path, as unique_toolkit's
        UniqueApi.sdk_url() derives it (its `legacy` API type infers the path from the host)."""
        parts = urlsplit(self.platform_url)
        path = self.api_path or _api_path(self.api_type, parts.hostname, parts.port)
        return urlunsplit((parts.scheme, parts.netloc, path, "", ""))

    @property
    def stream_base(self) -> str:
        """Scheme and host of the Event Socket (the toolkit's UniqueApi.sse_url() keeps only these)."""
        parts = urlsplit(self.platform_url)
        return urlunsplit((parts.scheme, parts.netloc, "", "", ""))

    def __repr__(self) -> str:  # never print secrets, even in a traceback
        signed = "signed" if self.endpoint_secret else "unsigned"
        return f"RuntimeSettings(module_names={self.module_names!r}, {signed}, deployed={self.deployed})"


def load_settings(env_file: str = ".env") -> RuntimeSettings:
    """Settings from the process environment, completed by `env_file` if it exists (it never overrides)."""
    load_dotenv(env_file, override=False)
    return RuntimeSettings.from_env(os.environ)


def first(env: Mapping[str, str], names: tuple[str, ...]) -> str:
    """The value of the first of `names` set to a non-empty value."""
    return next((env[name].strip() for name in names if env.get(name, "").strip()), "")


def platform_url(value: str) -> str:
    """The platform URL as written (`gateway.<tenant>.unique.app`, as the docs write it, or with a scheme):
    https by default. (The toolkit reads a URL without a scheme as a path, and loses the host.)"""
    url = value.strip()
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(
            f"{PLATFORM_URL_NAMES[0]} (or BASE_URL, API_BASE) must be a host name or an http(s) URL, "
            f"e.g. https://gateway.<tenant>.unique.app; got {value!r}"
        )
    return urlunsplit((parts.scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def explicit_api_path(url: str, api_base: str) -> str:
    """The API path the settings write out: the platform URL's own, else API_BASE's on the same host."""
    path = urlsplit(url).path
    if path or not api_base.strip():
        return path
    given = urlsplit(platform_url(api_base))
    return given.path if given.netloc == urlsplit(url).netloc else ""


def api_type(value: str) -> str:
    """The toolkit's ApiType: how the API's path follows from the platform URL (default: legacy)."""
    kind = (value or "legacy").lower()
    if kind not in API_TYPES:
        raise ValueError(f"{API_TYPE_NAMES[0]} must be one of {', '.join(API_TYPES)}, got {value!r}")
    return kind


def _api_path(api_type: str, hostname: str | None, port: int | None) -> str:
    """unique_toolkit's UniqueApi.base_path(), reproduced: the API's path for an API type and host."""
    explicit = {"next": "/public/chat-gen2", "external": "/public/chat", "internal": "/public"}
    if api_type in explicit:
        return explicit[api_type]
    host = hostname or ""
    local = host in ("localhost", "127.0.0.1") or "localhost" in host
    if "unique-api" in host or (local and port == 8096):
        return ""
    if local or "svc.cluster.local" in host or ".svc." in host or host.endswith(".svc"):
        return "/public"
    if "gateway.qa.unique" in host or "gateway.unique" in host:
        return "/public/chat-gen2"
    return "/public/chat"


def _names(env: Mapping[str, str], names: tuple[str, ...]) -> tuple[str, ...]:
    """A list setting: JSON (`["a", "b"]`, as pydantic-settings reads the toolkit's) or comma-separated."""
    raw = first(env, names)
    if not raw:
        return ()
    if raw.startswith("["):
        try:
            values = json.loads(raw)
        except ValueError:
            raise ValueError(f"{names[0]} is not a JSON list of names: {raw[:80]!r}") from None
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ValueError(f"{names[0]} must be a JSON list of strings, got {raw[:80]!r}")
        return tuple(v.strip() for v in values if v.strip())
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def whole_number(env: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
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
