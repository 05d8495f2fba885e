"""Demonstrations: from traces, and from a loopback teacher with rejection sampling, pass rates and resume."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from longrl.config.sft import TeacherConfig
from longrl.data.io import read_samples, write_samples
from longrl.errors import DataError, UserError
from longrl.sft.distill import DemoLedger, demos_from_traces, distill, passrates_path

K = 4


def correct_count(index: int) -> int:
    """Item i gets i % (K + 1) correct replies out of K: pass rates 0, 1/4, ..., 1 across items."""
    return index % (K + 1)


def scripted(samples):
    """A teacher that answers item i with correct_count(i) right replies, then wrong ones."""
    by_question = {s.question: (i, s) for i, s in enumerate(samples)}
    served: dict[str, int] = {}

    def answer(body, question):
        i, sample = by_question[question]
        n = body.get("n", 1)
        first = served.get(question, 0) % K                        # K requests of n=1 count up to K
        served[question] = first + n
        right = f"<think>I looked it up.</think>Therefore, the answer is {sample.answers[0]}."
        if sample.choices:
            right = f"<think>Checked.</think>The correct answer is ({sample.answers[0]})."
        wrong = "<think>Guessing.</think>Therefore, the answer is (Z) zzz 0.000001."
        return [right if first + j < correct_count(i) else wrong for j in range(n)]

    return answer


@pytest.fixture()
def items(samples):
    return samples[:10]


def teacher_cfg(server, **kw) -> TeacherConfig:
    settings = {"samples": K, "concurrency": 4, "timeout_s": 5, "backoff_s": 0.01, "max_attempts": 3,
                "api_key_env": "LONGRL_TEST_TEACHER_KEY", **kw}
    return TeacherConfig(base_url=server.url, model="teacher-test", **settings)


def test_traces_that_verify_become_demonstrations(tmp_path, samples):
    broken = replace(samples[0], meta={**samples[0].meta, "trace": "<think>no idea</think>Therefore, the answer is nothing."})
    bare = replace(samples[1], meta={})
    stats = demos_from_traces([broken, bare, *samples[2:]], tmp_path / "demos.jsonl")
    written = read_samples(tmp_path / "demos.jsonl").samples
    assert [s.id for s in written] == [s.id for s in samples[2:]]    # every programmatic trace verifies
    assert written[0].trace == samples[2].trace
    assert (stats.kept, stats.failed, stats.finished - stats.kept) == (len(samples) - 2, 1, 1)


def test_rejection_sampling_keeps_only_correct_replies_with_pass_rates(tmp_path, items, teachers):
    server = teachers.start(scripted(items))
    out = tmp_path / "demos.jsonl"
    stats = distill(items, out, teacher_cfg(server))
    assert len(server.requests) == len(items)                        # one request with n=K per item
    assert all(body["n"] == K and body["model"] == "teacher-test" for _, body, _ in server.requests)
    rows = read_samples(out).samples
    assert len(rows) == stats.kept == sum(correct_count(i) for i in range(len(items)))
    for row in rows:
        assert row.id == f"{row.meta['source_id']}#t{row.meta['sample_index']}"
        assert "Guessing" not in row.trace and row.meta["teacher"] == "teacher-test"
    rates = {r["id"]: r for r in map(json.loads, passrates_path(out).read_text().splitlines())}
    assert set(rates) == {s.id for s in items}                       # items with 0 correct are recorded too
    for i, item in enumerate(items):
        assert rates[item.id]["pass_rate"] == correct_count(i) / K
        assert rates[item.id]["kept"] == correct_count(i)
    assert stats.samples == K * len(items) and stats.failed == 0


def test_k_requests_when_the_server_has_no_n_and_keep_per_item(tmp_path, items, teachers):
    server = teachers.start(scripted(items))
    distill(items, tmp_path / "d.jsonl", teacher_cfg(server, n_per_request=False, keep_per_item=2))
    assert len(server.requests) == K * len(items) and all("n" not in body for _, body, _ in server.requests)
    rows = read_samples(tmp_path / "d.jsonl").samples
    assert len(rows) == sum(min(2, correct_count(i)) for i in range(len(items)))


def test_a_server_that_ignores_n_is_a_clear_error(tmp_path, items, teachers):
    server = teachers.start(lambda body, q: ["<think>x</think>Therefore, the answer is 1."])
    with pytest.raises(UserError, match="n_per_request=false"):
        distill(items, tmp_path / "d.jsonl", teacher_cfg(server))


def test_retries_then_succeeds_and_sends_the_key(tmp_path, items, monkeypatch, teachers):
    monkeypatch.setenv("LONGRL_TEST_TEACHER_KEY", "sk-secret-123")
    answer = scripted(items)
    failures = {items[0].question: [teachers.Fail(500), teachers.Fail(429, "0")]}

    def flaky(body, question):
        queue = failures.get(question)
        return queue.pop(0) if queue else answer(body, question)

    server = teachers.start(flaky)
    stats = distill(items, tmp_path / "d.jsonl", teacher_cfg(server))
    assert stats.failed == 0 and stats.finished == len(items)
    assert server.questions().count(items[0].question) == 3
    assert all(h.get("Authorization") == "Bearer sk-secret-123" for _, _, h in server.requests)
    for path in (tmp_path / "d.jsonl", passrates_path(tmp_path / "d.jsonl")):
        assert "sk-secret" not in path.read_text()


def test_rerun_after_failures_requests_only_unfinished_items(tmp_path, items, teachers):
    answer = scripted(items)
    broken = {items[3].question, items[7].question}
    server = teachers.start(lambda body, q: teachers.Fail(400) if q in broken else answer(body, q))
    out = tmp_path / "d.jsonl"
    first = distill(items, out, teacher_cfg(server))
    assert (first.finished, first.failed) == (8, 2) and "HTTP 400" in first.errors[0]
    broken.clear()
    server.requests.clear()
    second = distill(items, out, teacher_cfg(server))
    assert second.already_done == 8 and second.finished == 2
    assert sorted(server.questions()) == sorted([items[3].question, items[7].question])
    server.requests.clear()
    third = distill(items, out, teacher_cfg(server))
    assert third.already_done == len(items) and server.requests == []
    ids = [s.id for s in read_samples(out).samples]                   # read_samples rejects duplicate ids
    assert len(ids) == sum(correct_count(i) for i in range(len(items)))
    assert len(passrates_path(out).read_text().splitlines()) == len(items)


def test_a_kill_mid_write_leaves_nothing_duplicated(tmp_path, items, teachers):
    """A torn last line and rows of an item whose pass-rate line never landed are dropped, then redone once."""
    out = tmp_path / "d.jsonl"
    server = teachers.start(scripted(items))
    distill(items[:6], out, teacher_cfg(server))
    # simulate a kill while item 9 (4 correct) was being written: rows landed, the commit line did not
    orphan = read_samples(out).samples[0]
    orphan = replace(orphan, id=f"{items[9].id}#t0", meta={**orphan.meta, "source_id": items[9].id})
    with open(out, "a") as fh:
        fh.write(json.dumps(orphan.to_dict()) + "\n" + json.dumps(orphan.to_dict())[:40])
    with open(passrates_path(out), "a") as fh:
        fh.write('{"id": "' + items[9].id[:5])                   # torn commit line, no newline
    server.requests.clear()
    stats = distill(items, out, teacher_cfg(server))
    assert stats.already_done == 6 and stats.finished == 4
    assert sorted(server.questions()) == sorted(s.question for s in items[6:])
    rows = read_samples(out).samples
    assert len(rows) == len({r.id for r in rows}) == sum(correct_count(i) for i in range(len(items)))
    committed = [json.loads(line)["id"] for line in passrates_path(out).read_text().splitlines()]
    assert sorted(committed[:6]) == sorted(s.id for s in items[:6]) and sorted(committed) == sorted(s.id for s in items)


def test_a_corrupt_line_in_the_middle_is_reported(tmp_path):
    out = tmp_path / "d.jsonl"
    out.write_text('{"id": "a", "meta": {"source_id": "a"}}\nnot json\n{"id": "b"}\n')
    passrates_path(out).write_text('{"id": "a"}\n')
    with pytest.raises(DataError, match="line 2"):
        DemoLedger(out).recover()
    with pytest.raises(UserError, match=".jsonl"):
        DemoLedger(tmp_path / "d.parquet")


def test_too_many_failures_stop_the_run(tmp_path, samples, teachers):
    server = teachers.start(lambda body, q: teachers.Fail(404))
    with pytest.raises(UserError, match="max_error_rate"):
        distill(samples, tmp_path / "d.jsonl", teacher_cfg(server, concurrency=1))
    assert len(server.requests) == 10                                 # stopped at the first check, not after all items


def test_distill_command(tmp_path, samples, teachers):
    from longrl.cli import main

    data = tmp_path / "items.jsonl"
    write_samples(data, samples)
    assert main(["distill", "--from-traces", "--input", str(data), "--out", str(tmp_path / "t.jsonl")]) == 0
    assert len(read_samples(tmp_path / "t.jsonl").samples) == len(samples)
    assert main(["distill", "--input", str(data), "--out", str(tmp_path / "x.jsonl")]) == 2   # no teacher configured
    server = teachers.start(scripted(samples))
    overrides = [f"sft.teacher={{base_url: {server.url}, model: t, samples: {K}, backoff_s: 0.01}}"]
    assert main(["distill", "--input", str(data), "--out", str(tmp_path / "d.jsonl"), *overrides]) == 0
    assert len(passrates_path(tmp_path / "d.jsonl").read_text().splitlines()) == len(samples)
