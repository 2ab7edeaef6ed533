"""Enables sdk_runtime's pytest fixtures (harness, platform) for the app's tests. Template-owned."""

pytest_plugins = ["sdk_runtime.pytest_plugin"]
