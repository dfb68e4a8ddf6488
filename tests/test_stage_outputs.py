"""A stage's outputs appear whole or not at all (staged_dir, staged_file): a block that
fails leaves the old output, a process killed at any instant of the swap leaves the
whole old or the whole new one, two runs at once each write a whole output of their
own, and outputs get the usual permissions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnist_pipeline.stage import staged_dir, staged_file


def test_staged_dir_replaces_target_only_when_the_block_succeeds(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_dir(target) as staging:
        (staging / "half.txt").write_text("half")
        raise RuntimeError("killed halfway")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging leftovers

    with staged_dir(target) as staging:
        (staging / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_staged_file_leaves_previous_file_on_failure_and_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    target.write_text("previous")
    with pytest.raises(KeyboardInterrupt), staged_file(target) as tmp:
        tmp.write_text("partial")
        raise KeyboardInterrupt
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


# A process that, for n = 0, 1, 2, ..., writes `target` whole ("old"), then forks a child
# that replaces it with "new" through staged_dir and kills itself with SIGKILL just
# before its n-th system call (an `os` function) of the swap; then records what
# `target` holds. It stops at the first n the swap finishes before, and prints JSON.
SWAP_KILLED_AT_EVERY_CALL = """
import json, os, signal, sys
from pathlib import Path
from mnist_pipeline import stage
target, how = Path(sys.argv[1]), sys.argv[2]
if how == "two-step":  # as on a filesystem that cannot swap two folders atomically
    stage._exchange = lambda a, b: False

def write(version, kill_at=-1):
    calls = 0
    def die_at_call(frame, event, arg):
        nonlocal calls
        if event == "c_call" and getattr(arg, "__module__", None) == "posix":
            if calls == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            calls += 1
    with stage.staged_dir(target) as staging:
        for name in "abc":
            (staging / name).write_text(version)
        sys.setprofile(die_at_call if kill_at >= 0 else None)
    sys.setprofile(None)

def contents():
    return {p.name: p.read_text() for p in target.iterdir()} if target.exists() else {}

outcomes = []
for kill_at in range(1000):
    write("old")
    if (child := os.fork()) == 0:
        write("new", kill_at)
        os._exit(0)
    _, status = os.waitpid(child, 0)
    killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    if how == "two-step":  # the target is missing between the two renames,
        stage._clean_up_after_killed_runs(target)  # until the next run puts it back
    outcomes.append({"killed": killed, "contents": contents()})
    if not killed:
        break
write("next")
print(json.dumps({"outcomes": outcomes, "beside": os.listdir(target.parent)}))
"""


@pytest.mark.parametrize("how", ["atomic-swap", "two-step"])
def test_a_stage_killed_at_any_instant_of_the_swap_leaves_the_whole_old_or_new_output(
    tmp_path, how
):
    target = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-c", SWAP_KILLED_AT_EVERY_CALL, str(target), how],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    *killed, finished = report["outcomes"]
    old, new = ({name: version for name in "abc"} for version in ("old", "new"))
    for n, outcome in enumerate(killed):
        assert outcome["killed"] and outcome["contents"] in (old, new), f"killed at call {n}"
    assert finished == {"killed": False, "contents": new}
    assert len(killed) > 10 and {"old", "new"} <= {o["contents"]["a"] for o in killed}
    assert report["beside"] == ["out"]  # the next run removed what the killed ones left


def contents(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in folder.iterdir()} if folder.exists() else {}


def test_two_runs_at_once_each_write_a_whole_output_of_their_own(tmp_path):
    target = tmp_path / "out"
    with staged_dir(target) as first:
        (first / "part").write_text("first, half")
        with staged_dir(target) as second:  # another run starts meanwhile, and finishes
            (second / "part").write_text("second")
            (second / "more").write_text("second")
        assert contents(target) == {"part": "second", "more": "second"}
        (first / "more").write_text("first")  # the first run's staging was left alone
    assert contents(target) == {"part": "first, half", "more": "first"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_staged_outputs_get_the_usual_permissions_not_private_ones(tmp_path):
    with staged_dir(tmp_path / "out") as staging:
        (staging / "file").write_text("x")
    with staged_file(tmp_path / "out.json") as staged:
        staged.write_text("{}")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o777 & ~umask
    assert (tmp_path / "out.json").stat().st_mode & 0o777 == 0o666 & ~umask
