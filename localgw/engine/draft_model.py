"""The draft model: a small model of the target's vocabulary that proposes the next tokens.

`DraftModel` implements the `Drafter` protocol of engine.spec for the decode loop. It loads the
draft GGUF with a context of its own beside the target's: one KV stream per target slot, with the
same sequence ids, each of the target's per-slot size, and its own `Batch`. Everything runs on
the loop thread.

Each sequence remembers the tokens whose cells it holds (`held`). `propose` brings the sequences
of the tasks that want a draft up to their context (`slot.tokens + [pending]`): the longest
common prefix of what a sequence holds and the context stays, the rest of its cells go, and the
missing tokens but the last are decoded, every task's together, in chunks of the batch's size
and at most `catch_up` tokens a call (a task still behind after that gets no draft this time and
goes on catching up at its next call, so a long new prompt does not hold the loop up in one
call). Then the drafting itself, one decode call a token for all tasks at once: the first call
feeds every task's last context token, and each later one the tokens just drafted. A task's
draft is the draft model's greedy choice (the first largest logit, as the target's greedy
sampler) until it has its limit, or until the draft model's probability for its choice falls
below `p_min` (softmax over the whole row): an unsure guess costs the target a rejected row.
The last drafted token is not decoded: nothing would read its row.

So after `propose` a sequence holds its context and all of its draft but the last token; the
target keeps what it accepts, and the next `propose` finds the accepted prefix in the cells by
the common-prefix rule. `settle` has nothing to do, and `forget` keeps the cells: they are
checked against whatever context the slot has next (a new turn of the same conversation reuses
them). A decode that fails drops the state of the sequences in it, which start afresh.

A draft is only ever a guess, so it never fails a request: a task whose context does not fit the
draft (past its `n_ctx`, or a token the draft's vocabulary lacks) gets no draft, and no drafted
token lies outside the target's vocabulary.

The vocabularies must agree (`vocab_mismatch`, llama.cpp's rule in common/speculative.cpp): the
same vocabulary type, BOS (when it is added), EOS and EOT ids, sizes within
`VOCAB_SIZE_SLACK` (models of one family pad their embedding tables differently), and the same
text for every token from id `FIRST_CHECKED_ID` up to the smaller size. A draft that differs is
refused at load with a `ModelLoadError` that names both models and the first difference.
"""

from __future__ import annotations

import logging
import os

import llama_cpp
import numpy as np
from llama_cpp import _internals as internals

from localgw.engine.batch import Batch
from localgw.engine.decoding import LogitRows
from localgw.engine.llamalog import capture_buffers
from localgw.engine.model import Model
from localgw.engine.prompt_cache import as_tokens, common_prefix
from localgw.errors import ModelLoadError

log = logging.getLogger("localgw.engine")

P_MIN = 0.75                # least probability of a drafted token (llama.cpp's default)
DRAFT_BATCH = 512           # tokens per decode call of the draft context
CATCH_UP = 2048             # context tokens one `propose` decodes at most
VOCAB_SIZE_SLACK = 128      # as llama.cpp's SPEC_VOCAB_MAX_SIZE_DIFFERENCE
FIRST_CHECKED_ID = 5        # as llama.cpp's SPEC_VOCAB_CHECK_START_TOKEN_ID


def _name(llama) -> str:
    return os.path.basename(llama.path_model)


def _text(vocab, token: int) -> bytes:
    return llama_cpp.llama_vocab_get_text(vocab, token) or b""


def vocab_mismatch(target, draft) -> str | None:
    """What keeps `draft`'s vocabulary from being `target`'s (two llama_vocab pointers), in a
    few words; None when the draft may draft for the target."""
    facts = [("vocabulary type", llama_cpp.llama_vocab_type),
             ("adds BOS", llama_cpp.llama_vocab_get_add_bos),
             ("EOS id", llama_cpp.llama_vocab_eos), ("EOT id", llama_cpp.llama_vocab_eot)]
    if llama_cpp.llama_vocab_get_add_bos(target):
        facts.append(("BOS id", llama_cpp.llama_vocab_bos))
    for what, fact in facts:
        if fact(target) != fact(draft):
            return f"{what} {fact(target)} vs {fact(draft)}"
    n_target = llama_cpp.llama_vocab_n_tokens(target)
    n_draft = llama_cpp.llama_vocab_n_tokens(draft)
    if abs(n_target - n_draft) > VOCAB_SIZE_SLACK:
        return f"{n_target} tokens vs {n_draft}"
    for token in range(FIRST_CHECKED_ID, min(n_target, n_draft)):
        a, b = _text(target, token), _text(draft, token)
        if a != b:
            return f"token {token} is {a.decode('utf-8', 'replace')!r} vs " \
                   f"{b.decode('utf-8', 'replace')!r}"
    return None


def top_choice(row: np.ndarray) -> tuple[int, float]:
    """The most likely token of a row of logits (the first, on a tie) and its probability."""
    token = int(row.argmax())
    return token, float(1.0 / np.exp(row - row[token]).sum())


class DraftModel:
    """A draft model's weights, context and per-sequence state (see the module docstring)."""

    def __init__(self, path: str, target: Model, *, n_parallel: int, n_ctx: int, n_threads: int,
                 n_threads_batch: int, n_gpu_layers: int, p_min: float = P_MIN,
                 catch_up: int = CATCH_UP):
        self.p_min = p_min
        self.catch_up = catch_up
        self.n_ctx = n_ctx
        self.n_parallel = n_parallel
        self.target_vocab_size = target.n_vocab
        self.llama = self.context = self.batch = None
        with capture_buffers() as buffers:
            self.llama = self._load(path, n_gpu_layers)
            self._check(target)
            self.context = self._context(path, target, n_parallel, n_ctx, n_threads,
                                         n_threads_batch)
        self.buffers = dict(buffers)
        self.n_vocab = self.llama.n_vocab()
        self._ctx = self.context.ctx
        self._mem = self.context.memory
        self.batch = Batch(max(DRAFT_BATCH, n_parallel))
        self._rows = LogitRows(self._ctx, self.n_vocab)
        self.held: list[list[int]] = [[] for _ in range(n_parallel)]
        self.decoded = 0  # tokens decoded (context and drafts), for tests and metrics

    def _load(self, path: str, n_gpu_layers: int):
        mparams = llama_cpp.llama_model_default_params()
        mparams.n_gpu_layers = n_gpu_layers
        try:
            # verbose=True: fds 1 and 2 stay open while loading (engine.model)
            return internals.LlamaModel(path_model=path, params=mparams, verbose=True)
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelLoadError(f"could not load the draft model {path}: {exc}") from exc

    def _check(self, target: Model) -> None:
        why = vocab_mismatch(target.vocab, self.llama.vocab)
        if why is not None:
            draft = _name(self.llama)
            self.close()
            raise ModelLoadError(f"the draft model {draft} cannot draft for "
                                 f"{_name(target.llama)}: its vocabulary differs ({why})")

    def _context(self, path: str, target: Model, n_parallel: int, n_ctx: int, n_threads: int,
                 n_threads_batch: int):
        cparams = llama_cpp.llama_context_default_params()
        cparams.n_ctx = n_ctx * n_parallel  # one stream of the target's per-slot size per slot
        cparams.n_batch = cparams.n_ubatch = max(DRAFT_BATCH, n_parallel)
        cparams.n_seq_max = n_parallel
        cparams.kv_unified = False
        cparams.n_threads = n_threads
        cparams.n_threads_batch = n_threads_batch
        cparams.flash_attn_type = target.flash_attn  # as the user chose for the target
        try:
            return internals.LlamaContext(model=self.llama, params=cparams, verbose=False)
        except (ValueError, RuntimeError, OSError) as exc:
            self.close()
            raise ModelLoadError(f"could not create the draft model's context ({path}): "
                                 f"{exc}") from exc

    @property
    def memory_bytes(self) -> int:
        return sum(self.buffers.values())

    # ---- the Drafter protocol ------------------------------------------------------------------
    def propose(self, tasks: list, limits: list[int]) -> list[list[int]]:
        drafts: list[list[int]] = [[] for _ in tasks]
        wanted = []  # (index, seq, context, limit)
        for i, (task, limit) in enumerate(zip(tasks, limits)):
            seq = task.slot.seq
            context = [*task.slot.tokens, task.pending]
            limit = min(limit, self.n_ctx - len(context))
            if limit <= 0 or not 0 <= seq < self.n_parallel or max(context) >= self.n_vocab:
                continue
            wanted.append((i, seq, context, limit))
        ready = self._catch_up(wanted)
        if ready:
            self._draft(ready, drafts)
        return drafts

    def settle(self, task, proposed: int, accepted: int) -> None:
        """Nothing to do: the next `propose` keeps the accepted prefix of the cells by itself."""

    def forget(self, seq: int) -> None:
        """The cells stay: `propose` checks them against the slot's next context."""

    def close(self) -> None:
        for part in (self.batch, self.context, self.llama):
            if part is not None:
                part.close()
        self.batch = self.context = self.llama = None

    # ---- inside propose --------------------------------------------------------------------------
    def _trim(self, seq: int, keep: int) -> None:
        """Keep the first `keep` cells of a sequence (all of them gone if it cannot be cut)."""
        held = self.held[seq]
        if keep < len(held):
            if not llama_cpp.llama_memory_seq_rm(self._mem, seq, keep, -1):
                llama_cpp.llama_memory_seq_rm(self._mem, seq, -1, -1)
                keep = 0
            del held[keep:]

    def _catch_up(self, wanted: list) -> list:
        """Decode each context but its last token into the task's sequence, within this call's
        budget; returns the tasks whose sequences then hold it."""
        budget = self.catch_up
        ready, feed = [], []  # feed: (seq, tokens) to decode
        for i, seq, context, limit in wanted:
            held = self.held[seq]
            keep = min(common_prefix(as_tokens(held), as_tokens(context)), len(context) - 1)
            self._trim(seq, keep)
            missing = context[len(self.held[seq]):-1]
            take = min(len(missing), budget)
            budget -= take
            if take:
                feed.append((seq, missing[:take]))
            if take == len(missing):
                ready.append((i, seq, context, limit))
        failed = self._decode_chunks(feed)
        return [r for r in ready if r[1] not in failed]

    def _decode_chunks(self, feed: list) -> set[int]:
        """Decode (seq, tokens) pieces without logits, packed into full batches; returns the
        sequences of a failed decode (their state is dropped)."""
        batch, failed = self.batch, set()
        batch.clear()
        placed: list[tuple[int, list[int]]] = []
        for seq, tokens in feed:
            start, done = len(self.held[seq]), 0
            while done < len(tokens) and seq not in failed:
                n = min(batch.room, len(tokens) - done)
                part = tokens[done:done + n]
                batch.add(part, start + done, seq, False)
                placed.append((seq, part))
                done += n
                if batch.room == 0:
                    failed |= self._decode_placed(placed)
                    placed = []
        if placed:
            failed |= self._decode_placed(placed)
        return failed

    def _decode_placed(self, placed: list) -> set[int]:
        """Decode the batch; on success the sequences hold their parts, else they start over."""
        rc = self.batch.decode(self._ctx)
        self.batch.clear()
        seqs = {seq for seq, _ in placed}
        if rc != 0:
            log.warning("the draft model's decode failed (%d); its sequences %s start over",
                        rc, sorted(seqs))
            for seq in seqs:
                self._trim(seq, 0)
            return seqs
        for seq, part in placed:
            self.held[seq].extend(part)
            self.decoded += len(part)
        return set()

    def _draft(self, ready: list, drafts: list[list[int]]) -> None:
        """Greedy drafts for the tasks whose sequences hold their context but its last token,
        one decode call a token for all of them."""
        batch = self.batch
        batch.clear()
        rows = {}  # index in drafts → its row in the batch just decoded
        step = []  # (index, seq, token, position, limit) to decode next
        for i, seq, context, limit in ready:
            step.append((i, seq, context[-1], len(context) - 1, limit))
        while step:
            for i, seq, token, pos, _ in step:
                rows[i] = batch.add([token], pos, seq, True)
            if self._decode_placed([(seq, [token]) for _, seq, token, _, _ in step]):
                return  # the drafts so far stand; their sequences start over
            following = []
            for i, seq, _, pos, limit in step:
                token, p = top_choice(self._rows(rows[i]))
                if p < self.p_min or token >= self.target_vocab_size:
                    continue
                drafts[i].append(token)
                if len(drafts[i]) < limit:
                    following.append((i, seq, token, pos + 1, limit))
            step = following
