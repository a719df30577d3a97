"""Real daemons for integration tests: one devnet per session, started and stopped here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from node.devnet import network


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def devnet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    """A devnet with a producer, two mirrors and one camera; its status dict."""
    directory: Path = tmp_path_factory.mktemp("devnet")
    await network.up(directory, mirrors=2, cameras=1)
    try:
        yield network.status(directory)
    finally:
        results = await network.down(directory)
        assert all(outcome in ("stopped", "gone") for outcome in results.values()), results
