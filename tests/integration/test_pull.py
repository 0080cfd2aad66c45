"""`localgw pull` end to end against a fake Hub on 127.0.0.1, with the real download code."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.fakehub import FakeHub
from tests.ggufsplit import split_gguf
from tests.helpers import ServerProcess, smollm2_path, wait_until


def tiny_gguf(name: str = "tiny") -> bytes:
    """A valid GGUF header with a few keys and no tensors: enough to register, not to serve."""
    def s(text):
        raw = text.encode()
        return struct.pack("<Q", len(raw)) + raw
    kvs = [s("general.architecture") + struct.pack("<I", 8) + s("llama"),
           s("general.name") + struct.pack("<I", 8) + s(name),
           s("llama.context_length") + struct.pack("<I", 4) + struct.pack("<I", 2048)]
    return b"GGUF" + struct.pack("<IQQ", 3, 0, len(kvs)) + b"".join(kvs)


@pytest.fixture
def hub():
    h = FakeHub().start()
    yield h
    h.stop()


@pytest.fixture
def env(tmp_path, hub):
    return {"PATH": os.environ["PATH"], "LOCALGW_HOME": str(tmp_path / "home"),
            "HF_HUB_CACHE": str(tmp_path / "hf"), "HF_ENDPOINT": hub.url,
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_XET": "1", "HOME": str(tmp_path)}


def pull(env, *args, **kw):
    return subprocess.run([sys.executable, "-m", "localgw", "pull", *args], env=env,
                          capture_output=True, text=True, timeout=300, **kw)


def localgw(env, *args):
    return subprocess.run([sys.executable, "-m", "localgw", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_ref_forms_resolve_to_the_right_files(hub, env):
    hub.add("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF", {
        "smollm2-135m-instruct-q4_k_m.gguf": tiny_gguf("q4km"),
        "smollm2-135m-instruct-iq4_k_m.gguf": tiny_gguf("iq4"),
        "smollm2-135m-instruct-q8_0.gguf": tiny_gguf("q8"),
        "mmproj-smollm2-f16.gguf": tiny_gguf("mmproj"),
        "README.md": b"# readme"})

    def chosen(ref, *extra):
        out = pull(env, ref, "--dry-run", "--json", *extra)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    catalog = chosen("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert catalog["id"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert [f["path"] for f in catalog["files"]] == ["smollm2-135m-instruct-q4_k_m.gguf"]
    assert catalog["repo"] == "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
    assert len(catalog["commit"]) == 40 and catalog["license"] == "apache-2.0"
    repo = chosen("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF")
    assert repo["id"] == "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"
    assert chosen("hf.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:q8_0")["files"][0]["path"] == \
        "smollm2-135m-instruct-q8_0.gguf"
    assert chosen("HuggingFaceTB/SmolLM2-135M-Instruct", "--quant", "IQ4_K_M")["files"][0]["path"] == \
        "smollm2-135m-instruct-iq4_k_m.gguf"
    named = chosen("https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF:smollm2-135m-instruct-q8_0.gguf")
    assert named["files"][0]["path"] == "smollm2-135m-instruct-q8_0.gguf"
    assert hub.file_gets() == []  # --dry-run downloads nothing

    human = pull(env, "HuggingFaceTB/SmolLM2-135M-Instruct", "--dry-run")
    assert "Q4_K_M" in human.stderr and "apache-2.0" in human.stderr

    missing = pull(env, "HuggingFaceTB/SmolLM2-135M-Instruct:Q6_K")
    assert missing.returncode == 1
    assert "Available: HuggingFaceTB/SmolLM2-135M-Instruct-GGUF: IQ4_K_M, Q4_K_M, Q8_0" in missing.stderr
    nothing = pull(env, "nobody/Unknown-7B")
    assert nothing.returncode == 1 and "tried nobody/Unknown-7B-GGUF, bartowski/Unknown-7B-GGUF" in nothing.stderr


def test_pull_verify_register_then_serve_offline_including_a_split_set(hub, env, tmp_path):
    hub.add("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
            {"smollm2-135m-instruct-q4_1.gguf": smollm2_path()})
    # the original repo: its generation_config.json is captured at pull time
    hub.add("HuggingFaceTB/SmolLM2-135M-Instruct", {"generation_config.json": json.dumps(
        {"do_sample": True, "temperature": 0.42, "top_p": 0.77, "eos_token_id": 2}).encode()})
    shards = split_gguf(smollm2_path(), tmp_path, "smollm2-135m-instruct-q4_1", 2)
    hub.add("test/SmolSplit-GGUF", {f"Q4_1/{p.name}": p for p in shards})

    out = pull(env, "HuggingFaceTB/SmolLM2-135M-Instruct:Q4_1")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "HuggingFaceTB/SmolLM2-135M-Instruct"
    out = pull(env, "test/SmolSplit-GGUF:Q4_1", "--json")
    assert out.returncode == 0, out.stderr
    split = json.loads(out.stdout)
    assert len(split["files"]) == 2 and split["files"][0]["path"].endswith("-00001-of-00002.gguf")

    # standard HF cache layout: blobs by sha256, snapshot links, refs/main
    repo_dir = Path(env["HF_HUB_CACHE"]) / "models--HuggingFaceTB--SmolLM2-135M-Instruct-GGUF"
    commit = (repo_dir / "refs" / "main").read_text()
    link = repo_dir / "snapshots" / commit / "smollm2-135m-instruct-q4_1.gguf"
    assert link.is_symlink() and Path(os.path.realpath(link)).parent.name == "blobs"
    assert not list(repo_dir.glob("blobs/*.incomplete"))

    listed = json.loads(localgw(env, "list", "--json").stdout)
    assert {m["id"] for m in listed} == {"HuggingFaceTB/SmolLM2-135M-Instruct", "test/SmolSplit-GGUF"}
    manifest = next(m for m in listed if m["id"] == "HuggingFaceTB/SmolLM2-135M-Instruct")
    assert manifest["files"][0]["sha256"] == hub.repos["HuggingFaceTB/SmolLM2-135M-Instruct-GGUF"].files[
        "smollm2-135m-instruct-q4_1.gguf"].sha256
    assert manifest["license"] == "apache-2.0" and manifest["commit"] == commit
    assert manifest["generation_config"]["temperature"] == 0.42
    assert next(m for m in listed if m["id"] == "test/SmolSplit-GGUF")["generation_config"] is None

    # a second pull of the same model sends no file GET (and no API call either)
    before = len(hub.log)
    again = pull(env, "HuggingFaceTB/SmolLM2-135M-Instruct:Q4_1")
    assert again.returncode == 0 and "already pulled" in again.stderr
    assert len(hub.log) == before

    # the network is gone: serve still answers, for the single file and the split set
    hub.stop()
    server = ServerProcess(env={**env, "HF_HUB_OFFLINE": "1"})
    try:
        models = {m["id"]: m for m in httpx.get(server.url + "/v1/models").json()["data"]}
        # generation_config.json beats the catalogue (0.2 / 0.9) field by field
        assert models["HuggingFaceTB/SmolLM2-135M-Instruct"]["default_sampling"] == {
            "temperature": 0.42, "top_p": 0.77, "top_k": 0, "min_p": 0.0, "repetition_penalty": 1.1}
        assert models["test/SmolSplit-GGUF"]["default_sampling"]["temperature"] == 0.8
        for model in ("HuggingFaceTB/SmolLM2-135M-Instruct", "test/SmolSplit-GGUF"):
            resp = httpx.post(server.url + "/v1/chat/completions", timeout=120, json={
                "model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
                "logit_bias": {"2": -100}})  # never an empty reply, on any machine
            assert resp.status_code == 200, resp.text
            assert resp.json()["choices"][0]["message"]["content"]
    finally:
        server.stop()
    hub.start()  # so the fixture can stop it


def test_killed_pull_resumes_with_a_range_request(hub, env):
    size = smollm2_path().stat().st_size
    hub.add("HuggingFaceTB/SmolLM2-135M-Instruct-GGUF",
            {"smollm2-135m-instruct-q4_1.gguf": smollm2_path()})
    hub.throttle = 0.01  # ~6 MB/s: slow enough to kill mid-file
    proc = subprocess.Popen([sys.executable, "-m", "localgw", "pull",
                             "HuggingFaceTB/SmolLM2-135M-Instruct:Q4_1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wait_until(lambda: hub.bytes_sent() > size * 0.3, timeout=60)
    proc.kill()
    proc.wait()
    partials = list(Path(env["HF_HUB_CACHE"]).rglob("*.incomplete"))
    assert len(partials) == 1 and 0 < partials[0].stat().st_size < size
    assert json.loads(localgw(env, "list", "--json").stdout) == []  # nothing registered yet

    hub.throttle = 0
    out = pull(env, "HuggingFaceTB/SmolLM2-135M-Instruct:Q4_1")
    assert out.returncode == 0, out.stderr
    ranges = [r.headers.get("Range") or r.headers.get("range") for r in hub.file_gets()]
    assert ranges[0] is None and ranges[-1] and int(ranges[-1].split("=")[1].rstrip("-")) > 0
    assert hub.bytes_sent() < 1.2 * size
    assert len(json.loads(localgw(env, "list", "--json").stdout)) == 1


def test_sha256_mismatch_is_rejected_and_leaves_nothing(hub, env):
    good = tiny_gguf("good")
    repo = hub.add("org/Bad-GGUF", {"bad-Q4_K_M.gguf": good})
    repo.files["bad-Q4_K_M.gguf"].served_bytes = good[:-4] + b"XXXX"
    out = pull(env, "org/Bad-GGUF")
    assert out.returncode == 1
    assert "sha256 mismatch" in out.stderr and "nothing was registered" in out.stderr
    assert json.loads(localgw(env, "list", "--json").stdout) == []
    cache = Path(env["HF_HUB_CACHE"])
    assert not [p for p in cache.rglob("*") if p.is_file() and "blobs" in p.parts]


def test_gated_repo_needs_hf_token(hub, env):
    hub.add("org/Gated-GGUF", {"gated-Q4_K_M.gguf": tiny_gguf()}, gated=True)
    out = pull(env, "org/Gated-GGUF")
    assert out.returncode == 1 and "HF_TOKEN" in out.stderr and "gated" in out.stderr
    out = pull({**env, "HF_TOKEN": hub.token}, "org/Gated-GGUF")
    assert out.returncode == 0, out.stderr
    gets = hub.file_gets()
    assert gets and all(r.headers.get("Authorization") == f"Bearer {hub.token}" for r in gets)


def test_offline_and_unreachable_hub_errors(hub, env):
    out = pull({**env, "HF_HUB_OFFLINE": "1"}, "org/Anything-GGUF")
    assert out.returncode == 1 and "HF_HUB_OFFLINE=1" in out.stderr and "not in the local cache" in out.stderr
    out = pull({**env, "HF_ENDPOINT": "http://127.0.0.1:9"}, "org/Anything-GGUF")
    assert out.returncode == 1 and "cannot reach the Hub" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1

    # files another tool left in the HF cache: an offline pull registers them with no network
    hub.add("org/Tiny-GGUF", {"tiny-Q4_K_M.gguf": tiny_gguf()})
    assert pull(env, "org/Tiny-GGUF").returncode == 0
    (Path(env["LOCALGW_HOME"]) / "models" / "org__Tiny-GGUF.json").unlink()  # forget, keep files
    before = len(hub.log)
    out = pull({**env, "HF_HUB_OFFLINE": "1"}, "org/Tiny-GGUF")
    assert out.returncode == 0, out.stderr
    assert len(hub.log) == before
    assert [m["id"] for m in json.loads(localgw(env, "list", "--json").stdout)] == ["org/Tiny-GGUF"]


def test_rm_keeps_blobs_shared_with_another_model(hub, env):
    hub.add("org/Shared-GGUF", {"shared-Q4_K_M.gguf": tiny_gguf("shared")})
    assert pull(env, "org/Shared-GGUF").returncode == 0
    # the same repo registered a second time under another id shares the blob
    manifest = json.loads(localgw(env, "show", "org/Shared-GGUF", "--json").stdout)
    path = manifest["files"][0]["path"]
    assert localgw(env, "import", path, "--id", "me/copy").returncode == 0
    assert localgw(env, "rm", "org/Shared-GGUF", "--yes").returncode == 0
    assert os.path.exists(path)
    assert localgw(env, "rm", "me/copy", "--yes").returncode == 0


def test_catalog_lists_every_family(env):
    out = localgw(env, "catalog", "--json")
    ids = [e["id"] for e in json.loads(out.stdout)]
    for needle in ("Qwen/Qwen2.5-7B-Instruct", "meta-llama/Llama-3.1-8B-Instruct",
                   "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "mistralai/Mistral-7B-Instruct-v0.3"):
        assert needle in ids


def test_dropped_connection_is_retried_from_where_it_stopped(hub, env):
    data = tiny_gguf() + b"\0" * (3 << 20)
    hub.add("org/Flaky-GGUF", {"flaky-Q4_K_M.gguf": data})
    hub.drop_after = 1 << 20
    out = pull(env, "org/Flaky-GGUF")
    assert out.returncode == 0, out.stderr
    gets = hub.file_gets()
    assert len(gets) == 2
    assert int(gets[1].headers["Range"].split("=")[1].rstrip("-")) >= 1 << 20
    assert hub.bytes_sent() < 1.2 * len(data)


def test_not_enough_disk_is_refused_before_downloading(hub, env, monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import localgw.hub.download as download
    from localgw.cli.app import app

    hub.add("org/Big-GGUF", {"big-Q4_K_M.gguf": tiny_gguf()})
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: type("U", (), {"free": 1000})())
    result = CliRunner().invoke(app, ["pull", "org/Big-GGUF"])
    assert result.exit_code == 1
    assert "not enough disk space" in str(result.exception)
    assert hub.file_gets() == []


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


def rename(repo, path: str) -> str:
    repo.files[path] = repo.files.pop("ok-Q4_K_M.gguf")
    return f"file {path!r}"


def respell(repo, field: str, value: str) -> str:
    setattr(repo.files["ok-Q4_K_M.gguf"] if field == "sha256" else repo, field, value)
    return f"{field if field == 'sha256' else 'commit'} {value!r}"


# Each spoils the listing of a repo whose one model file would otherwise be pulled.
SPOILS = {"dot-dot": lambda repo, tmp: rename(repo, "../../../../evil-Q4_K_M.gguf"),
          "absolute": lambda repo, tmp: rename(repo, str(tmp / "evil-Q4_K_M.gguf")),
          "sha256-path": lambda repo, tmp: respell(repo, "sha256", "../x"),
          "sha256-63": lambda repo, tmp: respell(repo, "sha256", "a" * 63),
          "commit": lambda repo, tmp: respell(repo, "sha", "../../../x")}


@pytest.mark.parametrize("spoil", SPOILS)
def test_a_hostile_listing_is_refused_before_anything_is_written(hub, env, tmp_path, spoil):
    repo = hub.add("org/Evil-GGUF", {"ok-Q4_K_M.gguf": tiny_gguf("evil"), "README.md": b"# hi"})
    named = SPOILS[spoil](repo, tmp_path)
    before = files_under(tmp_path)
    out = pull(env, "org/Evil-GGUF")
    assert out.returncode == 1
    line = out.stderr.strip()
    assert len(line.splitlines()) == 1, out.stderr
    assert "org/Evil-GGUF" in line and named in line and "nothing was written" in line, line
    assert files_under(tmp_path) - before == set()   # not in the cache, not beside it
    assert hub.file_gets() == []
    assert json.loads(localgw(env, "list", "--json").stdout) == []


def test_a_revision_or_repo_id_that_would_leave_the_cache_is_refused(hub, env, tmp_path):
    hub.add("org/Fine-GGUF", {"fine-Q4_K_M.gguf": tiny_gguf()})
    before = files_under(tmp_path)
    for args, named in ((["org/Fine-GGUF", "--revision", "../../../x"], "revision '../../../x'"),
                        (["org/..", "--dry-run"], "not a Hugging Face model id"),
                        (["org--x/y"], "not a Hugging Face model id")):
        out = pull(env, *args)
        assert out.returncode == 1 and named in out.stderr, out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert files_under(tmp_path) - before == set()
    assert hub.log == []


def test_a_licence_from_the_hub_is_kept_as_one_printable_line(hub, env):
    hub.add("org/Lic-GGUF", {"lic-Q4_K_M.gguf": tiny_gguf()},
            license=["mit", "apache-2.0\x1b[2J\nEVIL"])
    out = pull(env, "org/Lic-GGUF", "--dry-run", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["license"] == "mit, apache-2.0[2JEVIL"
