"""Scheduling of several prefills per step: the prompt-token budget is shared fairly by up to
`max_prefills` prefilling requests, so a burst of short prompts behind a long one reaches its first
token at once, decoding never waits, and every output stays the model's exact greedy choice."""
import pytest
import torch

from llamaops.platform.model import KVCache
from llamaops.platform.serve import Engine, Request, SamplingParams
from llamaops.platform.serve.engine import fair_shares

GREEDY = SamplingParams(max_tokens=6, temperature=0)
LONG = list(range(300, 500))  # 200 tokens
SHORTS = [[11, 12, 13, 14, 15, 16], [21, 22, 23], [31, 32, 33, 34]]


@pytest.mark.parametrize(("needs", "budget", "shares"), [
    ([100, 5, 5], 32, [22, 5, 5]),  # what the short ones do not need goes to the long one
    ([10, 10, 10], 10, [4, 3, 3]),
    ([3], 10, [3]),
    ([50, 50], 7, [4, 3]),
    ([], 10, []),
])
def test_fair_shares(needs, budget, shares):
    assert fair_shares(needs, budget) == shares


def steps_to_first_token(engine: Engine, requests: list[Request]) -> list[int]:
    steps, first = 0, {}
    while engine.busy:
        engine.step()
        steps += 1
        for r in requests:
            if r.generated and r.id not in first:
                first[r.id] = steps
    return [first[r.id] for r in requests]


@pytest.mark.parametrize("max_prefills", [1, 4])
def test_a_burst_of_short_prompts_behind_a_long_one(small_model, tokenizer, greedy_reference, max_prefills):
    engine = Engine(small_model, tokenizer, max_batch=8, prefill_chunk=32, max_prefills=max_prefills)
    requests = [engine.submit(Request(p, GREEDY)) for p in [LONG, *SHORTS]]
    steps = steps_to_first_token(engine, requests)
    if max_prefills == 1:  # one prefill at a time: the short prompts wait for all 200 long tokens
        assert min(steps[1:]) >= 200 // 32
    else:  # shared budget: all three short prompts get their first token in the first step
        assert steps[1:] == [1, 1, 1] and steps[0] == 7  # 32 - 13 = 19 long tokens in step 1, 32 after
    for prompt, request in zip([LONG, *SHORTS], requests):
        assert request.generated == greedy_reference(prompt, 6)


def test_decoding_never_waits_for_a_burst_of_prefills(small_model, tokenizer, greedy_reference):
    engine = Engine(small_model, tokenizer, max_batch=8, prefill_chunk=16, max_prefills=3)
    running = engine.submit(Request([3, 4], SamplingParams(max_tokens=20, temperature=0)))
    engine.step()
    before = len(running.generated)
    burst = [engine.submit(Request(p, GREEDY)) for p in [LONG, LONG[:40], *SHORTS]]
    for step in range(1, 6):
        engine.step()
        assert len(running.generated) == before + step  # one token every step, whatever prefills
    engine.run_until_idle()
    assert running.generated == greedy_reference([3, 4], 20)
    for prompt, request in zip([LONG, LONG[:40], *SHORTS], burst):
        assert request.generated == greedy_reference(prompt, 6)


def test_leaving_and_cancelling_while_several_prompts_prefill_keeps_every_cache_row(
    small_model, tokenizer, greedy_reference
):
    # Requests that finish at once (max_tokens 1) and a cancelled prefill move cache rows around
    # the prefill slots; every survivor must still continue from its own keys and values.
    engine = Engine(small_model, tokenizer, max_batch=6, prefill_chunk=12, max_prefills=3)
    one = SamplingParams(max_tokens=1, temperature=0)
    decoding = [engine.submit(Request(p, SamplingParams(max_tokens=15, temperature=0))) for p in SHORTS[:2]]
    engine.step()
    quick = engine.submit(Request(SHORTS[2], one))
    long = engine.submit(Request(LONG[:50], GREEDY))
    doomed = engine.submit(Request(LONG[50:90], GREEDY))
    middle = engine.submit(Request(LONG[100:130], GREEDY))
    engine.step()
    engine.step()
    assert doomed in engine.prefilling
    assert_rows_hold_their_requests(engine)
    engine.cancel(doomed)
    engine.run_until_idle()
    assert doomed.finish_reason == "cancelled" and quick.finish_reason == "length"
    assert quick.generated == greedy_reference(SHORTS[2], 1)
    for prompt, request in zip(SHORTS[:2], decoding):
        assert request.generated == greedy_reference(prompt, 15)
    assert long.generated == greedy_reference(LONG[:50], 6)
    assert middle.generated == greedy_reference(LONG[100:130], 6)


def assert_rows_hold_their_requests(engine: Engine) -> None:
    """Every cache row holds the keys and values of the request the engine thinks is there."""
    slots = [*engine.decoding, *engine.prefilling]
    for slot, request in enumerate(slots):
        tokens = [*request.prompt, *request.generated][: request.cursor if request in engine.prefilling else request.length - 1]
        alone = KVCache.allocate(engine.model.cfg, 1, engine.max_seq_len)
        with torch.no_grad():
            engine.model(torch.tensor([tokens]), positions=torch.arange(len(tokens)).unsqueeze(0), cache=alone)
        n = len(tokens)
        torch.testing.assert_close(engine.kv.cache.keys[:, slot, :, :n], alone.keys[:, 0, :, :n], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(engine.kv.cache.values[:, slot, :, :n], alone.values[:, 0, :, :n], rtol=1e-4, atol=1e-5)


def test_rows_of_partly_prefilled_prompts_move_with_them(small_model, tokenizer, greedy_reference):
    engine = Engine(small_model, tokenizer, max_batch=6, prefill_chunk=8, max_prefills=3)
    leaving = engine.submit(Request([3, 4], SamplingParams(max_tokens=3, temperature=0)))
    engine.step()
    prompts = {id(p): p for p in (LONG[:40], LONG[50:90], LONG[100:140])}
    prefills = [engine.submit(Request(p, GREEDY)) for p in prompts.values()]
    engine.step()  # 8 prompt tokens shared 3/3/2; `leaving` finishes: the last prefill fills its row
    assert leaving.finish_reason == "length" and not engine.decoding
    assert [r.cursor for r in engine.prefilling] == [2, 3, 3]  # the moved one first
    assert_rows_hold_their_requests(engine)
    doomed = engine.prefilling[1]
    engine.cancel(doomed)  # the last prefill moves into the cancelled one's row
    engine.step()
    assert_rows_hold_their_requests(engine)
    engine.run_until_idle()
    assert leaving.generated == greedy_reference([3, 4], 3)
    for request in prefills:
        if request is doomed:
            assert request.finish_reason == "cancelled"
        else:
            assert request.generated == greedy_reference(list(request.prompt), 6)
