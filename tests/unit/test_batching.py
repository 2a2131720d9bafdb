"""Repair batches bounded by bytes (dfsring.foundation.batching, issue 15 part 7)."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from dfsring.foundation import batching

sizes = st.lists(st.integers(min_value=0, max_value=5_000), max_size=60)


@given(sizes, st.integers(min_value=1, max_value=8_000), st.integers(min_value=1, max_value=20))
def test_batches_bound_bytes_and_count_and_keep_every_item_in_order(
        items: list[int], max_bytes: int, max_count: int) -> None:
    batches = list(batching.byte_batches(items, max_bytes=max_bytes, max_count=max_count,
                                         size=lambda n: n))
    assert [x for b in batches for x in b] == items
    for batch in batches:
        assert 1 <= len(batch) <= max_count
        assert sum(batch) <= max_bytes or len(batch) == 1  # an oversized item travels alone


@given(st.lists(st.binary(max_size=40), max_size=30), st.integers(min_value=1, max_value=200))
def test_a_reply_within_budget_is_a_prefix_of_at_least_one_record(
        values: list[bytes], max_bytes: int) -> None:
    records = [(b"k%d" % i, v) for i, v in enumerate(values)]
    got = batching.within_budget(records, max_bytes)
    assert got == records[:len(got)]
    assert len(got) >= min(1, len(records))
    assert sum(map(batching.record_size, got)) <= max_bytes or len(got) == 1


@given(st.lists(st.booleans(), max_size=40), st.integers(min_value=1, max_value=120))
def test_fetching_again_after_a_cut_reply_gets_every_present_key_and_ends(
        present: list[bool], max_bytes: int) -> None:
    """The fetch loop of dfsring.antientropy._pull against a peer that holds some of the keys
    and cuts its replies at max_bytes: every key it holds arrives once, in a bounded number
    of round trips."""
    asked = [b"key%03d" % i for i in range(len(present))]
    held = {k: b"v" * 30 for k, here in zip(asked, present, strict=True) if here}
    pending, got, calls = list(asked), [], 0
    while pending:
        calls += 1
        assert calls <= len(asked) + 1
        reply = batching.within_budget([(k, held[k]) for k in pending if k in held], max_bytes)
        got.extend(reply)
        pending = pending[batching.resume_after(pending, reply):]
    assert [k for k, _ in got] == [k for k in asked if k in held]


def test_a_reply_ending_in_a_key_not_asked_for_ends_the_fetch() -> None:
    assert batching.resume_after([b"a", b"b"], [(b"zz", b"")]) == 2
    assert batching.resume_after([b"a", b"b"], []) == 2


def test_sliced_work_yields_to_the_loop_between_slices() -> None:
    ticks: list[int] = []

    async def main() -> list[int]:
        async def ticker() -> None:
            for i in range(1_000):
                ticks.append(i)
                await asyncio.sleep(0)

        task = asyncio.create_task(ticker())
        clock = iter(range(1_000)).__next__  # every call is one "second" later: slice each item
        out = await batching.sliced(range(5), lambda x: x * 2, slice_s=0.5,
                                    clock=lambda: float(clock()))
        task.cancel()
        return out

    assert asyncio.run(main()) == [0, 2, 4, 6, 8]
    assert len(ticks) >= 4  # the other task ran between the items


class TooLarge(Exception):
    pass


@settings(deadline=None)  # an event loop per example
@given(st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=40),
       st.integers(min_value=100, max_value=1_000))
def test_a_batch_refused_as_too_large_arrives_in_halves(items: list[int], limit: int) -> None:
    """A receiver with a smaller body limit than the sender's budget gets every item, in
    order, each call within its limit."""
    received: list[list[int]] = []

    async def send(batch: list[int]) -> None:
        if sum(batch) > limit:
            raise TooLarge()
        received.append(batch)

    asyncio.run(batching.send_halving(items, send, lambda e: isinstance(e, TooLarge)))
    assert [x for b in received for x in b] == items
    assert all(sum(b) <= limit for b in received)


def test_a_single_item_refused_as_too_large_is_an_error_not_a_loop() -> None:
    async def send(batch: list[int]) -> None:
        raise TooLarge()

    try:
        asyncio.run(batching.send_halving([1], send, lambda e: isinstance(e, TooLarge)))
    except TooLarge:
        return
    raise AssertionError("a lone oversized item must fail")


def test_other_refusals_are_not_split() -> None:
    calls: list[list[int]] = []

    async def send(batch: list[int]) -> None:
        calls.append(batch)
        raise ValueError("stale ring")

    try:
        asyncio.run(batching.send_halving([1, 2, 3], send, lambda e: isinstance(e, TooLarge)))
    except ValueError:
        assert calls == [[1, 2, 3]]
        return
    raise AssertionError("expected the refusal to propagate")
