"""Where a new request's prompt prefix comes from, and whether moving it beats reading it again.

A slot about to serve a prompt may already hold part of it (`own`: free). Another slot may hold
more (a *donor*), and so may an entry of the host-RAM prompt cache. Taking those tokens is not
free, and this module weighs what each source costs in bytes moved against the prefill time the
tokens it adds would have taken (pure functions; the runner does the llama.cpp calls and feeds
`Rates` what it measures).

How cells move, and what that costs:
- `stream`: `llama_memory_seq_cp` into another KV stream copies the *whole* stream, every layer's
  n_ctx cells whatever the sequence holds (llama.cpp's `update`, at the start of the next decode).
  Its cost grows with n_ctx, not with the prefix: sharing the chat template's first few tokens
  with another slot this way costs more than reading them (figures in docs/benchmarks.md). In
  one shared pool (`kv_unified`) the same call only marks cells: free. On a GPU it is a device
  copy (`DEVICE_BYTES_PER_S`).
- `state`: `llama_state_seq_get_data` + `set_data` move the donor's own cells only, twice (out to
  a host buffer and back in): twice the donor's state, which grows with its tokens.
- `cache`: a prompt-cache entry moves once (`set_data`).

`choose` takes the source whose extra tokens save the most time net of its copy, or none.
"""

from __future__ import annotations

from dataclasses import dataclass

DEVICE_BYTES_PER_S = 100e9   # a copy within GPU memory (any discrete GPU or Apple silicon: more)
HOST_BYTES_PER_S = 4e9       # host memory copies, until the runner has timed some
PREFILL_S_PER_TOKEN = {False: 1e-3, True: 1e-4}  # until measured, by "on a GPU"
MIN_PREFILL_SAMPLE = 16      # prompt pieces shorter than this say little about prefill speed
MIN_COPY_SAMPLE = 1 << 20    # copies smaller than this say little about bandwidth
_WEIGHT = 0.3                # of a new measurement in the running estimate


@dataclass(frozen=True)
class Source:
    kind: str           # "stream", "state" or "cache"
    tokens: int         # prompt tokens the slot holds after taking them
    bytes_moved: int    # bytes copied to get them
    bytes_per_s: float  # how fast those copies go

    def seconds(self) -> float:
        return self.bytes_moved / self.bytes_per_s if self.bytes_moved else 0.0


def choose(own: int, sources: list[Source], prefill_s_per_token: float) -> Source | None:
    """The source worth the most prefill time beyond the slot's own `own` tokens, net of its
    copy; None when no source saves more than it costs."""
    best, best_gain = None, 0.0
    for s in sources:
        gain = (s.tokens - own) * prefill_s_per_token - s.seconds()
        if s.tokens > own and gain > best_gain:
            best, best_gain = s, gain
    return best


class Rates:
    """Running estimates of prefill time per prompt token and host copy bandwidth."""

    def __init__(self, on_gpu: bool):
        self.on_gpu = on_gpu
        self.prefill_s_per_token = PREFILL_S_PER_TOKEN[on_gpu]
        self.host_bytes_per_s = HOST_BYTES_PER_S
        self.prefill_measured = False

    @property
    def stream_bytes_per_s(self) -> float:
        """Whole-stream copies: device memory on a GPU, a memcpy in host memory on the CPU."""
        return DEVICE_BYTES_PER_S if self.on_gpu else self.host_bytes_per_s

    def prefilled(self, tokens: int, seconds: float) -> None:
        if tokens < MIN_PREFILL_SAMPLE or seconds <= 0:
            return
        value = seconds / tokens
        self.prefill_s_per_token = value if not self.prefill_measured else _mix(self.prefill_s_per_token, value)
        self.prefill_measured = True

    def copied(self, nbytes: int, seconds: float) -> None:
        if nbytes < MIN_COPY_SAMPLE or seconds <= 0:
            return
        self.host_bytes_per_s = _mix(self.host_bytes_per_s, nbytes / seconds)


def _mix(old: float, new: float) -> float:
    return (1 - _WEIGHT) * old + _WEIGHT * new
