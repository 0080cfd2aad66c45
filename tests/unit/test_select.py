"""Choosing GGUF files from a repo listing, and REF parsing: pure functions."""

import pytest

from localgw.errors import HubError, InvalidRequest
from localgw.hub.resolve import RepoListing, parse_ref, resolve
from localgw.hub.select import RepoFile, available_quants, quant_of, select_file, select_quant


def listing(*paths):
    return [RepoFile(p, 100, "0" * 64) for p in paths]


BARTOWSKI = listing("Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf", "Meta-Llama-3.1-8B-Instruct-IQ4_XS.gguf",
                    "Meta-Llama-3.1-8B-Instruct-Q4_K_L.gguf", "Meta-Llama-3.1-8B-Instruct-Q8_0.gguf",
                    "Meta-Llama-3.1-8B-Instruct.imatrix", "README.md")


def test_quant_is_a_whole_token():
    sel = select_quant(listing("m-IQ4_K_M.gguf", "m-Q4_K_L.gguf", "m-q4_k_m.gguf"), "Q4_K_M")
    assert [f.path for f in sel.files] == ["m-q4_k_m.gguf"]
    assert select_quant(listing("m-IQ4_K_M.gguf", "m-Q4_K_L.gguf"), "Q4_K_M") is None


@pytest.mark.parametrize("name,quant", [
    ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"), ("Model.Q5_K_S.gguf", "Q5_K_S"),
    ("Qwen3-8B-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"), ("x-IQ4_XS.gguf", "IQ4_XS"), ("x-BF16.gguf", "BF16"),
    ("Q8_0/m-Q8_0-00002-of-00003.gguf", "Q8_0"), ("plain.gguf", None)])
def test_quant_of(name, quant):
    assert quant_of(name) == quant


def test_split_set_complete_and_single_file_preferred():
    files = listing("c-q4_k_m-00001-of-00002.gguf", "c-q4_k_m-00002-of-00002.gguf", "c-q4_k_m.gguf")
    assert [f.path for f in select_quant(files, "Q4_K_M").files] == ["c-q4_k_m.gguf"]
    split = select_quant(files[:2], "q4_k_m")
    assert [f.path for f in split.files] == ["c-q4_k_m-00001-of-00002.gguf", "c-q4_k_m-00002-of-00002.gguf"]


def test_incomplete_split_set_is_refused():
    with pytest.raises(HubError, match="incomplete"):
        select_quant(listing("m-Q8_0-00001-of-00003.gguf", "m-Q8_0-00003-of-00003.gguf"), "Q8_0")


def test_sub_folder_split_set():
    files = listing("M-Q8_0/M-Q8_0-00002-of-00002.gguf", "M-Q8_0/M-Q8_0-00001-of-00002.gguf")
    assert select_quant(files, "Q8_0").files[0].path == "M-Q8_0/M-Q8_0-00001-of-00002.gguf"


def test_decoys_are_never_picked():
    files = listing("mmproj-model-f16.gguf", "imatrix-Q4_K_M.gguf", "mtp-Q4_K_M.gguf", "m-Q4_K_M.gguf")
    assert [f.path for f in select_quant(files, "Q4_K_M").files] == ["m-Q4_K_M.gguf"]
    assert select_quant(listing("mmproj-m-F16.gguf"), "F16") is None


def test_byte_split_parts_are_refused_clearly():
    with pytest.raises(HubError, match="byte-split"):
        select_quant(listing("Model.Q4_K_M.gguf.part1of2", "Model.Q4_K_M.gguf.part2of2"), "Q4_K_M")


def test_named_file_brings_its_whole_set():
    files = listing("x-00001-of-00002.gguf", "x-00002-of-00002.gguf", "y.gguf")
    assert len(select_file(files, "x-00001-of-00002.gguf").files) == 2
    assert select_file(files, "Y.GGUF").files[0].path == "y.gguf"
    assert select_file(files, "z.gguf") is None


def test_available_quants():
    assert available_quants(BARTOWSKI) == ["IQ4_XS", "Q4_K_L", "Q4_K_M", "Q8_0"]


@pytest.mark.parametrize("ref,ident,quant,filename", [
    ("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen2.5-7B-Instruct", None, None),
    ("hf.co/bartowski/X-GGUF:q5_k_m", "bartowski/X-GGUF", "Q5_K_M", None),
    ("https://huggingface.co/bartowski/X-GGUF", "bartowski/X-GGUF", None, None),
    ("bartowski/X-GGUF:X-Q8_0.gguf", "bartowski/X-GGUF", None, "X-Q8_0.gguf"),
])
def test_parse_ref(ref, ident, quant, filename):
    r = parse_ref(ref)
    assert (r.ident, r.quant, r.filename) == (ident, quant, filename)


@pytest.mark.parametrize("bad", ["justaname", "a/b/c", "", "org/name:Q4:Q5"])
def test_bad_refs(bad):
    with pytest.raises(InvalidRequest):
        parse_ref(bad) if bad != "org/name:Q4:Q5" else parse_ref("org/name:Q4", "Q5")


def fetcher(repos):
    return lambda repo: RepoListing(repo, "c" * 40, repos[repo]) if repo in repos else None


def test_catalogue_then_fallback_quant_across_repos():
    repos = {"Qwen/Qwen3-0.6B-GGUF": listing("Qwen3-0.6B-Q8_0.gguf"),
             "unsloth/Qwen3-0.6B-GGUF": listing("Qwen3-0.6B-Q4_K_M.gguf", "Qwen3-0.6B-Q8_0.gguf")}
    r = resolve(parse_ref("Qwen/Qwen3-0.6B"), fetcher(repos))
    assert (r.listing.repo, r.selection.quant, r.model_id) == ("unsloth/Qwen3-0.6B-GGUF", "Q4_K_M", "Qwen/Qwen3-0.6B")
    r = resolve(parse_ref("Qwen/Qwen3-0.6B:Q8_0"), fetcher(repos))
    assert r.listing.repo == "Qwen/Qwen3-0.6B-GGUF"


def test_naming_rules_for_unknown_ids():
    repos = {"bartowski/someorg_Tiny-1B-GGUF": listing("someorg_Tiny-1B-Q4_K_S.gguf")}
    r = resolve(parse_ref("someorg/Tiny-1B"), fetcher(repos))
    assert r.listing.repo == "bartowski/someorg_Tiny-1B-GGUF" and r.selection.quant == "Q4_K_S"
    assert "someorg/Tiny-1B-GGUF" in r.tried


def test_errors_name_what_exists_or_was_tried():
    with pytest.raises(HubError, match=r"Available: bartowski/M-GGUF: Q8_0"):
        resolve(parse_ref("bartowski/M-GGUF:Q2_K"), fetcher({"bartowski/M-GGUF": listing("M-Q8_0.gguf")}))
    with pytest.raises(HubError, match=r"tried someorg/Nope-GGUF, bartowski/Nope-GGUF"):
        resolve(parse_ref("someorg/Nope"), fetcher({}))
    with pytest.raises(HubError, match="no GGUF files"):
        resolve(parse_ref("org/Model-GGUF"), fetcher({"org/Model-GGUF": listing("README.md")}))
