"""Parsing of `serve` options that map onto engine settings."""

from __future__ import annotations

import pytest
import typer

from localgw.cli.serve_options import _flash_attn


@pytest.mark.parametrize("value,expected", [("auto", None), ("on", True), ("OFF", False)])
def test_flash_attn_values(value, expected):
    assert _flash_attn(value) is expected


def test_flash_attn_rejects_anything_else():
    with pytest.raises(typer.BadParameter, match="not auto, on or off"):
        _flash_attn("maybe")
