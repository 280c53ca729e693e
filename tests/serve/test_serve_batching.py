"""The request queue of gradtune serve: requests that arrive together are one model call (at most
max_batch inputs, never mixing settings), a bad request gets its own error while the others of its
batch get their results, and the event loop stays free while the model works. Also the stop-string
cut of a streamed text."""

from __future__ import annotations

import asyncio
import time

import pytest

pytest.importorskip("fastapi")

from gradtune.serve.batching import Batcher  # noqa: E402
from gradtune.serve.served_model import StopCut  # noqa: E402


class Model:
    """A stand-in for the model thread's work: records each call's inputs, doubles them."""

    def __init__(self, seconds: float = 0.0):
        self.calls: list[list] = []
        self.seconds = seconds

    def run(self, items: list) -> list:
        self.calls.append(list(items))
        time.sleep(self.seconds)
        if "bad" in items:
            raise ValueError("bad input")
        return [item * 2 for item in items]


async def submit_all(batcher: Batcher, jobs: list[tuple], run) -> list:
    batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(key, items, run) for key, items in jobs), return_exceptions=True)
    finally:
        await batcher.stop()


def test_requests_that_arrive_together_are_one_model_call_and_each_gets_its_share():
    model = Model()
    results = asyncio.run(submit_all(Batcher(max_batch=32, max_wait=0.05), [("k", ["a"]), ("k", ["b", "c"]),
                                                                          ("k", ["d"])], model.run))
    assert model.calls == [["a", "b", "c", "d"]]
    assert results == [["aa"], ["bb", "cc"], ["dd"]]


@pytest.mark.parametrize("max_batch, sizes", [(8, [8, 8, 4]), (1, [1] * 20)])
def test_a_model_call_takes_at_most_max_batch_inputs(max_batch, sizes):
    model = Model()
    results = asyncio.run(submit_all(Batcher(max_batch=max_batch, max_wait=0.05),
                                     [("k", [str(i)]) for i in range(20)], model.run))
    assert [len(c) for c in model.calls] == sizes
    assert results == [[str(i) * 2] for i in range(20)]


def test_a_lone_clients_requests_do_not_wait_for_company():
    async def one_after_another() -> float:
        batcher, model = Batcher(max_wait=1.0), Model()
        batcher.start()
        started = time.perf_counter()
        for item in "abc":
            assert await batcher.submit("k", [item], model.run) == [item * 2]
        elapsed = time.perf_counter() - started
        await batcher.stop()
        return elapsed

    assert asyncio.run(one_after_another()) < 0.5  # not 3 x the 1 s wait


def test_requests_with_other_settings_are_never_in_one_call():
    model = Model()
    asyncio.run(submit_all(Batcher(max_wait=0.05), [("greedy", ["a"]), ("sampled", ["b"]), ("greedy", ["c"])],
                           model.run))
    assert sorted(model.calls) == [["a", "c"], ["b"]]


def test_a_bad_request_gets_its_error_and_the_others_of_its_batch_their_results():
    model = Model()
    results = asyncio.run(submit_all(Batcher(max_wait=0.05), [("k", ["a"]), ("k", ["bad"]), ("k", ["c"])],
                                     model.run))
    assert results[0] == ["aa"] and results[2] == ["cc"]
    assert isinstance(results[1], ValueError)
    assert model.calls[0] == ["a", "bad", "c"]  # tried together first, then each alone


def test_the_event_loop_answers_while_the_model_works():
    async def main() -> tuple[int, list]:
        batcher, ticks = Batcher(max_wait=0.0), 0
        batcher.start()
        job = asyncio.ensure_future(batcher.submit("k", ["a"], Model(seconds=0.5).run))
        while not job.done():
            ticks += 1
            await asyncio.sleep(0.01)
        await batcher.stop()
        return ticks, job.result()

    ticks, result = asyncio.run(main())
    assert result == ["aa"]
    assert ticks > 20  # the loop ran other work all through the model's half second


def test_a_stream_is_cut_at_the_first_stop_string_even_across_pieces():
    cut = StopCut(("END",))
    shown = "".join(cut.add(p) for p in ["Hello wo", "rld E", "N", "D and more", " text"])
    assert shown == "Hello world "
    plain = StopCut(())
    assert "".join(plain.add(p) for p in ["a", "b c", " d"]) == "ab c d"
