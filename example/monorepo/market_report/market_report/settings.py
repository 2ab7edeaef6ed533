"""YOUR SETTINGS: what your handler reads from the environment. `copier update` never touches this file.

Read once when the app starts, from the environment: the decrypted env file when deployed, the app
folder's `.env` locally. Add a field and a line in `from_env` for each setting; document it in
`.env.example`. The platform's settings (API key, endpoint secret, ...) are the runtime's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant. Answer briefly."


@dataclass(frozen=True)
class Settings:
    """Immutable, so safe to share between the threads that run handlers."""

    system_prompt: str = DEFAULT_SYSTEM_PROMPT

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        return cls(system_prompt=env.get("SYSTEM_PROMPT") or DEFAULT_SYSTEM_PROMPT)
