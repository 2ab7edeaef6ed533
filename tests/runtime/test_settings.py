"""The runtime's settings: the platform toolkit's names and the SDK's, one platform URL for the API and the
Event Socket (unique_toolkit/app/unique_settings.py, repository Unique-AG/ai; tests/test_toolkit.py runs the
toolkit itself on the same files)."""

from __future__ import annotations

import pytest
from sdk_runtime.settings import AppConfig, RuntimeSettings

NO_DEFAULTS = AppConfig()


def settings(**env: str) -> RuntimeSettings:
    return RuntimeSettings.from_env(env, NO_DEFAULTS)


def test_a_0_2_0_env_still_reaches_the_same_api_and_event_socket() -> None:
    """0.2.0's .env.example: API_BASE the full API base, BASE_URL the Event Socket host without a scheme."""
    old = settings(API_BASE="https://gateway.acme.unique.app/public/chat-gen2", BASE_URL="gateway.acme.unique.app")
    assert old.api_base == "https://gateway.acme.unique.app/public/chat-gen2"
    assert old.stream_base == "https://gateway.acme.unique.app"


@pytest.mark.parametrize(
    ("env", "api_base"),
    [
        ({"UNIQUE_API_BASE_URL": "https://gateway.unique.app"}, "https://gateway.unique.app/public/chat-gen2"),
        ({"UNIQUE_API_BASE_URL": "https://gateway.acme.unique.app"}, "https://gateway.acme.unique.app/public/chat"),
        (
            {"UNIQUE_API_BASE_URL": "gateway.acme.unique.app/public/chat-gen2"},
            "https://gateway.acme.unique.app/public/chat-gen2",
        ),
        ({"UNIQUE_API_BASE_URL": "http://localhost:8092"}, "http://localhost:8092/public"),
        ({"UNIQUE_API_BASE_URL": "http://localhost:8096"}, "http://localhost:8096"),
        (
            {"UNIQUE_API_BASE_URL": "https://x.example", "UNIQUE_API_API_TYPE": "next"},
            "https://x.example/public/chat-gen2",
        ),
    ],
    ids=["gateway", "tenant-gateway", "written-out-path", "local", "local-api", "api-type"],
)
def test_the_api_base_follows_from_the_platform_url(env: dict[str, str], api_base: str) -> None:
    assert settings(**env).api_base == api_base


def test_the_toolkits_names_win_over_the_sdks() -> None:
    both = settings(UNIQUE_APP_KEY="toolkit", API_KEY="sdk", UNIQUE_APP_ENDPOINT_SECRET="t", ENDPOINT_SECRET="s")
    assert (both.api_key, both.endpoint_secret) == ("toolkit", "t")


@pytest.mark.parametrize("raw", ['["a", "b c"]', "a, b c", "a,b c,"])
def test_module_names_are_a_json_or_comma_separated_list(raw: str) -> None:
    assert settings(UNIQUE_CHAT_EVENT_FILTER_OPTIONS_REFERENCES_IN_CODE=raw).module_names == ("a", "b c")


def test_the_module_name_defaults_to_the_apps_answer() -> None:
    assert RuntimeSettings.from_env({}, AppConfig(module_name="My Module")).module_names == ("My Module",)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"UNIQUE_API_API_TYPE": "v2"}, "UNIQUE_API_API_TYPE must be one of legacy, next, external, internal"),
        ({"UNIQUE_CHAT_EVENT_FILTER_OPTIONS_ASSISTANT_IDS": "[1, 2]"}, "must be a JSON list of strings"),
        ({"HANDLER_THREADS": "many"}, "HANDLER_THREADS must be a whole number"),
    ],
)
def test_a_wrong_setting_is_refused_with_what_is_allowed(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        settings(**env)


def test_secrets_stay_out_of_the_repr() -> None:
    text = repr(settings(UNIQUE_APP_KEY="sk-secret", UNIQUE_APP_ENDPOINT_SECRET="whsec"))
    assert "sk-secret" not in text
    assert "whsec" not in text
