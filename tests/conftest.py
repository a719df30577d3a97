"""Shared pytest setup: markers come from the folder a test lives in."""

from __future__ import annotations

from pathlib import Path

import pytest

_ROOT = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(_ROOT).parts
        if parts and parts[0] in ("unit", "integration"):
            item.add_marker(getattr(pytest.mark, parts[0]))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Name every process the tests started that is still running: a fixture failed to stop it."""
    from node.procs import running_children

    running = running_children()
    if running:
        terminalreporter.section("processes started by the tests and still running")
        for pid, argv in running.items():
            terminalreporter.write_line(f"pid {pid}: {' '.join(argv)}")
