"""Gunicorn configuration: how the production image (and `poetry run gunicorn`) serves this app.

The shared Dockerfile's ENTRYPOINT runs this app's start program (sdk_runtime/start.py): it decrypts
the app's settings into the environment, then runs `gunicorn --config gunicorn.conf.py` in this folder.
"""

from __future__ import annotations

import os
import tempfile

# ---- Serving: this app's own settings (environment variables override them) ---------------
wsgi_app = f"{os.environ.get('MODULE', 'market_report')}:{os.environ.get('APP_NAME', 'app')}"
bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '8080')}"
# gthread that hands a thread only complete requests, so slow clients cannot starve /health; it
# closes connections that do not send a whole request within GUNICORN_READ_TIMEOUT s (default 10),
# and at worker_connections (1000) its oldest idle one, so a connection flood cannot either.
worker_class = "sdk_runtime.server.BufferingWorker"
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))  # workers x threads requests at once
timeout = 60  # a worker whose event loop stalls this long is restarted
# Azure sends SIGTERM and kills the container 30 s later. Within this, requests in flight finish, the
# events acknowledged run on, and those still unanswered near the end get an apology (no chat left blocked).
graceful_timeout = 25
keepalive = 5
# Worker heartbeat files in memory, not on the container's overlay filesystem.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
accesslog = "-"
# One line per request, with the request id the app's own log lines carry (the platform's delivery id).
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms request_id=%({x-request-id}o)s'
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
control_socket_disable = True  # no runtime control socket: the image's user has no home, and nothing uses it

_DELIVERED_IDS = "WEBHOOK_DELIVERED_IDS_DIR"


def on_starting(server: object) -> None:
    """One directory of delivered event ids for all workers, so a repeated delivery runs once per replica.
    A fixed path per app and user: a restarted server still refuses a replay within WEBHOOK_MAX_AGE
    (a restarted container starts with an empty /dev/shm: Azure Storage mode remembers across those)."""
    if not os.environ.get(_DELIVERED_IDS):
        app = os.environ.get("MODULE", "market_report")
        where = worker_tmp_dir or tempfile.gettempdir()
        os.environ[_DELIVERED_IDS] = os.path.join(where, f"delivered-ids-{app}-{os.getuid()}")
    # The runtime, unique_sdk and its HTTP client load here, once, before the port opens: the workers
    # inherit them, so a fresh replica's first events do not wait for imports (nor its TCP probe pass early).
    from sdk_runtime.answering import prepare_sdk

    prepare_sdk()
