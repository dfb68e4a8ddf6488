"""A hostile params.yaml (an alias bomb, bytes that are not UTF-8, numbers or nesting
too big for the parser, terminal escape codes in keys, a huge file) stops a stage at
once with one short line on stderr, as any bad params do, never a hang or a traceback."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from .helpers import PROJECT_ROOT, project_env

COMMITTED = (PROJECT_ROOT / "params.yaml").read_text()


def replaced(line: str, new: str) -> bytes:
    """The committed params.yaml with `line` replaced by `new` (which may span lines)."""
    assert line in COMMITTED
    return COMMITTED.replace(line, new, 1).encode()


def alias_bomb() -> str:
    """A flow list of 9 anchored lists, each 9 aliases of the one before: 9**9 items."""
    lists = ["&a [" + ", ".join(['"lol"'] * 9) + "]"]
    for previous, name in zip("abcdefgh", "bcdefghi", strict=True):
        lists.append(f"&{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "[" + ", ".join(lists) + "]"


ESCAPES = r"\e]0;owned\a\e[2J\e[31m\rred\b"  # in YAML double quotes: title, clear, colour

HOSTILE = {
    # name: (the file's bytes, what the one line must say)
    "alias bomb as a value": (replaced("seed: 42", f"seed: {alias_bomb()}"), "seed = [["),
    "alias bomb as a section": (
        COMMITTED[: COMMITTED.index("\ntrain:")].encode() + f"\ntrain: {alias_bomb()}\n".encode(),
        "train = [[",
    ),
    "not UTF-8": (
        replaced("seed: 42", "seed: 42  # caf\xe9").decode().encode("latin-1"),
        f"(byte 0xe9 at line {COMMITTED.splitlines().index('seed: 42') + 1}); save it as UTF-8",
    ),
    "5000-digit integer": (replaced("seed: 42", "seed: " + "9" * 5000), "5,000 digits"),
    "hex integer too long to print": (
        replaced("seed: 42", "seed: 0x" + "f" * 8000),
        "seed = <an integer of about 9633 digits>",
    ),
    "lists nested 100,000 deep": (
        replaced("seed: 42", "seed: " + "[" * 10**5 + "]" * 10**5),
        "bytes; at most",
    ),
    "lists nested 5,000 deep": (replaced("seed: 42", "seed: " + "[" * 5000 + "]" * 5000), "deep"),
    "huge file": (COMMITTED.encode() + b"# padding\n" * 2_000_000, "bytes; at most"),
    "escape codes in a key": (
        replaced("  epochs: 10\n", f'  epochs: 10\n  "{ESCAPES}": 1\n'),
        "is not a known key",
    ),
    "escape codes in a section name": (
        (COMMITTED + f'"{ESCAPES}": 1\n').encode(),
        "is not a known section",
    ),
    "escape codes in a duplicate key": (
        replaced("seed: 42", f'seed: 42\n"{ESCAPES}": 1\n"{ESCAPES}": 2'),
        "duplicate key",
    ),
    "a very long YAML tag": (replaced("seed: 42", "seed: !" + "t" * 3000 + " 42"), "for the tag"),
    "a very long value": (replaced("  optimizer: adam", "  optimizer: " + "a" * 10_000), "..."),
    "a key that is a list": (
        replaced("  epochs: 10\n", "  epochs: 10\n  ? [1, [2]]\n  : 3\n"),
        "is a list, mapping or alias",
    ),
    "a date that does not exist": (replaced("seed: 42", "seed: 2024-13-01"), "cannot be read"),
    "a tag the value does not fit": (replaced("seed: 42", "seed: !!bool maybe"), "cannot be read"),
}


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_params_stop_the_stage_at_once_with_one_short_printable_line(project, name):
    content, says = HOSTILE[name]
    (project / "params.yaml").write_bytes(content)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "stages/train.py"],
        cwd=project,
        env=project_env(project),
        capture_output=True,
        timeout=30,  # a hang fails the test instead of stalling the suite
    )
    elapsed = time.monotonic() - start
    stderr = result.stderr.decode("utf-8", errors="backslashreplace")
    assert result.returncode == 1, stderr[-2000:]
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr[-2000:]
    line = stderr.removesuffix("\n")
    assert line.startswith("train: error: params.yaml"), line[:300]
    assert len(line) < 300, line[:300]
    assert line.isprintable(), ascii(line[:300])  # no escape code reaches the terminal
    assert says in line, line
    assert elapsed < 5, f"took {elapsed:.1f}s"
