"""Choosing where a prompt's prefix comes from: bytes moved against prefill time saved."""

from localgw.engine.reuse import (DEVICE_BYTES_PER_S, HOST_BYTES_PER_S, MIN_COPY_SAMPLE,
                                  MIN_PREFILL_SAMPLE, Rates, Source, choose)

MB = 1_000_000


def test_a_whole_stream_copy_for_the_templates_first_tokens_is_not_worth_it():
    # SmolLM2 on the CPU: 5 shared tokens (25 ms of prefill) against 188 MB moved (~41 ms)
    stream = Source("stream", 5, 188 * MB, 4.6e9)
    assert choose(0, [stream], prefill_s_per_token=5e-3) is None


def test_the_donors_own_cells_are_cheaper_than_its_whole_stream():
    stream = Source("stream", 500, 188 * MB, 4.6e9)
    state = Source("state", 500, 2 * 12 * MB, 4.6e9)
    assert choose(0, [stream, state], prefill_s_per_token=5e-3) is state


def test_on_a_gpu_a_device_copy_beats_two_trips_through_host_memory():
    stream = Source("stream", 2000, 470 * MB, DEVICE_BYTES_PER_S)
    state = Source("state", 2000, 2 * 115 * MB, 12e9)
    assert choose(0, [stream, state], prefill_s_per_token=2e-4) is stream


def test_only_tokens_beyond_the_slots_own_count():
    cache = Source("cache", 300, 7 * MB, HOST_BYTES_PER_S)
    assert choose(300, [cache], prefill_s_per_token=5e-3) is None  # adds nothing
    # one more token saves 1 ms of prefill; restoring 7 MB takes 1.75 ms
    assert choose(299, [cache], prefill_s_per_token=1e-3) is None
    assert choose(290, [cache], prefill_s_per_token=1e-3) is cache


def test_the_most_time_saved_net_of_its_copy_wins():
    long_but_costly = Source("cache", 1000, 4000 * MB, HOST_BYTES_PER_S)  # 1 s to save 4.5 s
    short_and_cheap = Source("state", 900, 2 * MB, HOST_BYTES_PER_S)      # ~0 s to save 4.5 s
    assert choose(0, [long_but_costly, short_and_cheap], prefill_s_per_token=5e-3) is short_and_cheap


def test_a_shared_pool_copy_moves_nothing_and_any_gain_takes_it():
    shared = Source("stream", 3, 0, 1.0)
    assert shared.seconds() == 0 and choose(1, [shared], prefill_s_per_token=1e-6) is shared


def test_rates_learn_from_large_enough_samples_only():
    rates = Rates(on_gpu=False)
    assert rates.stream_bytes_per_s == rates.host_bytes_per_s == HOST_BYTES_PER_S
    rates.prefilled(MIN_PREFILL_SAMPLE - 1, 1.0)  # too short a piece to say anything
    assert not rates.prefill_measured
    rates.prefilled(512, 2.56)
    assert rates.prefill_measured and abs(rates.prefill_s_per_token - 5e-3) < 1e-12
    rates.prefilled(512, 5.12)  # a running estimate: moves toward the new figure, not onto it
    assert 5e-3 < rates.prefill_s_per_token < 10e-3
    rates.copied(MIN_COPY_SAMPLE // 2, 1.0)
    assert rates.host_bytes_per_s == HOST_BYTES_PER_S
    rates.copied(100 * MB, 0.01)
    assert HOST_BYTES_PER_S < rates.host_bytes_per_s < 10e9
    assert Rates(on_gpu=True).stream_bytes_per_s == DEVICE_BYTES_PER_S
