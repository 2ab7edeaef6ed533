"""Print, as JSON, what unique_toolkit's settings and the app runtime's settings read from one `.env`.

    <python with unique-toolkit> tests/toolkit_agreement.py <app folder> <env file>

Run by tests/test_toolkit.py in a Python 3.12 environment holding unique-toolkit and the app's
dependencies; the app folder's `sdk_runtime` is imported from that folder, as the app imports it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from dotenv import dotenv_values


def toolkit_view(env_file: Path) -> dict[str, object]:
    from unique_toolkit.app.unique_settings import UniqueSettings

    settings = UniqueSettings.from_env(env_file=env_file)
    options = settings.chat_event_filter_options
    return {
        "api_key": settings.app.key.get_secret_value(),
        "app_id": settings.app.id.get_secret_value(),
        "endpoint_secret": settings.app.endpoint_secret.get_secret_value(),
        "company_id": settings.authcontext.get_confidential_company_id(),
        "user_id": settings.authcontext.get_confidential_user_id(),
        "api_base": settings.api.sdk_url().rstrip("/"),
        "stream": settings.api.sse_url(["unique.chat.external-module.chosen"]),
        "module_names": list(options.references_in_code) if options else [],
        "assistant_ids": list(options.assistant_ids) if options else [],
    }


def runtime_view(app_folder: Path, env_file: Path) -> dict[str, object]:
    sys.path.insert(0, str(app_folder))
    from sdk_runtime.event_socket import stream_url
    from sdk_runtime.settings import AppConfig, RuntimeSettings

    values = {k: v for k, v in dotenv_values(env_file).items() if v is not None}
    settings = RuntimeSettings.from_env(values, AppConfig())  # no pyproject default: the .env alone
    return {
        "api_key": settings.api_key,
        "app_id": settings.app_id,
        "endpoint_secret": settings.endpoint_secret,
        "company_id": settings.company_id,
        "user_id": settings.user_id,
        "api_base": settings.api_base,
        "stream": stream_url(settings.stream_base, ["unique.chat.external-module.chosen"]),
        "module_names": list(settings.module_names),
        "assistant_ids": list(settings.assistant_ids),
    }


def main() -> None:
    app_folder, env_file = Path(sys.argv[1]), Path(sys.argv[2])
    for name in [n for n in os.environ if n.upper().startswith(("UNIQUE_", "API_", "APP_", "BASE_", "COMPANY_"))]:
        del os.environ[name]  # the file alone decides
    print(json.dumps({"toolkit": toolkit_view(env_file), "runtime": runtime_view(app_folder, env_file)}))


if __name__ == "__main__":
    main()
