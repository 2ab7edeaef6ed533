"""The Event Socket bridge against the fake platform's stream and the real app, both on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import pytest
from sdk_runtime.event_socket import STREAM_PATH, Backoff, Bridge, stream_url
from sdk_runtime.events import EXTERNAL_MODULE_CHOSEN, USER_MESSAGE_CREATED
from sdk_runtime.settings import RuntimeSettings, platform_url
from sdk_runtime.testing import FakePlatform, Stream

from .conftest import MODULE, SECRET, Recorder, event

BASE = 0.2  # seconds: the first failure waits 0.1 to 0.2 s, the second 0.2 to 0.4 s
RunBridge = Callable[[Bridge], None]


def message(data: dict[str, object], event_id: str) -> tuple[str, str | None]:
    return json.dumps(data), event_id


def bridge_settings(platform: FakePlatform) -> RuntimeSettings:
    return RuntimeSettings(
        api_key="key_1",
        app_id="app_1",
        company_id="company_1",
        user_id="user_1",
        platform_url=platform.url,
        endpoint_secret=SECRET,
        module_names=(MODULE,),
    )


@pytest.fixture
def run_bridge() -> Iterator[RunBridge]:
    """Starts bridges on threads; stops them, and checks they stopped, when the test ends."""
    running: list[tuple[threading.Event, threading.Thread]] = []

    def start(bridge: Bridge) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=bridge.run, args=(stop,), daemon=True)
        thread.start()
        running.append((stop, thread))

    yield start
    for stop, _ in running:
        stop.set()
    for _, thread in running:
        thread.join(10)
        assert not thread.is_alive(), "the bridge did not stop when asked"


def test_events_arrive_once_each_and_a_closed_or_idle_stream_is_reopened_at_once(
    platform: FakePlatform, webhook_url: str, recorder: Recorder, run_bridge: RunBridge
) -> None:
    first, second, third, other = event(), event(), event(), event(module="someone_else")
    platform.streams = [
        Stream([message(first, "1"), message(second, "2")]),  # then the server closes it
        Stream(status=503),
        Stream([("{not json", "3"), message(third, "4"), message(other, "5")], then="idle"),
    ]
    bridge = Bridge(
        bridge_settings(platform), target=webhook_url, module_filter=[MODULE], read_timeout=0.5, backoff=Backoff(BASE)
    )
    run_bridge(bridge)

    handled = recorder.wait_for(3, timeout=15)
    connections = [r for r in platform.wait_for(4, timeout=15, api_only=False) if r.path == STREAM_PATH]
    assert sorted(e.id for e in handled) == sorted(e["id"] for e in (first, second, third))
    assert bridge.waits[0] == 0.0  # closed by the server after events: reopened at once
    assert BASE / 2 <= bridge.waits[1] <= BASE  # the 503: a failed connection waits
    assert bridge.waits[2] == 0.0  # idle after events: reopened at once, the failure count reset
    assert [c.headers.get("last-event-id") for c in connections[:4]] == [None, "2", "2", "5"]


def test_backoff_grows_only_for_failures_and_resets_after_a_good_connection(
    platform: FakePlatform, webhook_url: str, run_bridge: RunBridge
) -> None:
    platform.streams = [
        Stream(status=503),
        Stream(status=503),
        Stream(then="idle"),  # open and quiet for longer than the read timeout: a good connection
        Stream(),  # opened and closed at once, with nothing: counts as a failure (no hot loop)
    ]
    bridge = Bridge(bridge_settings(platform), target=webhook_url, read_timeout=1.5, backoff=Backoff(BASE))
    run_bridge(bridge)
    platform.wait_for(5, timeout=20, api_only=False)
    first, second, after_idle, after_instant_close = bridge.waits[:4]
    assert BASE / 2 <= first <= BASE
    assert BASE <= second <= 2 * BASE
    assert after_idle == 0.0
    assert BASE / 2 <= after_instant_close <= BASE


def test_the_stream_is_requested_as_the_platform_expects(
    platform: FakePlatform, webhook_url: str, run_bridge: RunBridge
) -> None:
    subscriptions = [EXTERNAL_MODULE_CHOSEN, USER_MESSAGE_CREATED]
    bridge = Bridge(bridge_settings(platform), target=webhook_url, subscriptions=subscriptions, read_timeout=1)
    run_bridge(bridge)
    connection = platform.wait_for(1, api_only=False)[0]
    assert connection.path == STREAM_PATH
    assert connection.target.endswith(
        f"?subscriptions={EXTERNAL_MODULE_CHOSEN},{USER_MESSAGE_CREATED}"
    )  # literal comma
    assert connection.headers["authorization"] == "Bearer key_1"
    assert connection.headers["x-app-id"] == "app_1"
    assert connection.headers["x-company-id"] == "company_1"
    assert connection.headers["x-user-id"] == "user_1"  # unique_toolkit sends these two as well
    assert connection.headers["x-api-version"] == "2023-12-06"
    assert "last-event-id" not in connection.headers


def test_the_assistant_filter_forwards_only_that_assistants_events(
    platform: FakePlatform, webhook_url: str, recorder: Recorder, run_bridge: RunBridge
) -> None:
    theirs, mine = event(), event()
    mine["payload"]["assistantId"] = "assistant_mine"
    platform.streams = [Stream([message(theirs, "1"), message(mine, "2")], then="idle")]
    bridge = Bridge(bridge_settings(platform), target=webhook_url, assistant_filter=["assistant_mine"], read_timeout=1)
    run_bridge(bridge)
    assert [e.id for e in recorder.wait_for(1)] == [mine["id"]]
    assert [e.id for e in recorder.wait_for(2, timeout=0.5)] == [mine["id"]]


@pytest.mark.parametrize(
    ("given", "used"),
    [
        ("gateway.acme.unique.app", "https://gateway.acme.unique.app"),  # as the platform's docs write it
        ("https://gateway.acme.unique.app/", "https://gateway.acme.unique.app"),
        ("https://gateway.acme.unique.app/public/chat-gen2", "https://gateway.acme.unique.app"),  # an API base
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ],
)
def test_the_stream_is_the_platform_urls_host_and_https_by_default(given: str, used: str) -> None:
    settings = RuntimeSettings(platform_url=platform_url(given))
    assert settings.stream_base == used
    assert stream_url(settings.stream_base, [EXTERNAL_MODULE_CHOSEN]).startswith(f"{used}{STREAM_PATH}?subscriptions=")


@pytest.mark.parametrize("given", ["ftp://gateway.acme.unique.app", "https://", "wss://gateway.acme.unique.app"])
def test_a_platform_url_that_cannot_work_is_refused_at_start(given: str) -> None:
    with pytest.raises(
        ValueError, match=r"UNIQUE_API_BASE_URL \(or BASE_URL, API_BASE\) must be a host name or an http"
    ):
        RuntimeSettings.from_env({"UNIQUE_API_BASE_URL": given})


def test_the_bridge_refuses_to_start_without_its_settings() -> None:
    with pytest.raises(ValueError, match=r"UNIQUE_APP_KEY \(or API_KEY\), UNIQUE_APP_ID \(or APP_ID\), UNIQUE_AUTH"):
        Bridge(RuntimeSettings())
    with pytest.raises(ValueError, match=r"^UNIQUE_APP_KEY \(or API_KEY\) not set"):
        Bridge(RuntimeSettings(app_id="a", company_id="c"))


def test_backoff_is_capped_and_jittered() -> None:
    backoff = Backoff(base=1.0, cap=8.0)
    delays = [backoff.delay(failures) for failures in range(1, 50) for _ in range(5)]
    assert all(0.5 <= d <= 8.0 for d in delays)
    assert all(4.0 <= backoff.delay(30) <= 8.0 for _ in range(20))
    assert len({round(d, 6) for d in delays}) > 10
