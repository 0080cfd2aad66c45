"""The HTTP protocol `serve` (and the chat app's in-process server) runs."""

from localgw.cli.serve import uvicorn_config


async def _app(scope, receive, send):
    pass


def test_serve_runs_uvicorns_httptools_protocol_by_its_public_name():
    config = uvicorn_config(_app, "127.0.0.1", 0, log_config=None)
    assert config.http == "httptools"  # not "auto": no silent fall back to h11
    config.load()  # imports the protocol: fails here if httptools is not installed
    assert config.loaded
