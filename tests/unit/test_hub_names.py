"""Names from the Hub become cache paths: the listing checks and the path helpers' own refusals."""

from __future__ import annotations

import os

import pytest

from localgw.errors import HubError, InvalidRequest
from localgw.hub.cache import blob_path, cached_fetcher, link_snapshot, snapshot_path, write_ref
from localgw.hub.download import Downloader, Job
from localgw.hub.names import check_commit, check_files, check_revision, path_problem
from localgw.hub.resolve import parse_ref
from localgw.hub.select import RepoFile

SHA = "0123456789abcdef" * 4
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.mark.parametrize("path", ["m.gguf", "Q4_K_M/m-00001-of-00002.gguf", "a/b/c.gguf",
                                  "..m.gguf", "m..gguf", ".hidden", "spaced name.gguf"])
def test_relative_posix_paths_are_fine(path):
    assert path_problem(path) is None


@pytest.mark.parametrize("path,problem", [
    ("", "empty"), ("../m.gguf", "'..'"), ("a/../../m.gguf", "'..'"), ("a/./m.gguf", "'.'"),
    ("a//m.gguf", "empty"), ("a/", "empty"), ("/etc/m.gguf", "absolute"), ("a\\..\\m.gguf", "backslash"),
    ("m\x00.gguf", "control"), ("m\n.gguf", "control"), (None, "empty"), (7, "empty")])
def test_paths_that_could_leave_their_folder_are_refused(path, problem):
    assert problem in path_problem(path)


def test_commit_and_sha256_are_exact_lower_case_hex():
    assert check_commit("o/r", COMMIT) == COMMIT
    for bad in (COMMIT.upper(), COMMIT[:-1], COMMIT + "\n", "../" + COMMIT[3:], None):
        with pytest.raises(HubError, match="o/r.*commit"):
            check_commit("o/r", bad)
    check_files("o/r", [RepoFile("m.gguf", 1, SHA), RepoFile("README.md", 5, None)])
    for bad in (SHA[:-1], SHA.upper(), "../" + SHA[3:], SHA + "\n"):
        with pytest.raises(HubError, match=r"o/r is unusable: sha256 .* of 'm.gguf'"):
            check_files("o/r", [RepoFile("m.gguf", 1, bad)])


@pytest.mark.parametrize("files,named", [
    ([RepoFile("../../evil.gguf", 1, SHA)], "file '../../evil.gguf' has an empty"),
    ([RepoFile("m.gguf", -1, SHA)], "size -1 of 'm.gguf'"),
    ([RepoFile("m.gguf", "1", SHA)], "size '1' of 'm.gguf'"),
    ([RepoFile("m.gguf", 1, SHA), RepoFile("m.gguf/x.gguf", 1, SHA)], "'m.gguf/x.gguf' lies under"),
])
def test_a_listing_with_a_bad_entry_is_refused_naming_it(files, named):
    with pytest.raises(HubError, match="nothing was written") as err:
        check_files("org/Repo-GGUF", files)
    assert "org/Repo-GGUF" in err.value.message and named in err.value.message
    assert err.value.code == "bad_listing"


def test_revision_and_repo_id_from_the_command_line():
    assert check_revision("feature/x") == "feature/x" and check_revision(None) is None
    for bad in ("../x", "/abs", "a/../../b", "a\\b", ""):
        with pytest.raises(InvalidRequest, match="revision"):
            check_revision(bad)
    for bad in ("org/..", "org--x/y", "a/b/c", "../x"):
        with pytest.raises(InvalidRequest, match="not a Hugging Face model id"):
            parse_ref(bad)


def test_cache_helpers_refuse_whatever_the_caller_passes(tmp_path):
    assert snapshot_path(tmp_path, "o/r", COMMIT, "d/m.gguf") == \
        tmp_path / "models--o--r" / "snapshots" / COMMIT / "d" / "m.gguf"
    refused = [lambda: snapshot_path(tmp_path, "o/r", COMMIT, "../../../../evil.gguf"),
               lambda: snapshot_path(tmp_path, "o/r", COMMIT, "/tmp/evil.gguf"),
               lambda: snapshot_path(tmp_path, "o/r", "../" * 3 + "x", "m.gguf"),
               lambda: blob_path(tmp_path, "o/r", "../../x"),
               lambda: blob_path(tmp_path, "../../x", SHA),
               lambda: write_ref(tmp_path, "o/r", "../../../ref", COMMIT),
               lambda: write_ref(tmp_path, "o/r", "main", "../" * 3 + "x"),
               lambda: link_snapshot(tmp_path, "o/r", COMMIT, "../../../evil.gguf", SHA)]
    for call in refused:
        with pytest.raises(HubError, match="refusing a cache path"):
            call()
    assert list(tmp_path.rglob("*")) == []


def test_a_linked_folder_inside_the_snapshot_does_not_lead_out(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    snap = tmp_path / "hf" / "models--o--r" / "snapshots" / COMMIT
    snap.mkdir(parents=True)
    os.symlink(outside, snap / "sub")
    with pytest.raises(HubError, match="is not inside"):
        link_snapshot(tmp_path / "hf", "o/r", COMMIT, "sub/m.gguf", SHA)
    assert list(outside.iterdir()) == []


def test_the_downloader_refuses_a_hostile_job_before_any_request(tmp_path):
    asked = []
    downloader = Downloader("http://127.0.0.1:9", {}, tmp_path, sleep=asked.append)
    for job in (Job("o/r", COMMIT, RepoFile("../../../../evil.gguf", 4, SHA)),
                Job("o/r", COMMIT, RepoFile("m.gguf", 4, "../../x")),
                Job("o/r", "../x", RepoFile("m.gguf", 4, SHA))):
        with pytest.raises(HubError):
            downloader.fetch(job)
    assert asked == [] and not any(p.is_file() for p in tmp_path.rglob("*"))


def test_offline_listing_ignores_a_ref_that_is_not_a_commit(tmp_path):
    refs = tmp_path / "models--o--r" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("../../..")
    assert cached_fetcher(tmp_path, None)("o/r") is None
