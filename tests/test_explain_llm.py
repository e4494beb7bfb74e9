"""The LLM explainer against a deterministic OpenAI-compatible server on loopback (tests/llm_loopback.py):
prompts, parsing, scores recomputed by brute force, retries, resume, failures recorded with their reason,
and an endpoint that is down or answers garbage stopping the run with one sentence and no write."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from llm_loopback import MODEL, Behaviour, LoopbackLLM  # noqa: E402

from backend.errors import UserError  # noqa: E402
from backend.explain.heldout import encode_heldout  # noqa: E402
from backend.explain.llm import EndpointConfig, EndpointError  # noqa: E402
from backend.explain.models import LLM  # noqa: E402
from backend.explain.prompts import (  # noqa: E402
    DETECTION_SYSTEM,
    EXPLAIN_SYSTEM,
    FUZZING_SYSTEM,
    AnswerError,
    parse_explanation,
    parse_judgments,
)
from backend.explain.runner import LLMRunConfig, parse_feature_ids, run_llm  # noqa: E402
from backend.explain.storage import ExplanationStore  # noqa: E402
from backend.store import IndexStore  # noqa: E402
from backend.team import TeamStore  # noqa: E402
from backend.tokens import display_pieces  # noqa: E402

HELDOUT_TOKENS = 4_000
FEATURES = "0-5"


@pytest.fixture()
def index(tiny_index, tmp_path) -> Path:
    """A copy per test, so each test has its own explanations sidecar."""
    return Path(shutil.copy(tiny_index, tmp_path / "tiny.duckdb"))


def config(url: str, **kw) -> LLMRunConfig:
    endpoint = EndpointConfig(url=url, model=MODEL, api_key_env="LOOPBACK_TEST_KEY", max_retries=kw.pop("retries", 3))
    return LLMRunConfig(endpoint=endpoint, heldout_tokens=HELDOUT_TOKENS, rate_limit=kw.pop("rate_limit", 0),
                        progress=False, **kw)


def test_explanations_and_scores_match_a_brute_force_reading(index, source, monkeypatch):
    monkeypatch.setenv("LOOPBACK_TEST_KEY", "sk-loopback")
    with LoopbackLLM() as llm:
        report = run_llm(str(index), FEATURES, config(llm.url))
    assert report.requested == 6 and report.skipped == 0
    with IndexStore.open(index) as store:
        meta, vocab = store.meta, store.vocab
        pages = {f: store.feature_page(f) for f in range(6)}
    heldout = encode_heldout(source, meta, HELDOUT_TOKENS, progress=False)
    stored = {e.feature_id: e for e in ExplanationStore.for_index(index).for_features(range(6))}
    assert set(stored) == set(range(6))
    assert all(r.authorization == "Bearer sk-loopback" for r in llm.records)
    assert all(r.body["model"] == MODEL and r.body["temperature"] == 0 for r in llm.records)
    explains = llm.answered("explain")
    assert len(explains) == 6
    for record in explains:
        assert record.body["messages"][0] == {"role": "system", "content": EXPLAIN_SYSTEM}
        assert record.user.startswith("Example 1: ") and "<<" in record.user and "\nActivations: (" in record.user
    scored = [e for e in stored.values() if e.status == "ok"]
    assert scored, [e.reason for e in stored.values()]
    for e in scored:
        assert e.method == LLM and e.model == MODEL
        # the explainer saw this feature's stored examples (top first, then interval samples by value), marked
        # where it fires; the explanation is the server's answer to that prompt, parsed
        lines = _example_lines(pages[e.feature_id])
        record = next(r for r in explains if [x for x in r.user.split("\n") if x.startswith("Example ")] == lines)
        assert e.text == parse_explanation(record.answer)
        span = e.text.removeprefix('the text "').removesuffix('"')
        for task in ("detection", "fuzzing"):
            judged = [j for j in e.judgments if j.task == task]
            assert sum(j.truth for j in judged) == sum(not j.truth for j in judged) == 5  # balanced
            hits = tp = fp = fn = 0
            for j in judged:
                # truth: does the SAE fire in that held-out window? (re-encoded here, independently)
                sl = heldout.feature_slice(e.feature_id)
                pos = heldout.fire_pos[sl]
                lo, hi = j.row * heldout.ctx + j.start, j.row * heldout.ctx + j.start + j.width
                assert j.truth == bool(((pos >= lo) & (pos < hi)).any())
                window = "".join(display_pieces(heldout.tokens[j.row, j.start: j.start + j.width].tolist(), vocab))
                if task == "detection":  # the loopback judge's own rule
                    assert j.said == (span in window.replace("\n", "↵"))
                hits += j.truth == j.said
                tp += j.truth and j.said
                fp += j.said and not j.truth
                fn += j.truth and not j.said
            score = e.detection if task == "detection" else e.fuzzing
            assert score.accuracy == pytest.approx(hits / 10)
            precision = tp / (tp + fp) if tp + fp else 0.0
            recall = tp / (tp + fn) if tp + fn else 0.0
            assert score.precision == pytest.approx(precision) and score.recall == pytest.approx(recall)
            assert score.f1 == pytest.approx(2 * precision * recall / (precision + recall) if tp else 0.0)
        assert e.score == e.detection.f1
    judges = llm.answered("detection") + llm.answered("fuzzing")
    assert {r.body["messages"][0]["content"] for r in judges} == {DETECTION_SYSTEM, FUZZING_SYSTEM}
    for r in judges:
        assert r.user.startswith("Feature explanation: the text ") and r.user.count("\nExample ") == 10
    # held-out windows only: rows of the held-out stream (beyond the index's rows), never the index's examples
    assert all(0 <= j.row < heldout.rows for e in scored for j in e.judgments)


def _example_lines(page) -> list[str]:
    rest = sorted((x for g in page.intervals for x in g.examples), key=lambda x: -x.value)
    lines = []
    for n, example in enumerate((page.top_examples + rest)[:20], 1):
        text, run, marking = "", "", False
        for cell in example.tokens:
            piece = cell.text.replace("\n", "↵")
            if (cell.act > 0) != marking:
                text += f"<<{run}>>" if marking and run else run
                run, marking = "", cell.act > 0
            run += piece
        text += f"<<{run}>>" if marking and run else run
        lines.append(f"Example {n}: {text}")
    return lines


def test_retries_on_429_and_5xx_then_succeeds(index):
    with LoopbackLLM(Behaviour(fail_first=[429, 503, 500])) as llm:
        report = run_llm(str(index), "0-1", config(llm.url, concurrency=1))
    assert [r.status for r in llm.records[:3]] == [429, 503, 500]
    assert {e.status for e in report.written} == {"ok"} and len(report.written) == 2
    assert len(ExplanationStore.for_index(index).done_ids(LLM, MODEL)) == 2


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [
        (Behaviour(fail_always=503), "answered 503 after 1 retries"),
        (Behaviour(fail_always=429), "kept answering 429"),
        (Behaviour(fail_always=401), "refused the API key"),
        (Behaviour(garbage=True), "did not answer like an OpenAI-compatible server"),
    ],
)
def test_a_failing_endpoint_stops_with_one_sentence_and_writes_nothing(index, behaviour, words, capsys):
    from backend.__main__ import main

    with LoopbackLLM(behaviour) as llm:
        with pytest.raises(EndpointError, match=words) as caught:
            run_llm(str(index), FEATURES, config(llm.url, retries=1))
        code = main(["explain", "--index", str(index), "--features", "0-2", "--explainer-url", llm.url,
                     "--explainer-model", MODEL, "--max-retries", "1", "--heldout-tokens", str(HELDOUT_TOKENS)])
    message = str(caught.value)
    assert "\n" not in message and message.endswith((".", "?"))
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bar: one line, the sentence
    assert code == 2 and last.startswith("error: The explainer at ") and words in last
    assert ExplanationStore.for_index(index).done_ids(LLM, MODEL) == set()


def test_an_endpoint_that_is_down_is_named_before_any_encoding(index):
    with LoopbackLLM() as llm:
        url = llm.url
    with pytest.raises(EndpointError, match="cannot be reached"):
        run_llm(str(index), FEATURES, config(url, retries=0))
    assert not ExplanationStore.for_index(index).path.exists()


def test_malformed_answers_are_recorded_failures_with_their_reason(index):
    with LoopbackLLM(Behaviour(no_explanation_line=True)) as llm:
        report = run_llm(str(index), "0-2", config(llm.url))
    assert [e.status for e in report.written] == ["failed"] * 3
    assert all("no '[EXPLANATION]:' line" in e.reason and e.text == "" and e.score is None for e in report.written)
    assert not llm.answered("detection")  # nothing judged without an explanation
    with LoopbackLLM(Behaviour(short_judgment=True)) as llm:
        # failures are kept (a resumed run skips them) unless asked to retry them
        assert run_llm(str(index), "0-2", config(llm.url)).skipped == 3
        report = run_llm(str(index), "0-2", config(llm.url, retry_failed=True))
    assert [e.status for e in report.written] == ["failed"] * 3
    assert all("not a list of 10 zeros and ones" in e.reason for e in report.written)
    store = ExplanationStore.for_index(index)
    assert store.best([0, 1, 2]) == {} and store.best_scores() == {}


def test_an_interrupted_run_resumes_where_it_stopped(index):
    with LoopbackLLM(Behaviour(stop_after=7)) as llm:  # 3 calls per feature: 2 features, then 503s
        with pytest.raises(EndpointError):
            run_llm(str(index), FEATURES, config(llm.url, concurrency=1, retries=0))
    store = ExplanationStore.for_index(index)
    done = store.done_ids(LLM, MODEL)
    assert done == {0, 1}
    assert all(e.status == "ok" and len(e.judgments) == 20 for e in store.for_features(done))
    with LoopbackLLM() as llm:
        report = run_llm(str(index), FEATURES, config(llm.url, concurrency=2))
    assert report.skipped == 2 and {e.feature_id for e in report.written} == {2, 3, 4, 5}
    assert len(llm.answered("explain")) == 4  # nothing asked again for features 0 and 1
    assert store.done_ids(LLM, MODEL) == set(range(6))


def test_concurrency_and_rate_limit(index):
    with LoopbackLLM(Behaviour(delay_s=0.05)) as llm:
        run_llm(str(index), FEATURES, config(llm.url, concurrency=3, rate_limit=1200))  # one start per 50 ms
    starts = np.sort([r.started for r in llm.records])
    # spaced by the limiter (arrival times jitter by a few ms, so the span is checked, and no burst)
    assert len(starts) == 18 and starts[-1] - starts[0] >= 17 * 0.05 * 0.95 and np.diff(starts).min() >= 0.02
    assert 2 <= llm.max_in_flight <= 3


def test_dead_or_thin_features_are_not_enough_data_not_zero(index, tiny_index):
    with IndexStore.open(tiny_index) as store:
        dead = store.d_sae - 1
        assert store.feature_rows([dead])[dead].dead
    with LoopbackLLM() as llm:
        report = run_llm(str(index), f"0,{dead}", config(llm.url, judge_examples=10_000))
    by_id = {e.feature_id: e for e in report.written}
    assert by_id[dead].status == "not_enough_data" and "stored examples" in by_id[dead].reason
    assert by_id[0].status == "not_enough_data" and by_id[0].text and by_id[0].score is None
    assert len(llm.answered("explain")) == 1 and not llm.answered("detection")


def test_team_labels_are_never_touched(index):
    team = TeamStore.for_index(index)
    team.set_label(0, "ours", author="ana")
    with LoopbackLLM() as llm:
        run_llm(str(index), "0", config(llm.url))
    assert team.get_labels([0])[0].text == "ours"


def test_parsers():
    assert parse_explanation("<think>[EXPLANATION]: no</think>Sure.\n[EXPLANATION]: **digits in hex literals**") \
        == "digits in hex literals"
    assert parse_explanation('[EXPLANATION]: "quoted"\nmore') == "quoted"
    assert parse_explanation('[EXPLANATION]: the text "x"') == 'the text "x"'
    for bad in ("no format", "[EXPLANATION]:   ", "[EXPLANATION]: " + "x" * 300):
        with pytest.raises(AnswerError):
            parse_explanation(bad)
    assert parse_judgments("Answer: [1, 0, 1]", 3, "detection") == [True, False, True]
    assert parse_judgments("[9] then [0,0]", 2, "detection") == [False, False]
    for bad in ("[1, 0]", "[1, 2, 0]", "[1.0, 0, 1]", "none"):
        with pytest.raises(AnswerError, match="not a list of 3"):
            parse_judgments(bad, 3, "fuzzing")


def test_feature_selection():
    assert parse_feature_ids("0-3,7", 10, [1, 2]) == [0, 1, 2, 3, 7]
    assert parse_feature_ids("live", 10, [1, 2]) == [1, 2] and parse_feature_ids("all", 3, []) == [0, 1, 2]
    for bad in ("x", "5-2", "0-10"):
        with pytest.raises(UserError):
            parse_feature_ids(bad, 10, [])
