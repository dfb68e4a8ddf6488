"""The fetch stage: real downloads from a mirror on 127.0.0.1 or a local folder,
checksums, retries, and the report when every source fails."""

from __future__ import annotations

import gzip

import pytest

from mnist_pipeline import download
from mnist_pipeline.mnist import FILES, TEST_LABELS

from .helpers import run_fetch

LIMITS = download.Limits(timeout=0.5, deadline=10)


def test_fetches_every_file_over_http_from_loopback_mirror(
    mnist_mirror, serve, tmp_path, monkeypatch, capsys
):
    mirror = serve(mnist_mirror)
    assert run_fetch(monkeypatch, tmp_path, mirror.url, public=()) == 0
    raw = tmp_path / "data" / "raw"
    assert sorted(p.name for p in raw.iterdir()) == sorted(f.name for f in FILES)
    assert sorted(mirror.requests) == sorted(f"/{f.download_name}" for f in FILES)
    assert "from MNIST_MIRROR=http://127.0.0.1" in capsys.readouterr().out


def test_falls_back_to_next_source_when_first_mirror_fails(
    mnist_mirror, serve, tmp_path, monkeypatch, capsys
):
    broken = serve(mnist_mirror, mode="404")
    working = serve(mnist_mirror)
    assert run_fetch(monkeypatch, tmp_path, broken.url, public=(working.url,)) == 0
    assert len(broken.requests) == 1  # a source that failed once is not asked again
    assert len(working.requests) == len(FILES)
    assert "HTTP 404" in capsys.readouterr().err


def test_every_source_failing_reports_each_and_leaves_no_raw_data(
    mnist_mirror, serve, tmp_path, monkeypatch, capsys
):
    not_found = serve(mnist_mirror, mode="404")
    server_error = serve(mnist_mirror, mode="500")
    empty_folder = tmp_path / "empty"
    empty_folder.mkdir()
    code = run_fetch(
        monkeypatch, tmp_path, str(empty_folder), public=(not_found.url, server_error.url)
    )
    assert code == 1
    err = capsys.readouterr().err
    assert "fetch: error: could not download MNIST; every source failed:" in err
    assert f"MNIST_MIRROR={empty_folder}: train-images-idx3-ubyte.gz: " in err
    assert f"{not_found.url}: train-images-idx3-ubyte.gz: HTTP 404" in err
    assert f"{server_error.url}: train-images-idx3-ubyte.gz: HTTP 500" in err
    assert "Set MNIST_MIRROR to a folder" in err
    assert "Traceback" not in err
    assert len(server_error.requests) == 2  # a 5xx is retried once
    assert not (tmp_path / "data" / "raw").exists()
    assert not list((tmp_path / "data").iterdir())  # no staging leftovers either


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("truncate", "connection closed after"),
        ("garbage", "not a valid gzip file"),
        ("stall", "timed out"),
    ],
)
def test_a_damaged_or_stalled_transfer_is_retried_then_reported(
    mnist_mirror, serve, tmp_path, mode, reason
):
    mirror = serve(mnist_mirror, mode=mode, stall_s=2.5)
    with pytest.raises(download.FetchFailed, match=reason):
        download.fetch_file(mirror.url, TEST_LABELS, tmp_path / "out", LIMITS)
    assert len(mirror.requests) == download.ATTEMPTS_PER_SOURCE
    assert not (tmp_path / "out").exists()


def test_rejects_a_file_whose_decompressed_bytes_do_not_match_the_pinned_checksum(tmp_path):
    (tmp_path / TEST_LABELS.download_name).write_bytes(gzip.compress(b"not the MNIST labels"))
    with pytest.raises(
        download.FetchFailed, match=r"checksum mismatch: sha256 \w+\.\.\., expected ff7bcfd416de"
    ):
        download.fetch_file(str(tmp_path), TEST_LABELS, tmp_path / "out", LIMITS)


def test_accepts_a_differently_compressed_copy_of_the_right_bytes(mnist_mirror, tmp_path):
    data = gzip.decompress((mnist_mirror / TEST_LABELS.download_name).read_bytes())
    (tmp_path / TEST_LABELS.download_name).write_bytes(
        gzip.compress(data, compresslevel=1, mtime=0)
    )
    download.fetch_file(str(tmp_path), TEST_LABELS, tmp_path / "out", LIMITS)
    assert (tmp_path / "out").read_bytes() == data


def test_mirror_folder_that_does_not_exist_is_a_source_failure(tmp_path):
    with pytest.raises(download.FetchFailed, match="is not a directory"):
        download.fetch_file(str(tmp_path / "nowhere"), TEST_LABELS, tmp_path / "out", LIMITS)


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf"])
def test_invalid_timeout_setting_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv(download.TIMEOUT_ENV, value)
    with pytest.raises(download.StageError, match=f"MNIST_TIMEOUT='{value}' is invalid"):
        download.timeout_s()


def test_mnist_mirror_is_tried_before_the_public_mirrors(monkeypatch):
    monkeypatch.setenv(download.MIRROR_ENV, "/srv/mnist")
    assert download.sources() == ["/srv/mnist", *download.PUBLIC_MIRRORS]
    monkeypatch.delenv(download.MIRROR_ENV)
    assert download.sources() == list(download.PUBLIC_MIRRORS)
