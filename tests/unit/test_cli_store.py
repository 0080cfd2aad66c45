"""The store commands, run as a user runs them: `localgw …` in a subprocess with its own home."""

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import smollm2_path


def localgw(home, *args, stdin=None):
    env = dict(os.environ, LOCALGW_HOME=str(home))
    env.pop("LOCALGW_DEBUG", None)
    return subprocess.run([sys.executable, "-m", "localgw", *args], capture_output=True, text=True,
                          env=env, timeout=60, input=stdin)


def test_import_list_show_rm(tmp_path):
    out = localgw(tmp_path, "import", str(smollm2_path()), "--id", "me/smol")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "me/smol"
    assert "Q4_1" in out.stderr

    listed = json.loads(localgw(tmp_path, "list", "--json").stdout)
    assert [m["id"] for m in listed] == ["me/smol"]
    assert listed[0]["quantization"] == "Q4_1" and listed[0]["files"][0]["size"] > 90_000_000

    human = localgw(tmp_path, "list").stdout
    assert "me/smol" in human and "Q4_1" in human

    shown = json.loads(localgw(tmp_path, "show", "me/smol", "--json").stdout)
    assert shown["gguf"]["architecture"] == "llama"
    assert shown["gguf"]["context_length"] == 8192
    assert shown["gguf"]["license"] == "apache-2.0"
    assert shown["template_family"] == "chatml"
    assert "parameters" in localgw(tmp_path, "show", "me/smol").stdout

    removed = localgw(tmp_path, "rm", "me/smol", "--yes")
    assert removed.returncode == 0
    assert smollm2_path().exists()  # an imported file belongs to the user: never deleted
    assert json.loads(localgw(tmp_path, "list", "--json").stdout) == []


def test_import_uses_file_stem_by_default(tmp_path):
    out = localgw(tmp_path, "import", str(smollm2_path()))
    assert out.stdout.strip() == "SmolLM2-135M-Instruct.Q4_1"


@pytest.mark.parametrize("args,needle", [
    (["import", "/no/such/file.gguf"], "no such file"),
    (["show", "nothing/here"], "no model 'nothing/here'"),
    (["rm", "nothing/here", "--yes"], "no model"),
    (["import", __file__], "not a .gguf file"),
    (["ps", "--url", "http://127.0.0.1:9"], "no localgw server answers"),
])
def test_errors_are_one_line_exit_1(tmp_path, args, needle):
    out = localgw(tmp_path, *args)
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and lines[0].startswith("localgw: error:")
    assert out.stdout == ""


def test_rm_without_yes_and_no_terminal_refuses(tmp_path):
    localgw(tmp_path, "import", str(smollm2_path()), "--id", "a/b")
    out = localgw(tmp_path, "rm", "a/b")
    assert out.returncode == 1 and "--yes" in out.stderr


def test_corrupt_gguf_import_is_refused(tmp_path):
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\xff" * 64)
    out = localgw(tmp_path, "import", str(bad))
    assert out.returncode == 1 and "GGUF" in out.stderr
    assert json.loads(localgw(tmp_path, "list", "--json").stdout) == []


def test_usage_error_exit_2(tmp_path):
    assert localgw(tmp_path, "serve", "--port", "notanumber").returncode == 2
