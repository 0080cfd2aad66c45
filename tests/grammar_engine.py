"""Two ways to ask whether a GBNF grammar accepts a text.

`GrammarEngine`: llama.cpp's own grammar engine. Loads only the vocabulary of the embedded SmolLM2 model (no weights, no decoding), builds the
grammar sampler exactly as the engine does (`llama_sampler_init_grammar`), and feeds the text one
character's tokens at a time. A token is offered to the sampler before it is accepted: accepting a
token the grammar rejects aborts the process inside llama.cpp.

`gbnf_regex`: the grammar as a Python regex (rules inlined), for grammars without recursion; fast
enough to check millions of strings, which llama.cpp through ctypes is not.
"""

from __future__ import annotations

import ctypes
import re
import time

import llama_cpp
import numpy as np

from tests.helpers import smollm2_path

NEG_INF = float("-inf")
TOKEN_DATA = np.dtype([("id", "<i4"), ("logit", "<f4"), ("p", "<f4")])  # llama_token_data


class GrammarEngine:
    """One vocabulary, many grammars."""

    def __init__(self):
        llama_cpp.llama_backend_init()
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(str(smollm2_path()).encode(), params)
        assert self.model, "could not load the vocabulary"
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)
        self.eos = llama_cpp.llama_vocab_eos(self.vocab)
        self._char_tokens: dict[str, list[int]] = {}

    def close(self) -> None:
        llama_cpp.llama_model_free(self.model)

    def tokens(self, text: str) -> list[int]:
        buf = (llama_cpp.llama_token * (4 * len(text) + 8))()
        n = llama_cpp.llama_tokenize(self.vocab, text.encode(), len(text.encode()), buf, len(buf),
                                     False, False)
        assert n >= 0
        return list(buf[:n])

    def char_tokens(self, ch: str) -> list[int]:
        if ch not in self._char_tokens:
            self._char_tokens[ch] = self.tokens(ch)
        return self._char_tokens[ch]

    def sampler(self, gbnf: str):
        """A grammar sampler, or None where llama.cpp refuses the grammar."""
        return llama_cpp.llama_sampler_init_grammar(self.vocab, gbnf.encode(), b"root") or None

    def compiles(self, gbnf: str) -> bool:
        smpl = self.sampler(gbnf)
        if smpl is not None:
            llama_cpp.llama_sampler_free(smpl)
        return smpl is not None

    def _allowed(self, smpl, token: int) -> bool:
        data = (llama_cpp.llama_token_data * 1)(llama_cpp.llama_token_data(token, 0.0, 0.0))
        arr = llama_cpp.llama_token_data_array(data, 1, -1, False)
        llama_cpp.llama_sampler_apply(smpl, ctypes.byref(arr))
        return data[0].logit != NEG_INF

    def accepts(self, gbnf: str, text: str, per_char: bool = True) -> bool:
        """Whether the grammar derives exactly `text` (every token, then the end). The text is
        fed a character at a time, or (per_char False) as the tokenizer splits it."""
        smpl = self.sampler(gbnf)
        assert smpl is not None, "grammar does not compile"
        tokens = ([t for ch in text for t in self.char_tokens(ch)] if per_char
                  else self.tokens(text))
        try:
            for token in tokens:
                if not self._allowed(smpl, token):
                    return False
                llama_cpp.llama_sampler_accept(smpl, token)
            return self._allowed(smpl, self.eos)
        finally:
            llama_cpp.llama_sampler_free(smpl)

    def pieces(self) -> list[bytes]:
        """Every token's text, by id."""
        if not hasattr(self, "_pieces"):
            buf = ctypes.create_string_buffer(256)
            self._pieces = []
            for token in range(llama_cpp.llama_vocab_n_tokens(self.vocab)):
                n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, len(buf), 0, False)
                self._pieces.append(buf.raw[:max(n, 0)])
        return self._pieces

    def walk(self, gbnf: str, seed: int, max_tokens: int = 400) -> str | None:
        """A random text the grammar allows, chosen a token at a time as a model would (random
        logits, pushed towards tokens that close strings, arrays and objects, and towards the
        end); None when it has not finished within max_tokens."""
        pieces = self.pieces()
        push = np.array([5.0 if any(c in p for c in b'"]},') else 0.0 for p in pieces], np.float32)
        push[self.eos] = 20.0
        rows = np.zeros(len(pieces), TOKEN_DATA)
        rng = np.random.default_rng(seed)
        smpl = self.sampler(gbnf)
        assert smpl is not None, "grammar does not compile"
        out = b""
        try:
            for _ in range(max_tokens):
                rows["id"] = np.arange(len(pieces))
                rows["logit"] = rng.random(len(pieces), np.float32) * 10 + push
                arr = llama_cpp.llama_token_data_array(
                    rows.ctypes.data_as(llama_cpp.llama_token_data_p), len(pieces), -1, False)
                llama_cpp.llama_sampler_apply(smpl, ctypes.byref(arr))
                best = int(np.argmax(rows["logit"]))
                assert rows["logit"][best] != NEG_INF, "the grammar allows nothing"
                token = int(rows["id"][best])
                if token == self.eos:
                    return out.decode()
                llama_cpp.llama_sampler_accept(smpl, token)
                out += pieces[token]
            return None
        finally:
            llama_cpp.llama_sampler_free(smpl)

    def timed_init(self, gbnf: str) -> float:
        """Seconds llama.cpp takes to parse the grammar and build its first stacks."""
        start = time.perf_counter()
        smpl = self.sampler(gbnf)
        elapsed = time.perf_counter() - start
        assert smpl is not None, "grammar does not compile"
        llama_cpp.llama_sampler_free(smpl)
        return elapsed


_GBNF_TOKEN = re.compile(r'\s+|"(?:[^"\\]|\\.)*"|\[(?:[^\]\\]|\\.)*\]|\{\d+(?:,\d*)?\}|[()|?*+]'
                         r'|[a-zA-Z0-9-]+')
_GBNF_ESCAPE = re.compile(r'\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|.)')
_SIMPLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t"}


def _unescape(body: str) -> str:
    def one(m):
        e = m.group(1)
        return chr(int(e[1:], 16)) if e[0] in "xuU" and len(e) > 1 else _SIMPLE_ESCAPES.get(e, e)
    return _GBNF_ESCAPE.sub(one, body)


def gbnf_regex(gbnf: str, rule: str = "root") -> re.Pattern:
    """`rule` of a non-recursive GBNF grammar as one compiled regex (use fullmatch)."""
    rules = dict(line.split(" ::= ", 1) for line in gbnf.splitlines() if " ::= " in line)

    def expand(name: str, seen: tuple) -> str:
        assert name not in seen, f"recursive rule {name}"
        out = []
        for m in _GBNF_TOKEN.finditer(rules[name]):
            tok = m.group(0)
            if tok.isspace():
                continue
            if tok[0] == '"':
                out.append(f"(?:{re.escape(_unescape(tok[1:-1]))})")
            elif tok[0] in "[{|?*+)":
                out.append(tok)
            elif tok == "(":
                out.append("(?:")
            else:
                out.append(f"(?:{expand(tok, seen + (name,))})")
        return "".join(out)

    return re.compile(expand(rule, ()))
