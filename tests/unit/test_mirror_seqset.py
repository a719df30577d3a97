"""SeqSet behaves like a set of ints, stored as sorted, disjoint, non-touching runs."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mirror.seqset import SeqSet


def _in_runs(runs: list[tuple[int, int]]) -> list[int]:
    return [seq for first, length in runs for seq in range(first, min(first + length, 201))]


# Scattered seqs, and seqs in runs (like a camera's), so that bounds often fall inside a run.
seq_lists = st.one_of(
    st.lists(st.integers(min_value=0, max_value=200), max_size=120),
    st.lists(st.tuples(st.integers(min_value=0, max_value=200), st.integers(min_value=1, max_value=20)))
    .map(_in_runs)
    .flatmap(st.permutations),
)
bounds = st.integers(min_value=-5, max_value=205)


def grouped(values: set[int]) -> list[tuple[int, int]]:
    """Sorted ints grouped into inclusive runs of consecutive values."""
    runs: list[tuple[int, int]] = []
    for value in sorted(values):
        if runs and runs[-1][1] == value - 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def check_matches(seqs: SeqSet, model: set[int]) -> None:
    assert list(seqs) == sorted(model)
    assert len(seqs) == len(model)
    assert seqs.lowest == min(model, default=None)
    assert seqs.highest == max(model, default=None)
    for probe in range(-2, 203):
        assert (probe in seqs) == (probe in model), probe
    runs = seqs.runs()
    assert all(first <= last for first, last in runs)
    # Disjoint, sorted and not touching: the next run starts at least 2 past the previous end.
    assert all(b_first > a_last + 1 for (_, a_last), (b_first, _) in pairwise(runs))
    assert runs == grouped(model)


@given(seq_lists)
@settings(max_examples=200, deadline=None)
def test_add_matches_set_semantics(values: list[int]) -> None:
    seqs = SeqSet()
    model: set[int] = set()
    for value in values:
        assert seqs.add(value) is (value not in model), f"add({value}) with {sorted(model)}"
        model.add(value)
    check_matches(seqs, model)
    assert list(SeqSet(values)) == sorted(model)


@given(seq_lists, bounds, bounds)
@settings(max_examples=200, deadline=None)
def test_missing_is_the_complement_in_range(values: list[int], first: int, last: int) -> None:
    seqs = SeqSet(values)
    expected = grouped({n for n in range(first, last + 1) if n not in set(values)})
    assert seqs.missing(first, last) == expected


@given(seq_lists, st.lists(st.integers(min_value=-2, max_value=202), max_size=40))
@settings(max_examples=200, deadline=None)
def test_discard_matches_set_semantics(values: list[int], removals: list[int]) -> None:
    seqs = SeqSet(values)
    model = set(values)
    for value in removals:
        seqs.discard(value)
        model.discard(value)
        check_matches(seqs, model)


@given(seq_lists, bounds)
@settings(max_examples=200, deadline=None)
def test_discard_below_matches_set_semantics(values: list[int], floor: int) -> None:
    seqs = SeqSet(values)
    seqs.discard_below(floor)
    check_matches(seqs, {v for v in values if v >= floor})


@pytest.mark.parametrize(
    ("values", "first", "last", "holes"),
    [
        pytest.param([], 0, 3, [(0, 3)], id="empty-set"),
        pytest.param([], 5, 4, [], id="empty-range"),
        pytest.param([3, 4, 5], 3, 5, [], id="exactly-covered"),
        pytest.param([3, 4, 5], 0, 9, [(0, 2), (6, 9)], id="both-sides"),
        pytest.param([1, 2, 5, 6, 9], 2, 8, [(3, 4), (7, 8)], id="starts-inside-run"),
        pytest.param([1, 2, 5, 6, 9], 7, 7, [(7, 7)], id="single-hole"),
        pytest.param([10, 11], 0, 5, [(0, 5)], id="range-below-all-runs"),
        pytest.param([0, 1], 5, 8, [(5, 8)], id="range-above-all-runs"),
    ],
)
def test_missing_table(values: list[int], first: int, last: int, holes: list[tuple[int, int]]) -> None:
    assert SeqSet(values).missing(first, last) == holes


def test_add_merges_and_discard_splits_runs() -> None:
    seqs = SeqSet([1, 3])
    assert seqs.runs() == [(1, 1), (3, 3)]
    assert seqs.add(2) is True
    assert seqs.runs() == [(1, 3)], "a seq between two runs joins them"
    assert seqs.add(2) is False
    seqs.discard(2)
    assert seqs.runs() == [(1, 1), (3, 3)]
    seqs.discard(7)
    assert seqs.runs() == [(1, 1), (3, 3)], "discarding an absent seq changes nothing"
    seqs.discard_below(3)
    assert seqs.runs() == [(3, 3)]
    seqs.discard(3)
    assert (seqs.runs(), seqs.lowest, seqs.highest, len(seqs)) == ([], None, None, 0)


def test_contains_only_ints() -> None:
    seqs = SeqSet([1, 2])
    assert "1" not in seqs
    assert None not in seqs
    assert 1 in seqs
