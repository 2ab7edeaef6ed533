"""Events through an Azure Storage Queue (sdk_runtime/queueing.py), against the real emulator (Azurite):
acknowledged only once stored, run once across instances and restarts, and not lost when an instance is
killed mid-run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient
from sdk_runtime.dispatch import HandlerPool
from sdk_runtime.queueing import KEEP_DAYS, UNDATED, EventQueue, StorageSettings
from sdk_runtime.testing import FakePlatform, Recorded

from tools.azurite import Azurite

from ..conftest import APP
from .conftest import MODULE, SECRET, AppFactory, Recorder, event, post, reply_of, runtime_settings, signed
from .test_imports import python
from .test_server import free_port

QUEUE, TABLE = "joke-of-the-day-events", "jokeofthedaydeliveries"


def storage(azurite: Azurite) -> StorageSettings:
    return StorageSettings(connection_string=azurite.connection_string, queue=QUEUE, table=TABLE)


def test_without_storage_settings_there_is_no_queue() -> None:
    assert StorageSettings.from_env({}) is None
    assert runtime_settings().storage is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"AZURE_STORAGE_ACCOUNT": "Bad_Name"}, "AZURE_STORAGE_ACCOUNT must be a storage account name"),
        ({"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_CONNECTION_STRING": "x"}, "not both"),
        ({"AZURE_STORAGE_ACCOUNT": "acct", "EVENT_QUEUE": "Upper"}, "EVENT_QUEUE must be a queue name"),
        ({"AZURE_STORAGE_ACCOUNT": "acct", "EVENT_TABLE": "no-dash"}, "EVENT_TABLE must be a table name"),
    ],
)
def test_bad_storage_settings_say_what_is_allowed(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StorageSettings.from_env(env)


def test_queue_and_table_names_default_to_the_app_name() -> None:
    settings = StorageSettings.from_env({"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_CLIENT_ID": "id"})
    assert settings is not None
    assert settings.names("joke_of_the_day") == (QUEUE, TABLE)
    assert "key" not in repr(StorageSettings(connection_string="AccountKey=key"))


@pytest.mark.slow
def test_a_repeated_delivery_runs_once_across_instances_and_restarts(
    azurite: Azurite, make_app: AppFactory, recorder: Recorder
) -> None:
    settings = runtime_settings(storage=storage(azurite))
    first, second = (make_app(settings, recorder).test_client() for _ in range(2))
    data = event()
    body, headers = signed(data)
    assert post(first, body, headers).status_code == 202
    assert [e.id for e in recorder.wait_for(1)] == [data["id"]]
    third = make_app(settings, recorder).test_client()  # a restarted replica: only the table remembers
    for client in (second, third, first):
        response = post(client, body, headers)
        assert (response.status_code, reply_of(response)["status"]) == (202, "accepted")
    queue = QueueClient.from_connection_string(azurite.connection_string, QUEUE)
    deadline = time.monotonic() + 20
    while queue.get_queue_properties().approximate_message_count and time.monotonic() < deadline:
        time.sleep(0.2)
    assert queue.get_queue_properties().approximate_message_count == 0, "repeats are taken off the queue"
    assert [e.id for e in recorder.events] == [data["id"]], "the handler ran once"


@pytest.mark.slow
def test_an_event_is_acknowledged_only_once_stored(azurite: Azurite, make_app: AppFactory, recorder: Recorder) -> None:
    app = make_app(runtime_settings(storage=storage(azurite)), recorder)
    azurite.stop()  # storage unreachable: a 2xx would lose the event
    response = post(app.test_client(), *signed(event()))
    assert (response.status_code, response.headers["Retry-After"]) == (503, "10")
    assert "queue" in reply_of(response)["error"]


def test_without_storage_a_full_pool_still_answers_503(make_app: AppFactory) -> None:
    """Queue-less behaviour unchanged: the local pool's admission limit applies."""
    app = make_app(runtime_settings(handler_threads=1, handler_timeout=30), lambda _event: time.sleep(2))
    client = app.test_client()
    statuses = [post(client, *signed(event())).status_code for _ in range(3)]
    assert statuses == [202, 202, 503]  # one running, one waiting for the thread, then full


# ---- 500 events, two gunicorn instances, one killed with SIGKILL mid-run --------------------------------------

PACKAGE = """
from sdk_runtime import wsgi_app_attribute

__getattr__ = wsgi_app_attribute(__name__)
"""
HANDLER = """
import os
import time


def handle(chat, settings):
    time.sleep(float(os.environ["MODEL_SECONDS"]))  # a model call
    chat.complete(f"An answer to {chat.user_text}")
"""


@pytest.fixture
def queued_app(tmp_path: Path) -> str:
    """A team's package whose handler waits like a model call, then answers."""
    folder = tmp_path / "packages" / "queued_app"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(textwrap.dedent(PACKAGE))
    (folder / "handler.py").write_text(textwrap.dedent(HANDLER))
    return str(folder.parent)


@pytest.fixture
def instances(monorepo: Path) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_instance(app_folder: Path, env: dict[str, str], log: Path) -> tuple[subprocess.Popen[str], int]:
    """gunicorn with the rendered app's config, in its own process group (so all its processes can be killed),
    logging into `log` (a pipe nobody reads would block it)."""
    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py"]
    with log.open("w") as output:
        process = subprocess.Popen(
            command,
            cwd=app_folder,
            env={**env, "PORT": str(port)},
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
            return process, port
        except OSError:
            time.sleep(0.1)
    raise AssertionError("gunicorn did not serve /health")


def chat_event(number: int) -> dict[str, Any]:
    """An event whose assistant message is its own, so its completions can be counted."""
    data = event(text=f"question {number}")
    data["payload"]["assistantMessage"]["id"] = f"msg_assistant_{number}"
    return data


def deliver(port: int, data: dict[str, Any]) -> int:
    body, headers = signed(data)
    request = urllib.request.Request(f"http://127.0.0.1:{port}/webhook", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        return error.code


def completions(platform: FakePlatform) -> Counter[str]:
    """How often each assistant message was completed."""
    return Counter(
        call.path.rsplit("/", 1)[-1]
        for call in platform.api_calls()
        if call.method == "PATCH" and _completes(call) and "/messages/msg_assistant_" in call.path
    )


def _completes(call: Recorded) -> bool:
    return isinstance(call.body, dict) and bool(call.body.get("completedAt"))


def held_by(table: TableClient, group: int, messages: dict[str, str]) -> set[str]:
    """The assistant messages of the events the processes of one instance (its process group) are handling."""
    held = set()
    for entity in table.query_entities("State eq 'running'"):
        pid = int(str(entity["Owner"]).rsplit(":", 1)[1])
        try:
            if os.getpgid(pid) == group:
                held.add(messages[str(entity["EventId"])])
        except ProcessLookupError:
            continue
    return held


def kill_while_only_waiting(
    process: subprocess.Popen[str], table: TableClient, platform: FakePlatform, messages: dict[str, str]
) -> int:
    """SIGKILL an instance once it handles events, at a moment its handlers are all inside the model call,
    not in the few milliseconds between completing a message and recording it done (where no store can
    know whether the chat got its answer). Frozen with SIGSTOP to look; returns how many events it held."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not held_by(table, process.pid, messages):
        time.sleep(0.05)
    for _ in range(100):
        os.killpg(process.pid, signal.SIGSTOP)
        time.sleep(0.3)  # requests already sent reach the platform
        held = held_by(table, process.pid, messages)
        if held and not held & set(completions(platform)):
            os.killpg(process.pid, signal.SIGKILL)
            return len(held)
        os.killpg(process.pid, signal.SIGCONT)
        time.sleep(random.uniform(0.05, 0.3))
    raise AssertionError("no moment found where the instance held events and none was being recorded")


@pytest.mark.slow
def test_500_events_two_instances_one_killed_every_event_answered_once(
    azurite: Azurite, monorepo: Path, queued_app: str, instances: list[subprocess.Popen[str]], tmp_path: Path
) -> None:
    events = [chat_event(number) for number in range(500)]
    messages = {data["id"]: data["payload"]["assistantMessage"]["id"] for data in events}
    with FakePlatform() as platform:
        env = {
            **{k: v for k, v in os.environ.items() if k != "ENCRYPTED_ENV_FILE"},
            "PYTHONPATH": queued_app,
            "MODULE": "queued_app",
            "HOST": "127.0.0.1",
            "UNIQUE_APP_KEY": "key_1",
            "UNIQUE_APP_ID": "app_1",
            "UNIQUE_AUTH_COMPANY_ID": "company_1",
            "UNIQUE_API_BASE_URL": platform.url,
            "ENDPOINT_SECRET": SECRET,
            "MODULE_NAME": MODULE,
            "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
            "EVENT_QUEUE": QUEUE,
            "EVENT_TABLE": TABLE,
            "HANDLER_TIMEOUT": "3",  # a killed instance's messages come back after 3 + 10 s
            "MODEL_SECONDS": "0.5",
        }
        survivor, survivor_port = start_instance(monorepo / APP, env, tmp_path / "survivor.log")
        victim, victim_port = start_instance(monorepo / APP, env, tmp_path / "victim.log")
        instances.extend([survivor, victim])
        table = TableClient.from_connection_string(azurite.connection_string, TABLE)
        queue = QueueClient.from_connection_string(azurite.connection_string, QUEUE)

        with ThreadPoolExecutor(16) as senders:  # the first half to both instances, as a load balancer would
            first = list(senders.map(lambda i: deliver((survivor_port, victim_port)[i % 2], events[i]), range(250)))
        held = kill_while_only_waiting(victim, table, platform, messages)
        with ThreadPoolExecutor(16) as senders:  # the second half to the survivor
            second = list(senders.map(lambda data: deliver(survivor_port, data), events[250:]))

        assert first + second == [202] * 500
        assert held > 0, "the killed instance was handling events"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and (
            len(completions(platform)) < 500 or queue.get_queue_properties().approximate_message_count
        ):
            time.sleep(0.5)
        counts = completions(platform)
    missing = [f"msg_assistant_{n}" for n in range(500) if f"msg_assistant_{n}" not in counts]
    twice = {message: count for message, count in counts.items() if count > 1}
    assert not missing, f"{len(missing)} events lost: {missing[:5]}"
    assert not twice, f"answered more than once: {twice}"
    assert survivor.poll() is None


def test_without_storage_settings_the_azure_sdk_is_not_even_imported(monorepo: Path) -> None:
    """Apps that do not use the queue start as fast as before: the SDK loads only when configured."""
    env = {name: "" for name in ("AZURE_STORAGE_ACCOUNT", "AZURE_STORAGE_CONNECTION_STRING")}
    code = f"import sys, {APP}\n{APP}.app\nprint(sorted(m for m in sys.modules if m.startswith('azure')))\n"
    result = python(monorepo / APP, code, ENDPOINT_SECRET="s", **env)
    assert (result.returncode, result.stdout) == (0, "[]\n"), result.stderr


def test_in_azure_the_app_reaches_its_account_with_the_managed_identity() -> None:
    """No key in the env file: the account's endpoints, signed in as the container app's identity."""
    from azure.identity import ManagedIdentityCredential
    from sdk_runtime.queueing import clients

    settings = StorageSettings.from_env({"AZURE_STORAGE_ACCOUNT": "bankchats", "AZURE_CLIENT_ID": "client-1"})
    assert settings is not None
    queue, table = clients(settings, "joke_of_the_day")
    assert queue.url == f"https://bankchats.queue.core.windows.net/{QUEUE}"
    assert (table.url, table.table_name) == ("https://bankchats.table.core.windows.net", TABLE)
    assert isinstance(queue.credential, ManagedIdentityCredential)
    assert isinstance(table.credential, ManagedIdentityCredential)


@pytest.mark.slow
def test_the_hourly_sweep_keeps_recent_records_of_events_without_a_creation_date(azurite: Azurite) -> None:
    """Records of done deliveries are removed KEEP_DAYS after their event's day; an event without createdAt
    has no day, and its record is kept as long (by when it was written), so a late repeat still runs once."""
    queue = QueueClient.from_connection_string(azurite.connection_string, QUEUE)
    table = TableClient.from_connection_string(azurite.connection_string, TABLE)
    table.create_table()
    today = datetime.now(UTC).strftime("%Y%m%d")
    long_ago = (datetime.now(UTC) - timedelta(days=KEEP_DAYS + 1)).strftime("%Y%m%d")
    for day in (UNDATED, today, long_ago):
        table.create_entity({"PartitionKey": day, "RowKey": "a" * 64, "State": "done"})
    pool = HandlerPool(threads=1, handler_timeout=5)
    EventQueue(lambda: (queue, table), pool, lambda _event: None, handler_timeout=5)._sweep()
    assert sorted(e["PartitionKey"] for e in table.list_entities()) == sorted([UNDATED, today])
