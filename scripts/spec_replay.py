#!/usr/bin/env python3
"""Replay recorded answers through speculative decoding's own policy: what `auto` gains, free of
timing noise, and the most any policy drafting from the same look-ups could gain.

    .venv/bin/python scripts/spec_replay.py --record answers.json --repeats 10  # localgw, spec off
    .venv/bin/python scripts/spec_replay.py answers.json                        # CPU and GPU lines
    .venv/bin/python scripts/spec_replay.py answers.json --cost 0.3,0.7 --cost 1.0,0.02

Why a replay. `bench.py --spec-cases` times real runs; on a shared machine their speed moves by a
fifth from one minute to the next, and past 256 tokens of context the two sides' answers can part
at a near tie (engine.spec), so they time different texts of different lengths. Here one answer is
fixed, and engine.spec's `Speculation` and `NgramDrafter`, the classes the server runs, are asked
step by step what they would draft; a draft token is kept when it is the answer's next token
(what verification keeps at temperature 0, where the answer is the one given without
speculation). Each step is priced in plain steps by a `RowCost` (engine.rowcost), and the figure
is the answer's tokens per unit of that cost: `off` is 1.0.

The ceiling: a clairvoyant policy, given the same look-ups, drafts exactly the part of each that
comes true, whenever that costs less than plain steps would. A policy that cannot see the answer
only comes near it; the gap between it and `auto` is what a better policy could still win, and
the ceiling itself is what the look-ups allow with this answer at this row cost.

--record asks localgw (`--spec off`, temperature 0) for the answers to bench_spec's cases
(rewrite-a-code-block, edit-a-paragraph, free chat; a fresh nonce per repeat), with the fields
bench_spec sends (the two cases that give text back turn the default repetition penalty off: a
penalty pushes a copy off its source, which changes what look-ups can win); --sampling adds
fields to every request (`{"repetition_penalty": 1.1}` puts the penalty back). The replay
tokenizes the user's message and the answer with the model's vocabulary: the chat template's few
tokens are left out, and a retokenized answer can differ from the sampled tokens at rare spots.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from localgw.defaults import SPEC_MAX  # noqa: E402
from localgw.engine.rowcost import CPU_COST, RowCost  # noqa: E402
from localgw.engine.spec import NgramDrafter, Speculation  # noqa: E402

GPU_LINE = RowCost(1.0, 0.02)  # a GPU where rows past the first cost little (engine.rowcost)


@dataclass
class _Slot:
    tokens: list[int]
    seq: int = 0


@dataclass(eq=False)
class _Task:
    """What Speculation and NgramDrafter read of a decoding task."""

    slot: _Slot
    pending: int
    budget: int
    generated: int = 1


@dataclass
class Replay:
    speedup: float      # answer tokens per unit of cost; off is 1.0
    drafted: int = 0
    kept: int = 0
    steps: list = field(default_factory=list)  # rows of each step


def _comes_true(draft: list[int], answer: list[int], at: int) -> int:
    """How many of the draft's tokens are the answer's from position `at` on."""
    n = 0
    while n < len(draft) and at + n < len(answer) and answer[at + n] == draft[n]:
        n += 1
    return n


def _walk(prompt: list[int], answer: list[int], cost: RowCost, draft_for, settle=None) -> Replay:
    """`answer` decoded after `prompt`, a step at a time: `draft_for(task, i)` drafts with
    answer[i] pending, the draft's tokens that are the answer's are kept, and `settle(task,
    drafted, kept)` hears of each verified draft; each step priced by `cost`."""
    if not answer:
        raise ValueError("an empty answer has nothing to replay")
    task = _Task(_Slot(list(prompt)), answer[0], budget=len(answer))
    out = Replay(0.0)
    i, spent = 0, 0.0   # answer[i] is the pending token
    while i < len(answer):
        task.pending = answer[i]
        draft = draft_for(task, i)
        kept = _comes_true(draft, answer, i + 1)
        task.slot.tokens += [answer[i], *draft[:kept]]
        spent += cost(1 + len(draft))
        out.steps.append(1 + len(draft))
        i += 1 + kept
        task.generated += 1 + kept
        if draft:
            if settle:
                settle(task, len(draft), kept)
            out.drafted += len(draft)
            out.kept += kept
    out.speedup = len(answer) / spent
    return out


def replay(prompt: list[int], answer: list[int], cost: RowCost = CPU_COST, mode: str = "auto",
           spec_max: int = SPEC_MAX) -> Replay:
    """`answer` decoded after `prompt` with speculation `mode`, each step priced by `cost`."""
    if mode == "off":
        return _walk(prompt, answer, cost, lambda task, i: [])
    spec = Speculation(mode, NgramDrafter(), spec_max, cost=cost)

    def draft_for(task: _Task, i: int) -> list[int]:
        drafts = spec.drafts([task], 1 + spec_max)
        return drafts[0] if drafts else []

    return _walk(prompt, answer, cost, draft_for, spec.settle)


def ceiling(prompt: list[int], answer: list[int], cost: RowCost = CPU_COST,
            spec_max: int = SPEC_MAX) -> float:
    """The clairvoyant policy's figure: at each step the look-up's draft, cut where it stops
    coming true, drafted when its rows cost less than plain steps for the same tokens."""
    drafter = NgramDrafter()

    def draft_for(task: _Task, i: int) -> list[int]:
        draft = drafter.draft(task, spec_max)
        run = _comes_true(draft, answer, i + 1)
        return draft[:run] if run and cost(1 + run) < 1 + run else []

    return _walk(prompt, answer, cost, draft_for).speedup


# ---- recording and reporting -----------------------------------------------------------------
def record(path: Path, repeats: int, gguf: str, threads: int, sampling: dict) -> None:
    from bench import ServerSide, start_server
    from bench_spec import CASES_TEXT

    proc, url = start_server(gguf, threads, ("--spec", "off"))
    try:
        side = ServerSide("localgw off", url)
        answers = []
        for _ in range(repeats):
            nonce = secrets.token_hex(4)
            for case, (content, max_tokens, fields) in CASES_TEXT.items():
                user = f"[{nonce}] {content}"
                r = side.stream([{"role": "user", "content": user}], max_tokens,
                                **{**fields, **sampling})
                answers.append({"case": case, "prompt": user, "answer": r["text"]})
                print(f"{case}: {r['tokens']} tokens", file=sys.stderr)
    finally:
        proc.terminate()
        proc.wait(30)
    path.write_text(json.dumps({"gguf": gguf, "answers": answers}, indent=1))


def tokenizer(gguf: str):
    """text → the model's token ids, from its vocabulary alone (no weights loaded)."""
    import llama_cpp

    from localgw.engine import llamalog

    llamalog.install()  # llama.cpp's log into Python's logging, which is quiet here
    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = llama_cpp.llama_model_load_from_file(gguf.encode(), params)
    if not model:
        sys.exit(f"spec_replay: cannot read the vocabulary of {gguf}")
    vocab = llama_cpp.llama_model_get_vocab(model)

    def ids(text: str) -> list[int]:
        raw = text.encode()
        buf = (llama_cpp.llama_token * (len(raw) + 8))()
        n = llama_cpp.llama_tokenize(vocab, raw, len(raw), buf, len(buf), False, False)
        return list(buf[:n])

    return ids


def parse_fields(text: str) -> dict:
    try:
        fields = json.loads(text)
    except ValueError:
        fields = None
    if not isinstance(fields, dict):
        raise argparse.ArgumentTypeError(f"{text!r}: give the fields as a JSON object")
    return fields


def parse_cost(text: str) -> RowCost:
    base, _, per_row = text.partition(",")
    try:
        return RowCost(float(base), float(per_row))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the row cost as BASE,PER_ROW") from None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("answers", help="recorded answers (JSON from --record)")
    ap.add_argument("--record", action="store_true", help="record the answers first")
    ap.add_argument("--repeats", type=int, default=10, help="with --record: nonces per case")
    ap.add_argument("--sampling", type=parse_fields, default={}, metavar="JSON",
                    help="with --record: more request fields, e.g. '{\"top_k\": 1}'")
    ap.add_argument("--gguf", help="the model (default: the embedded SmolLM2)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cost", type=parse_cost, action="append", metavar="BASE,PER_ROW",
                    help="a batch of n rows costs BASE + PER_ROW n plain steps (repeatable; "
                         f"default: the CPU's {CPU_COST.base},{CPU_COST.per_row} and a GPU's "
                         f"{GPU_LINE.base},{GPU_LINE.per_row})")
    ap.add_argument("--spec-max", type=int, default=SPEC_MAX)
    args = ap.parse_args()
    path = Path(args.answers)
    if args.record:
        from bench import embedded_model_path
        record(path, args.repeats, args.gguf or str(embedded_model_path()), args.threads,
               args.sampling)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        sys.exit(f"spec_replay: cannot read the answers in {path}: {exc}")

    ids = tokenizer(args.gguf or data["gguf"])
    pairs: dict[str, list] = {}
    for a in data["answers"]:
        if a["answer"]:
            pairs.setdefault(a["case"], []).append((ids(a["prompt"]), ids(a["answer"])))
    for cost in args.cost or [CPU_COST, GPU_LINE]:
        print(f"rows cost {cost.base} + {cost.per_row} n plain steps")
        for case, items in pairs.items():
            runs = [replay(p, a, cost, spec_max=args.spec_max) for p, a in items]
            tops = [ceiling(p, a, cost, args.spec_max) for p, a in items]
            auto = [r.speedup for r in runs]
            kept = sum(r.kept for r in runs) / max(sum(r.drafted for r in runs), 1)
            print(f"  {case:22s} auto {statistics.median(auto):.2f}× "
                  f"({min(auto):.2f}–{max(auto):.2f}, kept {kept:.0%})   "
                  f"ceiling {statistics.median(tops):.2f}× ({min(tops):.2f}–{max(tops):.2f})"
                  f"   {len(items)} answers")


if __name__ == "__main__":
    main()
