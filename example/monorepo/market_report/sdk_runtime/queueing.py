"""Events that outlive a replica: an Azure Storage Queue between /webhook and the handlers.

Off unless configured. With AZURE_STORAGE_ACCOUNT (in Azure) or AZURE_STORAGE_CONNECTION_STRING
(locally, e.g. Azurite), the app:
- writes each verified event to a Storage Queue before it answers 202 (a failed write answers 503,
  so the platform retries), instead of handing it to this process's pool;
- in every worker of every replica, takes messages from that queue as handler threads become free
  (HANDLER_THREADS), so a burst waits in the queue rather than meeting 503. A message is invisible to
  the others for HANDLER_TIMEOUT + VISIBILITY_MARGIN s; if its replica dies, it comes back after that;
- keeps one entity per delivery id in a Storage Table (insert-if-absent): `running` with a lease while
  a replica handles it, `done` after. A delivery runs once across replicas and restarts; one whose
  replica died while handling it is taken over once its lease has expired. (A replica killed between
  completing the chat message and recording `done`, a few milliseconds, makes it run again.)

Authentication: a connection string when set (local development: Azurite's documented account);
otherwise the container app's managed identity (azure-identity's ManagedIdentityCredential; set
AZURE_CLIENT_ID for a user-assigned identity), which needs the roles "Storage Queue Data Contributor"
and "Storage Table Data Contributor" on the account. The Azure SDK is imported only when configured.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .dispatch import HandlerPool
from .events import Event, InvalidEvent, parse_event

if TYPE_CHECKING:
    from azure.data.tables import TableClient
    from azure.storage.queue import QueueClient, QueueMessage

logger = logging.getLogger(__name__)

VISIBILITY_MARGIN = 10  # seconds beyond HANDLER_TIMEOUT before a taken message is visible again
LEASE_MARGIN = 5  # a lease ends this much before the message reappears, so its next reader may take it over
MAX_DEQUEUES = 5  # a message taken this often without being done (crash loop) is dropped and logged
MAX_MESSAGE_CHARS = 64 * 1024 - 1024  # Azure's 64 KiB per message, less room for the XML envelope
MAX_WAIT = 2.0  # seconds between polls of an empty queue (an event enqueued here wakes its worker at once)
READY_WAIT = 10.0  # seconds an event waits for a starting worker's queue before /webhook answers 503
KEEP_DAYS = 2  # delivery records older than this (by the event's creation day) are removed
UNDATED = "00000000"  # the partition of events without createdAt
TIMEOUTS = {"connection_timeout": 5, "read_timeout": 20}  # seconds, per storage request
COMPRESSED = "z:"  # prefix of a message holding a zlib-compressed, base64-encoded body
ACCOUNT_NAME = re.compile(r"[a-z0-9]{3,24}")
QUEUE_NAME = re.compile(r"[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]")
TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9]{2,62}")


@dataclass(frozen=True)
class StorageSettings:
    """Where the queue and the delivery table live, from the environment (None: not configured)."""

    account: str = ""  # AZURE_STORAGE_ACCOUNT: the account name, reached with the managed identity
    connection_string: str = ""  # AZURE_STORAGE_CONNECTION_STRING: local development (Azurite)
    client_id: str = ""  # AZURE_CLIENT_ID: a user-assigned managed identity's client id
    queue: str = ""  # EVENT_QUEUE, default <app-name>-events
    table: str = ""  # EVENT_TABLE, default <appname>deliveries

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StorageSettings | None:
        account = env.get("AZURE_STORAGE_ACCOUNT", "").strip()
        connection_string = env.get("AZURE_STORAGE_CONNECTION_STRING", "").strip()
        if not account and not connection_string:
            return None
        if account and connection_string:
            raise ValueError(
                "set AZURE_STORAGE_ACCOUNT (in Azure, with the managed identity) or AZURE_STORAGE_CONNECTION_STRING "
                "(locally), not both"
            )
        if account and not ACCOUNT_NAME.fullmatch(account):
            raise ValueError(
                f"AZURE_STORAGE_ACCOUNT must be a storage account name (3-24 lower-case letters and digits), "
                f"got {account!r}"
            )
        queue, table = env.get("EVENT_QUEUE", "").strip(), env.get("EVENT_TABLE", "").strip()
        if queue:
            _check_queue_name(queue, "EVENT_QUEUE")
        if table:
            _check_table_name(table, "EVENT_TABLE")
        return cls(account, connection_string, env.get("AZURE_CLIENT_ID", "").strip(), queue, table)

    def names(self, app_name: str) -> tuple[str, str]:
        """The queue's and the table's names: as set, or derived from the app's name."""
        queue = self.queue or f"{app_name.replace('_', '-')}-events"
        table = self.table or f"{re.sub('[^A-Za-z0-9]', '', app_name)}deliveries"
        _check_queue_name(queue, "EVENT_QUEUE (derived from the app name)")
        _check_table_name(table, "EVENT_TABLE (derived from the app name)")
        return queue, table

    def __repr__(self) -> str:  # a connection string holds a key: never print it
        where = f"account={self.account!r}" if self.account else "connection string"
        return f"StorageSettings({where}, queue={self.queue!r}, table={self.table!r})"


def _check_queue_name(name: str, setting: str) -> None:
    if not QUEUE_NAME.fullmatch(name):
        raise ValueError(
            f"{setting} must be a queue name: 3-63 lower-case letters, digits and single hyphens, "
            f"starting and ending with a letter or digit; got {name!r}"
        )


def _check_table_name(name: str, setting: str) -> None:
    if not TABLE_NAME.fullmatch(name):
        raise ValueError(
            f"{setting} must be a table name: 3-63 letters and digits, starting with a letter; got {name!r}"
        )


def clients(settings: StorageSettings, app_name: str) -> tuple[QueueClient, TableClient]:
    """The queue and table clients (the Azure SDK is imported here, only when configured). Retries are
    short: /webhook waits for the queue, and the platform retries a 503 itself."""
    from azure.data.tables import TableClient
    from azure.storage.queue import ExponentialRetry, QueueClient

    queue_name, table_name = settings.names(app_name)
    queue_options: dict[str, Any] = {
        "retry_policy": ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=2),
        **TIMEOUTS,
    }
    table_options: dict[str, Any] = {"retry_total": 2, "retry_backoff_factor": 0.5, **TIMEOUTS}
    if settings.connection_string:
        queue = QueueClient.from_connection_string(settings.connection_string, queue_name, **queue_options)
        table = TableClient.from_connection_string(settings.connection_string, table_name, **table_options)
        return queue, table
    from azure.identity import ManagedIdentityCredential

    credential = ManagedIdentityCredential(client_id=settings.client_id or None)
    account = settings.account
    queue = QueueClient(f"https://{account}.queue.core.windows.net", queue_name, credential=credential, **queue_options)
    table = TableClient(f"https://{account}.table.core.windows.net", table_name, credential=credential, **table_options)
    return queue, table


class EventQueue:
    """One worker's side of the queue: `send` for /webhook, and a consumer thread feeding `pool`."""

    def __init__(
        self,
        connect: Callable[[], tuple[QueueClient, TableClient]],
        pool: HandlerPool,
        process: Callable[[Event], None],
        handler_timeout: float,
    ) -> None:
        self._connect = connect  # imports the Azure SDK: called on the consumer thread, so /health need not wait
        self._clients: tuple[QueueClient, TableClient] | None = None
        self._pool = pool
        self._process = process
        self.visibility = int(handler_timeout) + VISIBILITY_MARGIN
        self._free = threading.Semaphore(pool.threads)  # handler threads not running a queued event
        self._wake = threading.Event()
        self._started = False
        self._lock = threading.Lock()
        self._connecting = threading.Lock()
        self._ready = threading.Event()  # set once the queue and the table exist
        self._next_sweep = 0.0

    @property
    def _queue(self) -> QueueClient:
        return self._connected()[0]

    @property
    def _table(self) -> TableClient:
        return self._connected()[1]

    def _connected(self) -> tuple[QueueClient, TableClient]:
        with self._connecting:
            if self._clients is None:
                self._clients = self._connect()
            return self._clients

    def send(self, body: bytes) -> None:
        """Store a verified event's body in the queue (raises when it cannot: /webhook answers 503)."""
        self.start()
        if not self._ready.wait(READY_WAIT):
            raise RuntimeError(f"the event queue is not reachable yet (waited {READY_WAIT} s)")
        self._queue.send_message(_encode(body))
        self._wake.set()  # this worker takes it at once if it has a free thread

    def start(self) -> None:
        """Start the consumer thread once (in the gunicorn worker, after the fork)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._consume, name="event-queue", daemon=True).start()

    def _consume(self) -> None:
        self._create_queue_and_table()
        wait = 0.1
        while self._pool.accepting:
            self._free.acquire()
            free = 1 + _take_all(self._free)
            try:
                messages = list(self._queue.receive_messages(max_messages=free, visibility_timeout=self.visibility))
            except Exception:
                logger.exception("the event queue cannot be read; trying again")
                messages = []
            for _ in range(free - len(messages)):
                self._free.release()
            for message in messages:
                try:
                    self._take(message)
                except Exception:  # the table cannot be reached: the message comes back after its timeout
                    logger.exception("queued message %s not taken; retried after %d s", message.id, self.visibility)
                    self._free.release()
            if not messages:
                self._wake.wait(wait)
                self._wake.clear()
                wait = min(MAX_WAIT, wait * 2)
            else:
                wait = 0.1
            self._sweep()

    def _create_queue_and_table(self) -> None:
        """Create both if missing (the SDK loads here), retrying while storage cannot be reached."""
        while self._pool.accepting:
            try:
                queue, table = self._connected()
                _create_if_missing(queue.create_queue)
                _create_if_missing(table.create_table)
                self._ready.set()
                return
            except Exception:
                logger.exception("the event queue or its table cannot be reached or created; trying again in 5 s")
                time.sleep(5)

    def _take(self, message: QueueMessage) -> None:
        """Run one message's event on a free handler thread, unless it is done or taken elsewhere."""
        try:
            event = parse_event(_decode(message.content))
        except InvalidEvent as error:
            logger.error("queued message %s dropped: %s", message.id, error)
            self._delete(message)
            self._free.release()
            return
        if (message.dequeue_count or 0) > MAX_DEQUEUES:
            logger.error("event %s: dropped after %d attempts (its replica stopped each time)", event.id, MAX_DEQUEUES)
            self._delete(message)
            self._free.release()
            return
        claim = self._claim(event)
        if claim is None:  # done (a repeat: delete it) or running elsewhere (it comes back, then done)
            if self._is_done(event):
                self._delete(message)
            self._free.release()
            return
        if not self._pool.submit(event.id, lambda: self._run(event, message, claim)):
            self._release(claim)  # stopping: the message comes back after its visibility timeout
            self._free.release()

    def _run(self, event: Event, message: QueueMessage, claim: dict[str, Any]) -> None:
        try:
            self._process(event)
        except Exception:
            logger.exception("event %s: not handled; it is retried after %d s", event.id, self.visibility)
            self._release(claim)
            return
        finally:
            self._free.release()
            self._wake.set()
        self._record_done(claim)
        self._delete(message)

    def _claim(self, event: Event) -> dict[str, Any] | None:
        """Insert this delivery's entity as running (or take over an expired lease); None when not ours."""
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceExistsError
        from azure.data.tables import UpdateMode

        entity: dict[str, Any] = {
            **_keys(event),
            "EventId": event.id,
            "State": "running",
            "Owner": f"{socket.gethostname()}:{os.getpid()}",  # which replica and worker handles it
            "LeaseUntil": time.time() + self.visibility - LEASE_MARGIN,
        }
        try:
            self._table.create_entity(entity)
            return entity
        except ResourceExistsError:
            pass
        current = self._table.get_entity(entity["PartitionKey"], entity["RowKey"])
        if current.get("State") == "done" or float(current.get("LeaseUntil", 0)) > time.time():
            return None
        logger.warning("event %s: its replica stopped while handling it; handling it here", event.id)
        try:
            self._table.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=current.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except HttpResponseError:  # another replica took it over first
            return None
        return entity

    def _is_done(self, event: Event) -> bool:
        keys = _keys(event)
        try:
            return self._table.get_entity(keys["PartitionKey"], keys["RowKey"]).get("State") == "done"
        except Exception:
            return False

    def _record_done(self, claim: dict[str, Any]) -> None:
        from azure.data.tables import UpdateMode

        try:
            self._table.upsert_entity({**claim, "State": "done"}, mode=UpdateMode.REPLACE)
        except Exception:
            logger.exception("event %s: handled, but not recorded as done", claim["EventId"])

    def _release(self, claim: dict[str, Any]) -> None:
        try:
            self._table.delete_entity(claim["PartitionKey"], claim["RowKey"])
        except Exception:
            logger.exception("event %s: its claim could not be released; it expires", claim["EventId"])

    def _delete(self, message: QueueMessage) -> None:
        try:
            self._queue.delete_message(message)
        except Exception:  # e.g. its visibility timeout passed: the next reader finds it done
            logger.warning("queued message %s could not be deleted", message.id, exc_info=True)

    def _sweep(self) -> None:
        """Remove delivery records of events created more than KEEP_DAYS ago (hourly, per worker)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + 3600
        cutoff = datetime.now(UTC) - timedelta(days=KEEP_DAYS)
        # Dated records by their event's day; undated ones by when they were written (an undated event is
        # dated by its delivery, so its repeats come within the webhook's window of that).
        dated = "PartitionKey gt @undated and PartitionKey lt @day"
        undated = "PartitionKey eq @undated and Timestamp lt @cutoff"
        parameters = {"undated": UNDATED, "day": cutoff.strftime("%Y%m%d"), "cutoff": cutoff}
        try:
            for query in (dated, undated):
                old = self._table.query_entities(query, parameters=parameters, select=["PartitionKey", "RowKey"])
                for entity in old:
                    self._table.delete_entity(entity["PartitionKey"], entity["RowKey"])
        except Exception:
            logger.warning("old delivery records could not be removed; trying again in an hour", exc_info=True)


def _create_if_missing(create: Callable[[], object]) -> None:
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):
        create()


def _keys(event: Event) -> dict[str, str]:
    """The entity's keys: the event's creation day (stable across deliveries), and its id's hash."""
    day = event.created_at.strftime("%Y%m%d") if event.created_at else UNDATED
    return {"PartitionKey": day, "RowKey": hashlib.sha256(event.id.encode("utf-8", "replace")).hexdigest()}


def _take_all(semaphore: threading.Semaphore) -> int:
    taken = 0
    while taken < 31 and semaphore.acquire(blocking=False):  # at most 32 messages per receive
        taken += 1
    return taken


def _encode(body: bytes) -> str:
    text = body.decode("utf-8")
    if len(text) <= MAX_MESSAGE_CHARS:
        return text
    packed = COMPRESSED + base64.b64encode(zlib.compress(body, 9)).decode("ascii")
    if len(packed) > MAX_MESSAGE_CHARS:
        raise ValueError(f"the event is too large for a queue message, even compressed ({len(body)} bytes)")
    return packed


def _decode(content: str) -> bytes:
    if content.startswith(COMPRESSED):
        return zlib.decompress(base64.b64decode(content[len(COMPRESSED) :]))
    return content.encode("utf-8")
