"""YOUR TESTS: what your handler does with a chat message. `copier update` never touches this file.

`harness` (from sdk_runtime's pytest plugin) serves your app behind its real, signed webhook and
answers its platform calls with a fake platform on loopback: `harness.deliver(event)` returns what the
chat got (`delivery.calls`, `delivery.streamed`, `delivery.completed`, `delivery.text`).
These first tests hold for any handler; add your own below (README.md, "Testing your handler").
"""

from __future__ import annotations

from sdk_runtime.testing import Harness


def test_a_chat_message_is_acknowledged_and_ends_completed(harness: Harness) -> None:
    delivery = harness.deliver(harness.event(text="Hello"))
    assert delivery.status == 202, delivery.reply
    assert delivery.completed  # the user's chat input is free again, whatever the handler did


def test_a_repeated_delivery_is_answered_once(harness: Harness) -> None:
    event = harness.event()
    first, repeat = harness.deliver(event), harness.deliver(event)
    assert (first.status, repeat.status) == (202, 200)
    assert repeat.calls == []
