"""The app reads the platform toolkit's setting names as the toolkit does (issue: one `.env` for both).

unique-toolkit is installed, as a team would add it, into a Python 3.12 environment beside the app's own
dependencies (its current releases need 3.12+); from the same `.env`, its `UniqueSettings` (repository
Unique-AG/ai, unique_toolkit/app/unique_settings.py) and the app's runtime settings must agree on every
value they share: credentials, the SDK's API base, the Event Socket's stream and the event filter.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tools.base_images import local_python

from .conftest import APP, AgeKey, answers, render

pytestmark = pytest.mark.slow

TOOLKIT = "unique-toolkit==2026.44.2"  # the newest release on PyPI in December 2026
HERE = Path(__file__).resolve().parent

ENV_FILES = {
    "toolkit-names": (
        "UNIQUE_API_BASE_URL=https://gateway.acme.unique.app\nUNIQUE_APP_KEY=key_t\nUNIQUE_APP_ID=app_t\n"
        "UNIQUE_APP_ENDPOINT_SECRET=secret_t\nUNIQUE_AUTH_COMPANY_ID=company_t\nUNIQUE_AUTH_USER_ID=user_t\n"
        'UNIQUE_CHAT_EVENT_FILTER_OPTIONS_REFERENCES_IN_CODE=["module-a", "module-b"]\n'
        'UNIQUE_CHAT_EVENT_FILTER_OPTIONS_ASSISTANT_IDS=["assistant_1"]\n'
    ),
    "sdk-names": (
        "API_KEY=key_s\nAPP_ID=app_s\nENDPOINT_SECRET=secret_s\nCOMPANY_ID=company_s\n"
        "API_BASE=https://gateway.unique.app/public/chat-gen2\n"
    ),
    "base-url-wins-over-api-base": (
        "BASE_URL=https://gateway.unique.app\nAPI_BASE=https://other.example.com/public/chat\nAPI_KEY=k\n"
    ),
    "toolkit-name-wins": (
        "UNIQUE_APP_KEY=the_toolkits\nAPI_KEY=the_sdks\nUNIQUE_API_BASE_URL=https://api.bank.example\n"
        "BASE_URL=https://gateway.unique.app\n"
    ),
    "explicit-api-type": "UNIQUE_API_BASE_URL=https://gateway.acme.unique.app\nUNIQUE_API_API_TYPE=next\n",
    "local-platform": "UNIQUE_API_BASE_URL=http://localhost:8092\n",
}


@pytest.fixture(scope="module")
def toolkit_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    prefix, _version = local_python("3.12")  # unique-toolkit's current releases need Python 3.12+
    venv = tmp_path_factory.mktemp("toolkit") / "venv"
    subprocess.run([str(prefix / "bin" / "python3.12"), "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, TOOLKIT, "python-dotenv", "httpx", "httpx-sse"], check=True, capture_output=True)
    return venv / "bin" / "python"


@pytest.mark.parametrize("case", ENV_FILES)
def test_the_toolkit_and_the_app_read_one_env_alike(
    toolkit_python: Path, tmp_path: Path, age_key: AgeKey, case: str
) -> None:
    app = render(tmp_path / "repo", answers(age_key, python_version="3.12")) / APP
    env_file = app / ".env"
    env_file.write_text(ENV_FILES[case])
    result = subprocess.run(
        [str(toolkit_python), str(HERE / "toolkit_agreement.py"), str(app), str(env_file)],
        cwd=app,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    views = json.loads(result.stdout.splitlines()[-1])
    toolkit, runtime = views["toolkit"], views["runtime"]
    if not any(name in ENV_FILES[case] for name in ("REFERENCES_IN_CODE", "ASSISTANT_IDS")):
        del toolkit["module_names"], toolkit["assistant_ids"], runtime["module_names"], runtime["assistant_ids"]
    shared = {key for key in toolkit if toolkit[key] not in ("", None) and not str(toolkit[key]).startswith("dummy")}
    assert {key: runtime[key] for key in shared} == {key: toolkit[key] for key in shared}, sys.version
