"""Helpers for the tests: an HTTP mirror on 127.0.0.1, copies of the project to run
stages and DVC in, and ways to run commands there and wait for them (DVC's experiment
queue among them)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import functools
import gzip
import http.server
import json
import os
import re
import runpy
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from mnist_pipeline import download

from . import project as mnist_project
from .project import COMMAND, set_params

__all__ = ["COMMAND", "set_params"]  # re-exported for the tests

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# params for a quick run: 2,000 training and 1,000 validation images, one epoch, and a
# robustness suite built from 100 test images
SMALL = {
    "preprocess": {"max_train": 2000, "val_size": 1000},
    "train": {"epochs": 1},
    "robustness": {"test_images": 100},
}


# A gzip file of 1,024 members, each 1 MiB of zeros: 1 MB that inflates to 1 GiB.
GZIP_BOMB = gzip.compress(bytes(1 << 20), mtime=0) * 1024
MIRROR_USER, MIRROR_PASSWORD = "reader", "s3cret-token"


class MirrorHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder, or misbehaves as `server.mode` says: 404, 500, truncate, garbage,
    stall, bomb (a gzip bomb), drip (a byte every 0.2 s, after the headers or during
    them), bad-length (Content-Length: abc), redirect-ftp (to an ftp:// URL); auth serves
    only with a Basic user:password."""

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # the client gave up, as it may
            super().handle()

    def do_GET(self) -> None:
        server = self.server
        with server.requested:
            server.requests.append(self.path)
            server.requested.notify_all()
        mode = server.mode
        if mode == "auth":
            token = base64.b64encode(f"{MIRROR_USER}:{MIRROR_PASSWORD}".encode()).decode()
            if self.headers.get("Authorization") != f"Basic {token}":
                return self.send_error(401)
            mode = "ok"
        if mode == "ok":
            return super().do_GET()
        if mode in ("404", "500"):
            return self.send_error(int(mode))
        if mode == "redirect-ftp":
            self.send_response(302)
            self.send_header("Location", f"ftp://127.0.0.1:1{self.path}")
            return self.end_headers()
        if mode == "drip-headers":
            return self._drip(b"HTTP/1.0 200 OK\r\nContent-Length: 100000\r\n")
        body = (Path(self.directory) / self.path.lstrip("/")).read_bytes()
        if mode == "bomb":
            body = GZIP_BOMB
        self.send_response(200)
        self.send_header("Content-Length", "abc" if mode == "bad-length" else str(len(body)))
        self.end_headers()
        if mode in ("bomb", "bad-length"):
            self.wfile.write(body)
        elif mode == "drip":
            self._drip(body)
        elif mode == "truncate":
            self.wfile.write(body[: len(body) // 2])
        elif mode == "garbage":
            self.wfile.write(bytes(len(body)))
        elif mode == "stall":
            self.wfile.write(body[:100])
            self.wfile.flush()
            time.sleep(server.stall_s)
        self.close_connection = True

    def _drip(self, data: bytes) -> None:
        for byte in data:
            self.wfile.write(bytes([byte]))
            self.wfile.flush()
            time.sleep(0.2)


class LoopbackMirror:
    """A real HTTP server on 127.0.0.1 serving `folder` in a background thread."""

    def __init__(
        self, folder: Path, mode: str = "ok", stall_s: float = 3.0, tls: Path | None = None
    ) -> None:
        handler = functools.partial(MirrorHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.server.daemon_threads = True
        self.server.mode = mode
        self.server.stall_s = stall_s
        self.server.requests = []
        self.server.requested = threading.Condition()  # notified at each request
        scheme = "http"
        if tls is not None:  # HTTPS, with the certificate and key in the PEM file `tls`
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_port}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def requests(self) -> list[str]:
        return self.server.requests

    def wait_for_requests(self, count: int = 1, timeout: float = 60) -> None:
        """Block until the mirror has been asked for `count` files; fail the test if that
        has not happened within `timeout` seconds."""
        with self.server.requested:
            arrived = self.server.requested.wait_for(
                lambda: len(self.server.requests) >= count, timeout
            )
        assert arrived, f"{count} request(s) expected within {timeout} s; got {self.requests}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def run_fetch(monkeypatch, workdir: Path, mirror: str | None, public: tuple[str, ...]) -> int:
    """Run stages/fetch.py in-process in `workdir`, with loopback URLs standing in for the
    public mirrors so no test ever leaves this machine. Returns the exit code."""
    monkeypatch.chdir(workdir)
    monkeypatch.setattr(download, "PUBLIC_MIRRORS", public)
    monkeypatch.setenv(download.TIMEOUT_ENV, "1")
    if mirror is None:
        monkeypatch.delenv(download.MIRROR_ENV, raising=False)
    else:
        monkeypatch.setenv(download.MIRROR_ENV, mirror)
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(str(PROJECT_ROOT / "stages" / "fetch.py"), run_name="__main__")
        raise SystemExit(0)
    return exit_info.value.code


def self_signed_certificate(folder: Path) -> Path:
    """A PEM file holding a key and a certificate for 127.0.0.1, made with openssl."""
    pem = folder / "127.0.0.1.pem"
    command = ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
    command += ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
    command += ["-keyout", str(pem), "-out", str(folder / "certificate.pem")]
    subprocess.run(
        command,
        check=True,
        capture_output=True,
    )
    pem.write_text(pem.read_text() + (folder / "certificate.pem").read_text())
    return pem


# Runs argv[2:] and writes its peak resident memory (KiB) to the file argv[1]. A child
# forked by pytest itself would count pytest's own memory (TensorFlow, often) in its
# peak: Linux carries the high-water mark from before exec over to after it.
_LAUNCHER = """
import os, subprocess, sys
child = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(child.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(command: list[str], **run_kwargs) -> tuple[subprocess.CompletedProcess, int]:
    """subprocess.run(command, **run_kwargs), and the command's own peak resident memory
    in MiB, as the kernel counted it for that process."""
    with tempfile.TemporaryDirectory() as folder:
        peak_file = Path(folder) / "peak-kib"
        result = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, str(peak_file), *command], **run_kwargs
        )
        return result, int(peak_file.read_text()) // 1024


def project_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment for running stages or DVC in a project copy at `root`: the user's, with
    no DVC analytics and git's identity for commits (`root` is where the command runs)."""
    env = dict(os.environ)
    env.update(
        DVC_NO_ANALYTICS="1",
        **mnist_project.GIT_IDENTITY,
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


def copy_project(destination: Path) -> Path:
    """Copy the project's source files (what git tracks, or would) to `destination`, as a
    fresh git repository with one commit."""
    return mnist_project.copy_project(PROJECT_ROOT, destination, untracked=True)


def project_with_outputs(trained: Path, destination: Path, *outputs: str) -> Path:
    """A fresh copy of the project (see copy_project; params: SMALL, one epoch) holding
    copies of the given outputs (files or folders) of the trained project `trained`, which
    is only read: for a test to damage them, or to run one stage on them."""
    root = copy_project(destination)
    set_params(root, {**SMALL, "train": {"epochs": 1}})
    for output in outputs:
        source, target = trained / output, root / output
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    return root


def clone_with_remote(source: Path, destination: Path, remote: Path, name: str = "shared") -> Path:
    """`git clone` of `source`, with the DVC remote `remote` as its default (local config)."""
    subprocess.run(["git", "clone", "-q", str(source), str(destination)], check=True)
    run_dvc(destination, "remote", "add", "--default", "--local", name, str(remote))
    return destination


def dvc(root: Path, *args: str, timeout: float = 900, **env: str) -> subprocess.CompletedProcess:
    """Run `dvc <args>` in the project at `root`, whether it succeeds or not."""
    return subprocess.run(
        ["dvc", *args],
        cwd=root,
        env=project_env(root, **env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_dvc(root: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run `dvc <args>` in the project at `root`; fail the test, with DVC's output, if it fails."""
    result = dvc(root, *args, **env)
    assert result.returncode == 0, f"dvc {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


def stage_errors(stderr: str, stage: str) -> list[str]:
    """The stage's own lines on stderr (`<stage>: ...`; TensorFlow's native notes aside),
    after checking that Python printed no traceback."""
    assert "Traceback" not in stderr, stderr
    return [line for line in stderr.splitlines() if line.startswith(f"{stage}:")]


def assert_one_line(message: str) -> None:
    """`message` is one line of text: not empty, no line break."""
    assert message and "\n" not in message and "\r" not in message, repr(message)


def stages_run(dvc_output: str) -> list[str]:
    """The stages a `dvc repro` or `dvc exp run` ran, in order, from its output."""
    return re.findall(r"Running stage '(\w+)'", dvc_output)


def git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=root, env=project_env(root), capture_output=True, text=True, check=True
    ).stdout


def run_command(root: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run `mnist-pipeline <args>` in the project at `root`, its output captured."""
    return subprocess.run(
        [COMMAND, *args],
        cwd=root,
        env=project_env(root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_script(root: Path, script: str, **env: str) -> subprocess.CompletedProcess:
    """Run `python stages/<script>.py` in the project at `root`."""
    return subprocess.run(
        [sys.executable, f"stages/{script}.py"],
        cwd=root,
        env=project_env(root, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _default_ctrl_c() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@contextlib.contextmanager
def in_background(root: Path, *command: str, **env: str) -> Iterator[subprocess.Popen]:
    """`command` in `root`, in its own process group (like a terminal's foreground job),
    its output merged into stdout; killed at the end of the block if still running.

    As in a terminal, Ctrl-C (SIGINT) is not ignored, even when the tests themselves run
    as a background job of a script (whose commands start with SIGINT ignored)."""
    process = subprocess.Popen(
        list(command),
        cwd=root,
        env=project_env(root, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_default_ctrl_c,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
        process.stdout.close()


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> object:
    """Call `condition` every 0.2 s until it returns something true, and return that; fail
    the test, naming `what` it waited for, if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout} s for {what}, in vain")
        time.sleep(0.2)
    return found


def read_until(process: subprocess.Popen, marker: str) -> str:
    """Read the process's output up to and including the first line holding `marker`."""
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} never appeared in:\n{''.join(seen)}")


@dataclasses.dataclass
class ModelServer:
    """A running `mnist-pipeline serve`: its base URL and what it has printed so far."""

    url: str
    output: list[str]
    pid: int

    def call(
        self,
        path: str,
        body: bytes | None = None,
        method: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict]:
        """(status, JSON answer) of one request; POST when there is a body, of
        Content-Type application/json unless `headers` say otherwise."""
        headers = {"Content-Type": "application/json", **(headers or {})}
        request = urllib.request.Request(self.url + path, body, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, json.loads(error.read())


def training_results(root: Path) -> tuple[bytes, bytes]:
    """The bytes of the test metrics and of the training log's summary in the project."""
    return (root / "reports/metrics.json").read_bytes(), (
        root / "dvclive/metrics.json"
    ).read_bytes()


def trained_weights(root: Path) -> list[np.ndarray]:
    """The weights of the model the train stage saved in the project at `root`."""
    from mnist_pipeline.model import load_model  # registers the model family's own layers

    return load_model(root / "models/model.keras").get_weights()


def assert_same_weights(root: Path, expected: list[np.ndarray]) -> None:
    """The model the train stage saved at `root` has exactly the weights `expected`."""
    for found, wanted in zip(trained_weights(root), expected, strict=True):
        assert np.array_equal(found, wanted)


def training_log_files(root: Path) -> dict[str, bytes]:
    """Every file DVCLive wrote in the project at `root`, by path."""
    log = root / "dvclive"
    files = sorted(p for p in log.rglob("*") if p.is_file() and p.name != ".gitignore")
    return {str(p.relative_to(log)): p.read_bytes() for p in files}


def experiments_shown(root: Path) -> dict[str, dict]:
    """Every experiment `dvc exp show --json` lists (params, metrics, deps), by name."""
    found = {}
    for baseline in json.loads(run_dvc(root, "exp", "show", "--json").stdout):
        for entry in baseline.get("experiments") or []:
            for rev in entry["revs"]:
                found[rev["name"]] = rev["data"]
    return found


# ---------------------------------------------------------------- DVC's experiment queue


def queued_names(output: str) -> list[str]:
    """The names of the experiments `dvc exp run --queue` queued, from its output."""
    return re.findall(r"Queued experiment '([\w-]+)'", output)


def start_queue(root: Path) -> None:
    """`dvc queue start`. Its worker runs on in the background (until the queue is
    empty), holding on to the output it inherited: so none is captured here."""
    subprocess.run(
        ["dvc", "queue", "start"],
        cwd=root,
        env=project_env(root),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
        timeout=120,
    )


def wait_for_queue(root: Path, timeout: float = 600) -> str:
    """Wait until no queued experiment is queued or running; return `dvc queue status`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = run_dvc(root, "queue", "status").stdout
        if not re.search(r"\b(Queued|Running)\b", status):
            return status
        time.sleep(2)
    raise AssertionError(f"the queue did not finish in {timeout} s:\n{status}")


def kill_when_running(root: Path, name: str, timeout: float = 60) -> None:
    """`dvc queue kill name`, again until DVC takes it: DVC counts a queued experiment as
    running only once its worker has filed the task as taken, a moment after it starts."""
    deadline = time.monotonic() + timeout
    while True:
        killed = dvc(root, "queue", "kill", name, timeout=120)
        if killed.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert killed.returncode == 0, killed.stderr
