"""What every stage shares: one-line errors for user mistakes, and outputs that
appear all at once or not at all."""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


class StageError(Exception):
    """A problem the user can fix (bad params, missing or corrupt files).

    Reported as one line on stderr, without a traceback."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main(); turn StageError and Ctrl-C into a one-line message and exit code."""
    name = Path(sys.argv[0]).stem
    try:
        main()
    except StageError as error:
        print(f"{name}: error: {error}", file=sys.stderr)
        sys.exit(1)
    except OSError as error:  # disk full, read-only folder, permissions
        where = f"{error.filename}: " if error.filename else ""
        print(f"{name}: error: {where}{error.strerror or error}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"{name}: interrupted, no output written", file=sys.stderr)
        sys.exit(130)


def _staging_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.tmp")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextmanager
def staged_dir(target: Path) -> Iterator[Path]:
    """Yield an empty staging directory that replaces `target` only if the block succeeds.

    On any error, or Ctrl-C, the staging directory is removed and `target` is untouched.
    """
    staging = _staging_path(target)
    _remove(staging)  # left over from a run that was killed
    staging.mkdir(parents=True)
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _remove(target)
    os.replace(staging, target)


@contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside `target` (same suffix) that is renamed onto it on success."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.stem}.tmp{target.suffix}")
    _remove(staging)
    try:
        yield staging
    except BaseException:
        _remove(staging)
        raise
    os.replace(staging, target)


def write_text_atomic(target: Path, text: str) -> None:
    """Write `text` to `target` through a temporary file, so readers never see half of it."""
    with staged_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
