"""Fetching from a hostile or broken mirror: a gzip bomb, a server that drips a byte at a
time, malformed answers and URLs, and credentials in the mirror URL. Each is that
source's failure, in one line, and the next source is tried; memory and time stay bounded."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time

import pytest

from mnist_pipeline import download
from mnist_pipeline.mnist import FILES, TEST_LABELS, TRAIN_IMAGES

from .helpers import (
    MIRROR_PASSWORD,
    MIRROR_USER,
    PROJECT_ROOT,
    project_env,
    run_fetch,
    run_measured,
)

# stages/fetch.py as a process of its own, with loopback mirrors (argv[1:]) standing in
# for the public ones, so no test leaves this machine.
FETCH_WITH_LOOPBACK_MIRRORS = f"""
import runpy, sys
from mnist_pipeline import download
download.PUBLIC_MIRRORS = tuple(sys.argv[1:])
sys.argv = ["fetch.py"]
runpy.run_path({str(PROJECT_ROOT / "stages" / "fetch.py")!r}, run_name="__main__")
"""


def fetch_process(workdir, mirror: str, *public: str) -> tuple[int, str, int]:
    """Run the fetch stage in a process of its own; its exit code, its stderr, and its
    peak resident memory in MB."""
    result, peak_mb = run_measured(
        [sys.executable, "-c", FETCH_WITH_LOOPBACK_MIRRORS, *public],
        cwd=workdir,
        env=project_env(workdir, MNIST_MIRROR=mirror, MNIST_TIMEOUT="2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return result.returncode, result.stderr, peak_mb


def test_a_gzip_bomb_is_stopped_at_the_files_size_with_bounded_memory(
    mnist_mirror, serve, tmp_path
):
    bomb, good = serve(mnist_mirror, mode="bomb"), serve(mnist_mirror)
    started = time.monotonic()
    code, stderr, peak_mb = fetch_process(tmp_path, bomb.url, good.url)
    assert code == 0, stderr
    assert stderr.splitlines() == [
        f"fetch: MNIST_MIRROR={bomb.url} failed: {TRAIN_IMAGES.download_name}: decompresses "
        f"to more than the 47,040,016 bytes of {TRAIN_IMAGES.name}: not this file (stopped there)"
    ]
    assert peak_mb < 300, f"fetch peaked at {peak_mb} MB against a 1 GiB gzip bomb"
    assert time.monotonic() - started < 30
    assert len(bomb.requests) == 1  # a bomb is not retried, nor asked for the other files


@pytest.mark.parametrize("mode", ["drip", "drip-headers"])  # after the headers, or during
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_mirror_that_drips_bytes_fails_at_the_deadline_and_the_next_is_tried(
    mnist_mirror, serve, tmp_path, monkeypatch, capsys, tls_certificate, scheme, mode
):
    monkeypatch.setenv(download.DEADLINE_ENV, "1.5")
    tls = tls_certificate if scheme == "https" else None
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_certificate))  # trust the test's certificate
    drip, good = serve(mnist_mirror, mode=mode, tls=tls), serve(mnist_mirror)
    started = time.monotonic()
    assert run_fetch(monkeypatch, tmp_path, drip.url, public=(good.url,)) == 0
    assert time.monotonic() - started < 1.5 + 5  # the deadline, then the good mirror
    assert len(drip.requests) == 1  # not retried: it would only drip again
    err = capsys.readouterr().err
    assert f"MNIST_MIRROR={drip.url} failed: {FILES[0].download_name}: took longer " in err
    assert "than the 1.5 s allowed per file (MNIST_DEADLINE)" in err


@pytest.mark.parametrize(
    ("mirror", "reason"),
    [
        ("bad-length", "malformed Content-Length header 'abc'"),
        ("redirect-ftp", "redirected to a 'ftp' URL; only http(s) redirects are followed"),
        ("http://[::1", "not a valid URL: it needs a host name, a port (if any) that is a number"),
        ("http://127.0.0.1:port/", "not a valid URL: it needs a host name, a port (if any)"),
        ("ftp://127.0.0.1/mnist", "unsupported URL scheme 'ftp': use a folder or an http(s) URL"),
    ],
)
def test_a_malformed_answer_or_url_is_that_sources_failure_and_the_next_is_tried(
    mnist_mirror, serve, tmp_path, monkeypatch, capsys, mirror, reason
):
    good = serve(mnist_mirror)
    if mirror in ("bad-length", "redirect-ftp"):
        mirror = serve(mnist_mirror, mode=mirror).url
    assert run_fetch(monkeypatch, tmp_path, mirror, public=(good.url,)) == 0
    err = capsys.readouterr().err
    assert f"fetch: MNIST_MIRROR={mirror} failed: {FILES[0].download_name}: {reason}" in err
    assert "Traceback" not in err
    assert len(good.requests) == len(FILES)


def test_credentials_in_the_mirror_url_are_sent_and_never_printed(
    mnist_mirror, serve, tmp_path, monkeypatch, capsys
):
    guarded = serve(mnist_mirror, mode="auth")
    with_password = guarded.url.replace("://", f"://{MIRROR_USER}:{MIRROR_PASSWORD}@")
    assert run_fetch(monkeypatch, tmp_path, with_password, public=()) == 0
    out, err = capsys.readouterr()
    assert f"from MNIST_MIRROR={guarded.url.replace('://', '://***@')}" in out

    refused = serve(mnist_mirror, mode="404")
    with_password = refused.url.replace("://", f"://{MIRROR_USER}:{MIRROR_PASSWORD}@")
    assert run_fetch(monkeypatch, tmp_path / "data", with_password, public=()) == 1
    more_out, more_err = capsys.readouterr()
    assert f"MNIST_MIRROR={refused.url.replace('://', '://***@')}" in more_err
    # A password with an unescaped / cannot be parsed as one: still never printed.
    unparsable = refused.url.replace("://", f"://{MIRROR_USER}:{MIRROR_PASSWORD}/x:9@")
    assert run_fetch(monkeypatch, tmp_path / "data", unparsable, public=()) == 1
    last_out, last_err = capsys.readouterr()
    assert "not a valid URL" in last_err
    for text in (out, err, more_out, more_err, last_out, last_err):
        assert MIRROR_PASSWORD not in text and MIRROR_USER not in text


def test_a_gzip_of_several_members_is_accepted(mnist_mirror, tmp_path):
    data = gzip.decompress((mnist_mirror / TEST_LABELS.download_name).read_bytes())
    halves = gzip.compress(data[:5000], mtime=0) + gzip.compress(data[5000:], mtime=0)
    (tmp_path / TEST_LABELS.download_name).write_bytes(halves + bytes(100))  # zero padding
    download.fetch_file(str(tmp_path), TEST_LABELS, tmp_path / "out", download.limits())
    assert (tmp_path / "out").read_bytes() == data


def test_a_local_file_too_large_to_be_a_gzip_of_mnist_is_refused_unread(tmp_path):
    with open(tmp_path / TRAIN_IMAGES.download_name, "wb") as huge:
        huge.truncate(10 * TRAIN_IMAGES.size)  # sparse: no disk space used
    with pytest.raises(download.FetchFailed, match="is larger than a gzip of this file can be"):
        download.fetch_file(str(tmp_path), TRAIN_IMAGES, tmp_path / "out", download.limits())


@pytest.mark.parametrize("value", ["abc", "0", "-5", "inf", "\x1b[31m"])
def test_an_invalid_deadline_setting_is_a_one_line_error(monkeypatch, value):
    monkeypatch.setenv(download.DEADLINE_ENV, value)
    with pytest.raises(download.StageError) as error:
        download.limits()
    assert str(error.value).startswith("MNIST_DEADLINE=")
    assert str(error.value).endswith("is invalid: expected a positive number of seconds")
    assert "\x1b" not in str(error.value)
