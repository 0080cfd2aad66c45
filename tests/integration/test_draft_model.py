"""The draft model (engine.draft_model) on the real SmolLM2, as its own draft: its proposals are
the target's greedy choices, batching does not change them, its cells are reused across calls,
and a model of another vocabulary is refused at load."""

from __future__ import annotations

import shutil

import gguf
import llama_cpp
import numpy as np
import pytest

from localgw.engine.batch import Batch
from localgw.engine.draft_model import CATCH_UP, P_MIN, DraftModel
from localgw.engine.model import Model
from localgw.engine.prompt_cache import as_tokens, common_prefix
from localgw.engine.types import LoadOptions
from localgw.errors import ModelLoadError
from tests.helpers import FakeSlot, FakeTask, smollm2_path

N_CTX = 512
SLOTS = 4
PROMPTS = ["<|im_start|>user\nCount from one to twenty in words.<|im_end|>\n<|im_start|>assistant\n",
           "<|im_start|>user\nWrite a Python function that adds two numbers.<|im_end|>\n"
           "<|im_start|>assistant\n",
           "<|im_start|>user\nName the days of the week.<|im_end|>\n<|im_start|>assistant\n",
           "The quick brown fox jumps over the lazy dog. The quick brown fox"]


def task_for(tokens: list[int], seq: int) -> FakeTask:
    return FakeTask(FakeSlot(seq, list(tokens[:-1])), tokens[-1])


@pytest.fixture(scope="module")
def target():
    model = Model("smol", str(smollm2_path()), LoadOptions(n_ctx=N_CTX), n_parallel=SLOTS,
                  n_gpu_layers=0, n_threads=2, n_threads_batch=2)
    yield model
    model.close()


def load_draft(target: Model, path=None, **options) -> DraftModel:
    return DraftModel(str(path or smollm2_path()), target, n_parallel=SLOTS, n_ctx=N_CTX,
                      n_threads=2, n_threads_batch=2, n_gpu_layers=0, **options)


@pytest.fixture(scope="module")
def draft(target):
    model = load_draft(target, p_min=0.0)  # every token drafted, up to the limit
    yield model
    model.close()


def fresh(draft: DraftModel) -> None:
    """Empty every sequence of a draft (a test's start)."""
    for seq in range(SLOTS):
        draft._trim(seq, 0)


def target_greedy(target: Model, tokens: list[int], n: int, seq: int = 0,
                  probabilities: list | None = None) -> list[int]:
    """The target's greedy continuation, decoded as the draft model decodes: the context but its
    last token in one call, then one token a call (`probabilities` gets each choice's)."""
    batch = Batch(N_CTX)
    llama_cpp.llama_memory_seq_rm(target.memory, seq, -1, -1)
    try:
        batch.add(tokens[:-1], 0, seq, False)
        assert batch.decode(target.context.ctx) == 0
        out, last, pos = [], tokens[-1], len(tokens) - 1
        for _ in range(n):
            batch.clear()
            index = batch.add([last], pos, seq, True)
            assert batch.decode(target.context.ctx) == 0
            row = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(target.context.ctx, index),
                                        shape=(target.n_vocab,)).astype(np.float64)
            last, pos = int(row.argmax()), pos + 1
            if probabilities is not None:
                probabilities.append(1.0 / np.exp(row - row[last]).sum())
            out.append(last)
        return out
    finally:
        llama_cpp.llama_memory_seq_rm(target.memory, seq, -1, -1)
        batch.close()


def test_the_draft_is_the_targets_greedy_choice_when_the_draft_is_the_target(target, draft):
    fresh(draft)
    for prompt in PROMPTS[:2]:
        tokens = target.prompt_tokens(prompt)
        [proposed] = draft.propose([task_for(tokens, 1)], [8])
        assert proposed == target_greedy(target, tokens, 8)


def test_drafting_tasks_together_gives_each_its_draft_alone(target, draft):
    contexts = [target.prompt_tokens(p) for p in PROMPTS]
    alone = []
    for seq, tokens in enumerate(contexts):
        fresh(draft)
        alone.append(draft.propose([task_for(tokens, seq)], [6])[0])
    fresh(draft)
    together = draft.propose([task_for(t, seq) for seq, t in enumerate(contexts)], [6] * SLOTS)
    assert together == alone
    assert all(len(d) == 6 for d in together)
    # a limit of 0 drafts nothing and leaves that sequence alone
    assert draft.propose([task_for(contexts[0], 0), task_for(contexts[1], 1)], [0, 3]) == \
        [[], alone[1][:3]]


def test_a_second_call_decodes_only_what_is_new(target, draft):
    fresh(draft)
    tokens = target.prompt_tokens(PROMPTS[0])
    before = draft.decoded
    [first] = draft.propose([task_for(tokens, 2)], [6])
    assert draft.decoded - before == len(tokens) - 1 + 6  # the context, then each draft step
    # the target kept three drafted tokens and sampled a fourth: nothing of the context is
    # decoded again, only the last token (for its row) and the new draft
    task = FakeTask(FakeSlot(2, tokens + first[:3]), first[3])
    draft.settle(task, 6, 3)
    before = draft.decoded
    [second] = draft.propose([task], [5])
    assert draft.decoded - before == 5
    assert second == target_greedy(target, tokens + first[:4], 5, seq=2)
    # a new turn: the slot ends, and the next context extends the last one
    draft.forget(2)
    turn = task.slot.tokens + [task.pending] + target.tokenize(
        "<|im_end|>\n<|im_start|>user\nAnd back again.<|im_end|>\n")
    kept = min(common_prefix(as_tokens(draft.held[2]), as_tokens(turn)), len(turn) - 1)
    assert kept >= len(tokens) + 4
    before = draft.decoded
    draft.propose([task_for(turn, 2)], [4])
    assert draft.decoded - before == len(turn) - 1 - kept + 4


def test_a_long_context_is_caught_up_over_several_calls(target, draft):
    fresh(draft)
    tokens = target.prompt_tokens(" ".join(["The cat sat on the mat."] * 40))
    assert len(tokens) > 250
    draft.catch_up = 100
    try:
        calls = []
        for _ in range(4):
            before = draft.decoded
            calls.append(draft.propose([task_for(tokens, 0)], [3]))
            assert draft.decoded - before <= 100 + 3
        first_ready = next(i for i, c in enumerate(calls) if c[0])
        assert first_ready == (len(tokens) - 1 + 99) // 100 - 1
        assert calls[first_ready][0] == target_greedy(target, tokens, 3)
    finally:
        draft.catch_up = CATCH_UP


def test_drafts_stay_within_the_context(target, draft):
    fresh(draft)
    tokens = target.prompt_tokens(" ".join(["one two three"] * 200))[:N_CTX - 2]
    assert draft.propose([task_for(tokens, 0)], [8]) == [target_greedy(target, tokens, 2)]
    assert draft.propose([task_for(tokens + [tokens[5], tokens[6]], 0)], [8]) == [[]]


def test_a_draft_stops_where_the_draft_model_is_unsure(target):
    draft = load_draft(target)  # p_min 0.75
    try:
        lengths = []
        for seq, prompt in enumerate(PROMPTS):
            tokens = target.prompt_tokens(prompt)
            [proposed] = draft.propose([task_for(tokens, seq)], [12])
            sure: list[float] = []
            greedy = target_greedy(target, tokens, 12, probabilities=sure)
            n = len(proposed)
            assert proposed == greedy[:n]
            assert all(p >= P_MIN for p in sure[:n])
            assert n == 12 or sure[n] < P_MIN
            lengths.append(n)
        assert min(lengths) < 12  # some choice was unsure
    finally:
        draft.close()


# ---- another vocabulary ---------------------------------------------------------------------------
def tampered_copy(tmp_path, edit) -> str:
    path = tmp_path / "tampered-smollm2.gguf"
    shutil.copyfile(smollm2_path(), path)
    reader = gguf.GGUFReader(path, "r+")
    edit(reader.fields)
    reader.data.flush()
    del reader
    return str(path)


def test_a_draft_whose_token_texts_differ_is_refused(target, tmp_path):
    def swap_tokens(fields):  # two texts of one length trade places: each stays unique
        tokens = fields["tokenizer.ggml.tokens"]
        a, b = tokens.parts[tokens.data[1000]], tokens.parts[tokens.data[1002]]
        assert len(a) == len(b) and bytes(a) != bytes(b)
        a[:], b[:] = b.copy(), a.copy()

    path = tampered_copy(tmp_path, swap_tokens)
    with pytest.raises(ModelLoadError) as caught:
        load_draft(target, path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"the draft model tampered-smollm2.gguf cannot draft for "
                              f"{smollm2_path().name}: its vocabulary differs (")
    assert f"token 1000 is {target.token_text(1000)!r} vs {target.token_text(1002)!r}" in message


def test_a_draft_with_other_special_tokens_is_refused(target, tmp_path):
    def move_eos(fields):
        fields["tokenizer.ggml.eos_token_id"].parts[-1][0] = 0

    eos = llama_cpp.llama_vocab_eos(target.vocab)
    with pytest.raises(ModelLoadError, match=f"EOS id {eos} vs 0"):
        load_draft(target, tampered_copy(tmp_path, move_eos))


def tiny_spm_model(path) -> str:
    """A random-weight one-layer llama of a sentencepiece vocabulary (259 tokens)."""
    rng = np.random.default_rng(0)
    n_embd, n_ff, n_vocab = 32, 64, 259
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(N_CTX)
    w.add_embedding_length(n_embd)
    w.add_block_count(1)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_rope_dimension_count(n_embd // 4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)])
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types([2, 3, 3] + [6] * 256)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    shapes = {"token_embd.weight": (n_vocab, n_embd), "output_norm.weight": (n_embd,),
              "blk.0.attn_norm.weight": (n_embd,), "blk.0.ffn_norm.weight": (n_embd,),
              "blk.0.attn_q.weight": (n_embd, n_embd), "blk.0.attn_k.weight": (n_embd, n_embd),
              "blk.0.attn_v.weight": (n_embd, n_embd), "blk.0.attn_output.weight": (n_embd, n_embd),
              "blk.0.ffn_gate.weight": (n_ff, n_embd), "blk.0.ffn_up.weight": (n_ff, n_embd),
              "blk.0.ffn_down.weight": (n_embd, n_ff)}
    for name, shape in shapes.items():
        w.add_tensor(name, rng.standard_normal(shape).astype(np.float32) * 0.02)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return str(path)


def test_a_draft_of_another_vocabulary_is_refused(target, tmp_path):
    path = tiny_spm_model(tmp_path / "tiny-spm.gguf")
    with pytest.raises(ModelLoadError) as caught:
        load_draft(target, path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"the draft model tiny-spm.gguf cannot draft for {smollm2_path().name}:")
    assert "vocabulary type" in message
