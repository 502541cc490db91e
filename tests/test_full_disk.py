"""A full disk, as a file-size limit (RLIMIT_FSIZE) on a child process: writes fail with EFBIG like ENOSPC, at a
size the test picks. Commands end with one line, and nothing written before is lost."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import textwrap

import pytest

from hera_jax.rollout.records import read_steps
from hera_jax.runs import LOCK_FILE
from tests.conftest import ROOT, make_steps, write_toy_dataset


def _limited(max_bytes: int):
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG, not a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return limit


@pytest.mark.slow  # end to end: the quick loop leaves it to the full run
def test_il_on_a_full_disk_says_so_in_one_line_and_leaves_no_partial_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "experiments/il.py", "--out", str(out), "--train.max-epochs", "2", "--compile-cache", "None"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, preexec_fn=_limited(100_000))
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.splitlines() == [
        f"error: {out / 'checkpoint'}: step {proc.stderr.split('step ')[1].split()[0]} could not be written (File too "
        "large); earlier steps are kept, nothing of this one: free space and rerun"]
    # nothing of the run is left but its lock: the same command may run again once space is freed
    assert not (out / "checkpoint").exists(), sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    assert not out.exists() or [p.name for p in out.iterdir()] in ([], [LOCK_FILE])


def test_an_episode_cut_by_a_full_disk_loses_nothing_written_before_and_appends_resume(tmp_path):
    folder = write_toy_dataset(tmp_path / "ds", [make_steps(f"t0/train/{j}", "t0", "train", [("a", "a"), ("b", "c")],
                                                            variation=j) for j in range(3)])
    steps_file = folder / "steps.jsonl"
    before, _ = read_steps(steps_file)
    big = [("x" * 4000, "y")] * 20  # one episode of ~100 kB: cut part-way by the limit
    script = textwrap.dedent(f"""
        from hera_jax.rollout.records import append_episode
        from tests.conftest import make_steps
        append_episode({str(steps_file)!r}, make_steps("t0/train/big", "t0", "train", {big!r}, variation=9))
    """)
    limit = steps_file.stat().st_size + 30_000
    proc = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          preexec_fn=_limited(limit))
    assert proc.returncode != 0 and "File too large" in proc.stderr
    # the error names the file and the episode (a failed write carries no file name of its own)
    assert f"{steps_file}" in proc.stderr and "t0/train/big was not written whole" in proc.stderr
    assert steps_file.stat().st_size == limit  # part of the episode reached the file
    after, report = read_steps(steps_file)
    assert [r["episode_id"] for r in after] == [r["episode_id"] for r in before]  # the cut episode is not read
    # the next append (space freed) repairs the cut tail and the new episode reads back whole
    from hera_jax.rollout.records import append_episode

    append_episode(steps_file, make_steps("t0/train/next", "t0", "train", [("a", "a")], variation=7))
    rows, report = read_steps(steps_file)
    assert [r["episode_id"] for r in rows] == [r["episode_id"] for r in before] + ["t0/train/next"]
    assert report.problems == []  # the cut part was removed, not kept as a broken line
