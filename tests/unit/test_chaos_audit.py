"""The chaos audit's tie from a file ffmpeg wrote to its catalog document, through the journal."""

from __future__ import annotations

from typing import Any

import pytest

from node.devnet.chaos import Audit, _catalogued
from producer.outbox import Journaled

PLAIN, CIPHER = "aa" * 32, "bb" * 32


def _entry(published: str | None) -> Journaled:
    return Journaled("f/cam1", "20261121T000000Z", "seg-000003.ts", 3, PLAIN, published)


@pytest.mark.parametrize(
    ("entry", "file_digest", "catalogued", "found", "problem"),
    [
        (None, PLAIN, CIPHER, False, None),  # not journaled yet: missing, no problem
        (_entry(CIPHER), PLAIN, None, False, None),  # journaled, not catalogued yet
        (_entry(CIPHER), PLAIN, CIPHER, True, None),  # encrypted: the catalog has the ciphertext's hash
        (_entry(PLAIN), PLAIN, PLAIN, True, None),  # plaintext: the file's own hash
        (_entry(CIPHER), PLAIN, PLAIN, True, "seq 3 catalogued with another hash"),
        (_entry(CIPHER), "cc" * 32, CIPHER, True, "seg-000003.ts journaled with another hash"),
    ],
)
def test_a_written_file_is_found_through_its_journal_entry(
    entry: Journaled | None, file_digest: str, catalogued: str | None, found: bool, problem: str | None
) -> None:
    by_seq: dict[int, dict[str, Any]] = {} if catalogued is None else {3: {"seq": 3, "sha256": catalogued}}
    result = Audit()
    doc = _catalogued(entry, file_digest, by_seq, result)
    assert (doc is not None) == found
    assert result.problems == ([] if problem is None else [f"f/cam1: {problem}"])
