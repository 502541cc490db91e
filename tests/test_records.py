import dataclasses
import gzip
import json

import pandas as pd
import pytest

from hera_jax.rollout.records import (DatasetError, append_episode, completed_episode_ids, load_dataframe, read_steps,
                                     shown_problems)
from tests.conftest import make_steps


def test_roundtrip_and_pandas(tmp_path):
    path = tmp_path / "steps.jsonl"
    append_episode(path, make_steps("e1", "t", "train", [("a", "a"), ("b", "c")]))
    append_episode(path, make_steps("e2", "t", "dev", [("x", "x")]))
    rows, report = read_steps(path)
    assert [r["episode_id"] for r in rows] == ["e1", "e1", "e2"]
    assert report.problems == [] and report.num_episodes == 2
    frame = pd.read_json(path, lines=True)
    assert len(frame) == 3 and {"state_key", "device_action", "cloud_action", "success"} <= set(frame.columns)
    frame2, _ = load_dataframe(path)
    assert frame2["episode_id"].tolist() == frame["episode_id"].tolist()


def test_truncated_last_line_is_reported_with_file_and_line_and_rest_loads(tmp_path):
    path = tmp_path / "steps.jsonl"
    append_episode(path, make_steps("e1", "t", "train", [("a", "a"), ("b", "b")]))
    append_episode(path, make_steps("e2", "t", "train", [("a", "a"), ("b", "b")]))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 40])  # a kill in the middle of the last line
    rows, report = read_steps(path)
    assert {r["episode_id"] for r in rows} == {"e1"}
    assert any(f"{path}:4: truncated last line" in p for p in report.problems)
    assert any("episode e2 has 1 of 2 steps" in p for p in report.problems)
    assert completed_episode_ids(path) == {"e1"}
    with pytest.raises(DatasetError, match=r"steps.jsonl:4"):
        read_steps(path, strict=True)


def test_the_next_append_removes_what_a_cut_write_left_and_keeps_every_whole_episode(tmp_path):
    path = tmp_path / "steps.jsonl"
    append_episode(path, make_steps("e1", "t", "train", [("a", "a"), ("b", "c")]))
    whole = path.read_bytes()
    e2 = make_steps("e2", "t", "train", [("a", "a"), ("b", "b"), ("c", "c")])
    written = b"".join(json.dumps(dataclasses.asdict(s)).encode() + b"\n" for s in e2)
    for cut in (len(written) // 2, written.index(b"\n") + 1, len(written) - 1):  # mid-line; a whole first line;
        # all but the newline (that episode is whole: readers take it, so it must stay, and only gains its newline)
        path.write_bytes(whole + written[:cut])
        # readers would skip a cut-off part and warn on every load; the whole episode without its newline they take
        assert bool(read_steps(path)[1].problems) == (cut != len(written) - 1)
        if cut == len(written) - 1:
            assert completed_episode_ids(path) == {"e1", "e2"}
            append_episode(path, make_steps("e3", "t", "train", [("a", "a")]))
            rows, report = read_steps(path)
            assert [r["episode_id"] for r in rows] == ["e1"] * 2 + ["e2"] * 3 + ["e3"] and report.problems == []
            assert path.read_bytes().startswith(whole + written)
            continue
        append_episode(path, e2)
        assert path.read_bytes() == whole + written
        rows, report = read_steps(path)
        assert [r["episode_id"] for r in rows] == ["e1"] * 2 + ["e2"] * 3 and report.problems == []


def test_a_file_of_one_whole_episode_without_its_last_newline_is_kept(tmp_path):
    path = tmp_path / "steps.jsonl"
    append_episode(path, make_steps("e1", "t", "train", [("a", "a"), ("b", "c")]))
    path.write_bytes(path.read_bytes()[:-1])
    append_episode(path, make_steps("e2", "t", "train", [("a", "a")]))
    assert [r["episode_id"] for r in read_steps(path)[0]] == ["e1", "e1", "e2"]


def test_a_tail_that_is_not_a_cut_episode_is_kept_and_the_next_episode_starts_on_its_own_line(tmp_path):
    path = tmp_path / "steps.jsonl"
    append_episode(path, make_steps("e1", "t", "train", [("a", "a")]))
    with open(path, "a") as f:
        f.write('not a record\n{"episode_id": "e2", "st')  # a hand-edited line, then a partial one
    append_episode(path, make_steps("e2", "t", "train", [("a", "a")]))
    lines = path.read_text().splitlines()
    assert len(lines) == 4 and lines[1] == "not a record" and lines[2].startswith('{"episode_id": "e2", "st')
    rows, report = read_steps(path)
    assert [r["episode_id"] for r in rows] == ["e1", "e2"] and len(report.problems) == 2


def test_blank_lines_at_the_end_do_not_stop_the_next_append(tmp_path):
    path = tmp_path / "steps.jsonl"
    append_episode(path, make_steps("e1", "t", "train", [("a", "a")]))
    e2 = make_steps("e2", "t", "train", [("a", "a"), ("b", "b")])
    with open(path, "ab") as f:  # blank lines, then what a cut write of e2 left, then a blank line
        f.write(b"\n\n" + json.dumps(dataclasses.asdict(e2[0])).encode() + b"\n\n")
    append_episode(path, e2)
    rows, report = read_steps(path)
    assert [r["episode_id"] for r in rows] == ["e1", "e2", "e2"] and report.problems == []
    append_episode(path, make_steps("e3", "t", "train", [("a", "a")]))  # after blank lines only
    assert [r["episode_id"] for r in read_steps(path)[0]] == ["e1", "e2", "e2", "e3"]


def test_missing_field_is_reported(tmp_path):
    path = tmp_path / "steps.jsonl"
    append_episode(path, make_steps("e1", "t", "train", [("a", "a")]))
    with open(path, "a") as f:
        f.write(json.dumps({"episode_id": "e9"}) + "\n")
    rows, report = read_steps(path)
    assert len(rows) == 1 and f"{path}:2: missing field(s)" in report.problems[0]


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="no such trajectory file"):
        read_steps(tmp_path / "nope.jsonl")


def test_consecutive_lines_with_the_same_problem_are_reported_once(tmp_path):
    import json as _json

    from hera_jax.rollout.records import read_steps as _read

    path = tmp_path / "steps.jsonl"
    good = dict(episode_id="e", env="x", task="t", variation=0, split="train", step=0, episode_steps=1,
                state_text="s", state_key="k", actor="device", action="a", device_action="a", cloud_action=None,
                reward=0.0, score=0.0, done=True, success=False)
    bad = [_json.dumps({**good, "episode_id": "b", "step": i, "episode_steps": 36}).replace('"reward": 0.0',
                                                                                           '"reward": NaN')
           for i in range(36)]
    path.write_text(_json.dumps(good) + "\n" + "\n".join(bad) + "\nnot json\n")
    rows, report = _read(path)
    assert len(rows) == 1
    assert len(report.problems) == 2, report.problems
    assert report.problems[0].startswith(f"{path}:2-37: reward") and "(36 lines); skipped" in report.problems[0]
    assert report.problems[1].startswith(f"{path}:38: invalid JSON")


def test_a_row_readers_would_reject_is_never_written(tmp_path):
    import dataclasses as _dc
    import math as _math

    import pytest as _pytest

    from hera_jax.rollout.records import DatasetError, StepRecord, append_episode

    row = StepRecord(episode_id="e", env="x", task="t", variation=0, split="train", step=0, episode_steps=1,
                     state_text="s", state_key="k", actor="device", action="a", device_action="a", cloud_action=None,
                     reward=0.0, score=0.0, done=True, success=False)
    path = tmp_path / "steps.jsonl"
    append_episode(path, [row])
    before = path.read_bytes()
    with _pytest.raises(DatasetError, match=r"refusing to write episode e step 0: p_cloud: .*got nan"):
        append_episode(path, [_dc.replace(row, p_cloud=_math.nan)])
    assert path.read_bytes() == before  # nothing of the bad episode was written


def test_gzipped_steps_read_the_same_and_appending_unpacks_them_first(tmp_path):
    path = tmp_path / "steps.jsonl"
    append_episode(path, make_steps("e1", "t", "train", [("a", "a"), ("b", "c")]))
    plain_rows, _ = read_steps(path)
    packed = tmp_path / "steps.jsonl.gz"
    packed.write_bytes(gzip.compress(path.read_bytes()))
    path.unlink()
    rows, report = read_steps(path)  # the plain name finds the .gz
    assert rows == plain_rows and report.path == str(packed) and report.problems == []
    assert completed_episode_ids(path) == {"e1"}
    append_episode(path, make_steps("e2", "t", "train", [("x", "x")]))
    assert path.exists() and not packed.exists()  # unpacked, then appended: nothing lost
    assert [r["episode_id"] for r in read_steps(path)[0]] == ["e1", "e1", "e2"]


def test_both_plain_and_gzipped_steps_is_ambiguous(tmp_path):
    path = tmp_path / "steps.jsonl"
    append_episode(path, make_steps("e1", "t", "train", [("a", "a")]))
    other = tmp_path / "other.jsonl"
    append_episode(other, make_steps("e9", "t", "train", [("z", "z")]))
    (tmp_path / "steps.jsonl.gz").write_bytes(gzip.compress(other.read_bytes()))  # not a copy of steps.jsonl
    with pytest.raises(DatasetError, match="ambiguous"):
        read_steps(path)


def test_a_cut_gzip_keeps_the_episodes_before_the_cut(tmp_path):
    path = tmp_path / "steps.jsonl"
    for i in range(40):
        append_episode(path, make_steps(f"e{i}", "t", "train", [("a", "a"), ("b", "b")]))
    packed = gzip.compress(path.read_bytes())
    path.unlink()
    (tmp_path / "steps.jsonl.gz").write_bytes(packed[: len(packed) * 2 // 3])
    rows, report = read_steps(path)
    assert 0 < len({r["episode_id"] for r in rows}) < 40
    assert any("gzip stream is cut or corrupt" in p for p in report.problems)
    with pytest.raises(DatasetError, match="cut or corrupt|steps.jsonl.gz"):
        read_steps(path, strict=True)


def test_an_unpack_killed_before_it_removed_the_gz_is_recovered(tmp_path):
    path = tmp_path / "steps.jsonl"
    append_episode(path, make_steps("e1", "t", "train", [("a", "a")]))
    (tmp_path / "steps.jsonl.gz").write_bytes(gzip.compress(path.read_bytes()))  # the .gz the unpack came from
    append_episode(path, make_steps("e2", "t", "train", [("b", "b")]))  # appended after the rename
    rows, _ = read_steps(path)
    assert [r["episode_id"] for r in rows] == ["e1", "e2"] and not (tmp_path / "steps.jsonl.gz").exists()


def test_many_skipped_lines_are_shown_as_a_few_and_a_count_and_other_problems_in_full(tmp_path):
    path = tmp_path / "steps.jsonl"
    lines = []
    for k in range(12):  # a bad line between good ones: no two bad lines in a row, so each is its own problem
        lines += ["{not json", json.dumps({"episode_id": f"e{k}"})]
    path.write_text("\n".join(lines) + "\n")
    _, report = read_steps(path)
    assert len(report.problems) >= 12
    note = "4 episode(s) play state for state like an episode of another split; kept"
    report.notes.append(note)
    shown = shown_problems(report)
    assert shown[:5] == report.problems[:5] and shown[-1] == note
    assert len(shown) == 7 and shown[5].startswith(f"... and {len(report.problems) - 5} more skipped line(s)")
    report.problems[5:] = []
    assert shown_problems(report) == [*report.problems, note]


def test_lines_validate_to_the_rows_and_problems_of_the_record_schema():
    """Readers validate each line into a dict (a TypedDict built from StepRecord's fields, for speed): its rows,
    their key order and its problems must be those of validating into StepRecord itself, whatever a line holds."""
    import random

    import pydantic

    from hera_jax.rollout.records import STEP_FIELDS, STEP_SCHEMA, parse_step_line

    def by_record_schema(text: str):
        try:
            return vars(STEP_SCHEMA.validate_json(text, strict=True))
        except pydantic.ValidationError as e:
            return sorted((error["type"], error["loc"]) for error in e.errors(include_url=False))

    rng = random.Random(0)
    values = [None, 0, -1, 3, 2.5, float("nan"), "", "x", "cloud", "dev", True, [], {}, 10**20]
    base = [dataclasses.asdict(step) for step in make_steps("t/train/0", "t", "train", [("a", "a"), ("b", "c")])]
    base[1].update(p_cloud=0.25, device_logprob=-1.5, route_reason="router")
    for case in range(600):
        row = dict(rng.choice(base))
        kind = case % 5
        if kind == 1:  # fields in another order
            items = list(row.items())
            rng.shuffle(items)
            row = dict(items)
        elif kind == 2:  # fields left out (those with defaults take them; the others are missing)
            for _ in range(rng.randint(1, 4)):
                row.pop(rng.choice(STEP_FIELDS), None)
        elif kind == 3:  # a field of another type or value, and an unknown field
            row[rng.choice(STEP_FIELDS)] = rng.choice(values)
            row["unknown"] = rng.choice(values)
        elif kind == 4:
            row = rng.choice([[], 3, "text", None, [row]])
        text = json.dumps(row) + "\n"
        parsed, problem = parse_step_line(text.encode())
        expected = by_record_schema(text)
        if isinstance(expected, dict):
            assert problem is None and parsed == expected and list(parsed) == list(STEP_FIELDS), (case, problem)
        else:
            assert parsed is None and problem, case
            for _, loc in expected:  # the problem line names each field the record schema finds wrong
                assert ".".join(map(str, loc)) in problem, (case, problem, expected)
