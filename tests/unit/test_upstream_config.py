"""upstreams.toml and `serve --upstream`: what is accepted, and errors a person can act on."""

import pytest

from localgw.errors import ConfigError
from localgw.upstreams.config import DEFAULT_TIMEOUT, UpstreamConfig, load, parse_flag, read_file


def test_flag_forms():
    assert parse_flag("http://10.0.0.5:8000") == UpstreamConfig("10.0.0.5:8000", "http://10.0.0.5:8000/v1")
    assert parse_flag("gpu=http://10.0.0.5:8000/v1/").url == "http://10.0.0.5:8000/v1"
    assert parse_flag("gpu=https://example.com/api").url == "https://example.com/api/v1"
    assert parse_flag("gpu=http://h:1").name == "gpu"
    # an '=' in the URL's query is not a name
    assert parse_flag("http://h:1/v1?a=b").name == "h:1"


@pytest.mark.parametrize("bad", ["ftp://h/v1", "gpu=", "not a url", "a/b=http://h:1"])
def test_bad_flags(bad):
    with pytest.raises(ConfigError):
        parse_flag(bad)


def test_file(tmp_path):
    (tmp_path / "upstreams.toml").write_text('''
[[upstream]]
name = "gpu-box"
url = "http://10.0.0.5:8000/v1"
api_key_env = "GPU_BOX_KEY"
models = ["Qwen/Qwen3-235B-A22B"]
max_concurrency = 16
timeout = "10m"

[[upstream]]
url = "http://127.0.0.1:9000"
''')
    first, second = load(["extra=http://127.0.0.1:9001"], tmp_path)[:2]
    assert first == UpstreamConfig("gpu-box", "http://10.0.0.5:8000/v1", "GPU_BOX_KEY",
                                   ("Qwen/Qwen3-235B-A22B",), 16, 600.0)
    assert second.name == "127.0.0.1:9000" and second.timeout == DEFAULT_TIMEOUT
    assert [c.name for c in load(["extra=http://127.0.0.1:9001"], tmp_path)][-1] == "extra"


def test_no_file_is_no_upstreams(tmp_path):
    assert load([], tmp_path) == []


@pytest.mark.parametrize("entry, says", [
    ('url = "http://h:1"\napi_key = "sk-123"', "unknown key"),
    ('name = "x"', "`url` is required"),
    ('url = "http://h:1"\napi_key_env = "sk-live-123 456"', "of an environment variable"),
    ('url = "http://h:1"\nmax_concurrency = 0', "max_concurrency"),
    ('url = "http://h:1"\ntimeout = "soon"', "timeout"),
    ('url = "http://h:1"\nmodels = "one"', "models"),
    ('url = "http://h:1"\nname = "a/b"', "letters, digits"),
])
def test_file_errors(tmp_path, entry, says):
    (tmp_path / "upstreams.toml").write_text(f"[[upstream]]\n{entry}\n")
    with pytest.raises(ConfigError, match=says):
        read_file(tmp_path / "upstreams.toml")


def test_unreadable_toml_names_the_file(tmp_path):
    (tmp_path / "upstreams.toml").write_text("[[upstream]\n")
    with pytest.raises(ConfigError, match="upstreams.toml"):
        read_file(tmp_path / "upstreams.toml")


def test_duplicate_names(tmp_path):
    with pytest.raises(ConfigError, match="two upstreams are named 'a'"):
        load(["a=http://h:1", "a=http://h:2"], tmp_path)


def test_shown_url_drops_credentials():
    c = parse_flag("x=https://user:secret@example.com:8443/v1")
    assert c.shown_url == "https://example.com:8443/v1"
