"""Health as the real model reports it. Request ids, metrics, CORS and the browser guard are
tested in-process over the fake engine (tests/unit/test_surface_fake.py)."""


def test_health(http):
    body = http.get("/health").json()
    assert body["status"] == "ok"
    assert body["models"][0]["context_length"] == 8192
