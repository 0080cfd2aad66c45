"""Speculative decoding's cases for scripts/bench.py (`--spec-cases`): text the model gives back.

    .venv/bin/python scripts/bench.py --spec-cases       # starts localgw --spec off and --spec auto
    .venv/bin/python scripts/bench.py --spec-cases --side llama-server=http://127.0.0.1:8080 \\
        --side llama-server-ngram=http://127.0.0.1:8081

Cases, each a trial per side in turn (sides never generate at the same time), temperature 0, a fresh
nonce first in every prompt, the same for every side within one repeat: the sides answer the same
prompts, so their texts (and lengths, which move decode speed) match as far as their logits do, and
no side's cache has seen a prompt before. Cases: rewrite-a-code-block (a ~60-line Python block given
back with one function renamed: most of the answer is in the prompt), edit-a-paragraph (a paragraph
given back with a typo fixed), free chat (a story: little to look up), and 4 concurrent streams
(stories).
The two cases that give text back send `"repeat_penalty": 1` to every side (GIVE_BACK), as the
README advises for such work: localgw's default penalty (1.1 over the last 64 tokens) pushes a
copy off its source, and llama.cpp's server has none, so with each server's defaults the sides
would sample different texts. Free chat and the streams keep each server's defaults (a story
without a penalty often ends in a loop, which look-ups draft whole).
Reported: decode tok/s (completion tokens after the first over the time after the first token),
and for the 4 streams aggregate tok/s; medians over the trials; and how often each side's answer
was the first side's, word for word: where it was not, the sides timed different texts (decode
slows as the context grows), and scripts/spec_replay.py compares policies on one answer.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import secrets
import time

CODE_FUNCS = [
    ("load_orders", "path", ["rows = []", "with open(path) as f:", "    for line in f:",
                             "        rows.append(line.strip().split(','))", "return rows"]),
    ("total_price", "orders", ["total = 0.0", "for order in orders:",
                               "    total += float(order[2]) * int(order[3])", "return total"]),
    ("by_customer", "orders", ["groups = {}", "for order in orders:",
                               "    groups.setdefault(order[1], []).append(order)",
                               "return groups"]),
    ("largest_order", "orders", ["best = None", "for order in orders:",
                                 "    value = float(order[2]) * int(order[3])",
                                 "    if best is None or value > best[0]:",
                                 "        best = (value, order)", "return best"]),
    ("average_quantity", "orders", ["if not orders:", "    return 0.0",
                                    "count = sum(int(order[3]) for order in orders)",
                                    "return count / len(orders)"]),
    ("customers", "orders", ["names = set()", "for order in orders:", "    names.add(order[1])",
                             "return sorted(names)"]),
    ("report", "orders", ["lines = []", "for name, rows in by_customer(orders).items():",
                          "    lines.append(f'{name}: {len(rows)} orders, {total_price(rows):.2f}')",
                          "return '\\n'.join(lines)"]),
    ("main", "path", ["orders = load_orders(path)", "print(report(orders))",
                      "print('largest:', largest_order(orders))",
                      "print('average quantity:', average_quantity(orders))"]),
]
CODE = "\n\n".join(f"def {name}({arg}):\n" + "\n".join("    " + line for line in body)
                   for name, arg, body in CODE_FUNCS)
PARAGRAPH = ("The village sat at the edge of a wide green valley, where the river bent twice "
             "before it reached the sea. Every morning the baker opened his shop before the sun "
             "was up, and the smell of fresh bread drifted down the narow street to the harbour. "
             "Fishermen stopped on their way to the boats, children on their way to school, and "
             "by eight o'clock the shelves were empty and the baker was already planning the next "
             "day's loaves.")
CODE_TOKENS = 700      # the whole block comes back (~600 tokens with SmolLM2's tokenizer)
PARAGRAPH_TOKENS = 160
CHAT_TOKENS = 200
GIVE_BACK = {"repeat_penalty": 1}  # the name both servers read (module docstring)


REWRITE_CODE = ("Rename the function `total_price` to `order_total` everywhere in this code and "
                f"give back the whole code, nothing else:\n\n```python\n{CODE}\n```")
EDIT_PARAGRAPH = ("Fix the spelling mistake in this paragraph and give back the paragraph:"
                  f"\n\n{PARAGRAPH}")
FREE_CHAT = "Write a long story about a dragon."
# the one-stream cases' messages, answer budgets and request fields (scripts/spec_replay.py
# records these too)
CASES_TEXT = {"rewrite-a-code-block": (REWRITE_CODE, CODE_TOKENS, GIVE_BACK),
              "edit-a-paragraph": (EDIT_PARAGRAPH, PARAGRAPH_TOKENS, GIVE_BACK),
              "free chat": (FREE_CHAT, CHAT_TOKENS, {})}


def _one_stream(case: str):
    content, max_tokens, fields = CASES_TEXT[case]

    def trial(side, messages) -> dict:
        r = side.stream(messages(content), max_tokens, **fields)
        return {"decode_tps": r["decode_tps"], "tokens": r["tokens"], "ttft_ms": r["ttft_ms"],
                "answer": hashlib.sha256(r["text"].encode()).hexdigest()[:12]}

    return trial


def four_streams(side, messages, streams: int = 4, tokens: int = 128) -> dict:
    def one(i):
        return side.stream(messages(f"Tell story number {i}."), tokens)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(streams) as pool:
        results = list(pool.map(one, range(streams)))
    return {"aggregate_tps": sum(r["tokens"] for r in results) / (time.perf_counter() - start)}


CASES = {**{case: (_one_stream(case), "decode_tps", "decode tok/s") for case in CASES_TEXT},
         "4 streams": (four_streams, "aggregate_tps", "aggregate tok/s")}


def run_spec_cases(sides: list, repeats: int, interleaved, med) -> dict:
    """{"rows": {side: {measure: median}}, "trials": {case: {side: [trial, ...]}}}."""
    rows: dict = {s.name: {} for s in sides}
    trials: dict = {}
    for case, (trial, key, label) in CASES.items():
        trials[case] = interleaved(sides, _same_prompts_per_repeat(sides, trial), repeats)
        first = trials[case][sides[0].name]
        for name, rs in trials[case].items():
            rows[name][f"{case}: {label}"] = med(r[key] for r in rs)
            if "tokens" in rs[0]:
                rows[name][f"{case}: tokens"] = med(r["tokens"] for r in rs)
            if "answer" in rs[0]:  # past 256 tokens the sides can answer differently (engine.spec)
                same = sum(r["answer"] == f["answer"] for r, f in zip(rs, first))
                rows[name][f"{case}: answers as {sides[0].name}'s %"] = 100.0 * same / len(rs)
    return {"rows": rows, "trials": trials}


def _same_prompts_per_repeat(sides: list, trial):
    """trial(side) where every side of one repeat gets the same nonce: a repeat starts with the
    first side (bench.interleaved runs the sides in order), which draws the next one."""
    nonce = ""

    def fixed(content: str) -> list[dict]:
        return [{"role": "user", "content": f"[{nonce}] {content}"}]

    def run(side) -> dict:
        nonlocal nonce
        if side is sides[0]:
            nonce = secrets.token_hex(4)
        return trial(side, fixed)

    return run
