"""The host-RAM prompt cache's bookkeeping (the llama.cpp calls are exercised by test_slots)."""

import numpy as np

from localgw.engine.prompt_cache import PromptCache, as_tokens, common_prefix


def test_common_prefix():
    assert common_prefix(as_tokens([1, 2, 3]), as_tokens([1, 2, 4])) == 2
    assert common_prefix(as_tokens([1, 2]), as_tokens([1, 2, 3])) == 2
    assert common_prefix(as_tokens([]), as_tokens([1])) == 0
    assert common_prefix(as_tokens([5]), as_tokens([1])) == 0


def test_best_entry_is_the_longest_shared_prefix():
    cache = PromptCache(capacity=1000)
    cache.put(as_tokens([1, 2, 3, 4]), b"a" * 10)
    cache.put(as_tokens([1, 2, 9, 9, 9]), b"b" * 10)
    entry, n = cache.best(as_tokens([1, 2, 3, 4, 5, 6]))
    assert entry.data == b"a" * 10 and n == 4
    entry, n = cache.best(as_tokens([7]))
    assert entry is None and n == 0


def test_lru_by_bytes_and_touch():
    cache = PromptCache(capacity=25)
    a, b, c = as_tokens([1]), as_tokens([2]), as_tokens([3])
    cache.put(a, b"x" * 10)
    cache.put(b, b"y" * 10)
    cache.touch(cache.best(a)[0])           # a is now the most recently used
    cache.put(c, b"z" * 10)                 # over 25 bytes: b (least recent) goes
    assert cache.best(b)[0] is None and cache.best(a)[0] is not None
    assert cache.stats.evictions == 1 and cache.bytes == 20


def test_a_longer_conversation_supersedes_its_prefix_and_big_entries_are_refused():
    cache = PromptCache(capacity=100)
    cache.put(as_tokens([1, 2, 3]), b"a" * 10)
    cache.put(as_tokens([1, 2, 3, 4, 5]), b"b" * 10)
    assert len(cache.entries) == 1 and cache.covers(as_tokens([1, 2, 3, 4]))
    assert not cache.put(as_tokens([9]), b"c" * 101)
    assert not PromptCache(capacity=0).put(as_tokens([1]), b"d")
    assert cache.describe()["entries"] == 1 and isinstance(cache.best(np.array([1]))[1], int)


def test_readers_on_other_threads_see_counters_while_the_loop_edits():
    """/health and /metrics describe the cache from the event loop while the engine thread puts
    and evicts: they never iterate the entries, and the byte count is the entries' sum."""
    import threading

    cache = PromptCache(capacity=5000)
    rng = np.random.default_rng(0)
    done = threading.Event()
    errors = []

    def read():
        while not done.is_set():
            try:
                described = cache.describe()
                assert 0 <= described["bytes"] <= cache.capacity
            except Exception as exc:  # noqa: BLE001 - collected for the assertion below
                errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    for _ in range(3000):
        cache.put(as_tokens(rng.integers(0, 50, rng.integers(1, 6))), b"z" * int(rng.integers(1, 900)))
    done.set()
    reader.join()
    assert not errors
    assert cache.bytes == sum(e.size for e in cache.entries.values())


def test_an_unloaded_model_keeps_no_saved_state():
    """A runner's close clears its cache, then returns the freed C heap to the system."""
    from localgw.engine.memory import release_freed_memory

    cache = PromptCache(capacity=100)
    cache.put(as_tokens([1, 2]), b"x" * 40)
    cache.clear()
    assert cache.bytes == 0 and cache.best(as_tokens([1, 2]))[0] is None
    assert release_freed_memory() is True  # glibc, as on the machines CI runs on
