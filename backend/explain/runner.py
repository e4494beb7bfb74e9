"""The LLM run: explain each feature from its stored examples, then let the same model judge the explanation
on held-out examples (detection and fuzzing, delphi's framing), concurrently within a rate limit.

One feature's result is written in one transaction once all its calls are done, so an interrupted run
keeps what it finished and resumes with the rest (`done_ids`). An endpoint problem (EndpointError) stops
the run at once; the features in flight are not written. A malformed answer is that feature's failure,
recorded with its reason. Team labels are never touched: results go to the explanations sidecar."""

from __future__ import annotations

import json
import threading
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field

import numpy as np
from tqdm.auto import tqdm

from backend.errors import UserError
from backend.explain.heldout import HeldOut, encode_heldout
from backend.explain.llm import ChatClient, EndpointConfig, EndpointError, RateLimiter
from backend.explain.models import LLM, Explanation, Judgment
from backend.explain.prompts import (
    DETECTION_SYSTEM,
    EXPLAIN_SYSTEM,
    FUZZING_SYSTEM,
    AnswerError,
    Shown,
    explain_prompt,
    judge_prompt,
    parse_explanation,
    parse_judgments,
)
from backend.explain.scoring import judged_score
from backend.explain.storage import ExplanationStore, now
from backend.sources import load_source
from backend.store import IndexStore
from backend.store_examples import ExampleWindows, example_windows, live_feature_ids

MIN_EXAMPLES = 3  # stored examples needed to ask for an explanation at all


@dataclass(frozen=True)
class LLMRunConfig:
    endpoint: EndpointConfig
    concurrency: int = 4
    rate_limit: float = 60.0  # requests per minute, all threads together (0 = unlimited)
    explain_examples: int = 20  # top examples first, then interval samples
    judge_examples: int = 5  # activating examples per judge task (as many non-activating ones beside them)
    judge_batch: int = 10  # examples per judge request
    heldout_tokens: int = 100_000
    heldout_dataset: str | None = None
    retry_failed: bool = False
    seed: int = 0
    device: str | None = None
    progress: bool = True


@dataclass
class LLMRunReport:
    requested: int
    skipped: int  # already done before this run
    written: list[Explanation] = field(default_factory=list)


def parse_feature_ids(text: str, d_sae: int, live: list[int]) -> list[int]:
    """'live' (default), 'all', or ids and ranges: '0-99,120,300'."""
    text = (text or "live").strip().lower()
    if text == "live":
        return live
    if text == "all":
        return list(range(d_sae))
    ids: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        lo, _, hi = part.partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            raise UserError(f"'{part}' is not a feature id or a range like 10-20 (use e.g. --features 0-99,120).")
        first, last = int(lo), int(hi or lo)
        if first > last or last >= d_sae:
            raise UserError(f"The range '{part}' is outside this index's features 0 to {d_sae - 1}.")
        ids.update(range(first, last + 1))
    return sorted(ids)


# ---- one feature ----------------------------------------------------------------------------------

class _Feature:
    """Everything one feature's calls need; built in the worker thread."""

    def __init__(self, feature_id: int, windows: ExampleWindows, heldout: HeldOut, width: int, cfg: LLMRunConfig):
        self.id = feature_id
        self.rows = windows.rows_of(feature_id)
        self.windows = windows
        self.heldout = heldout
        self.width = min(width, heldout.ctx)
        self.cfg = cfg
        self.rng = np.random.default_rng([cfg.seed, feature_id])
        sl = heldout.feature_slice(feature_id)
        self.fire_pos, self.fire_act = heldout.fire_pos[sl], heldout.fire_act[sl]
        peak = windows.acts[self.rows].max() if len(self.rows) else 0.0
        self.peak = float(peak) if peak > 0 else 1.0

    def explain_examples(self) -> list[Shown]:
        top = [r for r in self.rows if self.windows.top[r]]
        rest = [r for r in self.rows if not self.windows.top[r]]
        chosen = (top + sorted(rest, key=lambda r: -self.windows.value[r]))[: self.cfg.explain_examples]
        out = []
        for r in chosen:
            valid = self.windows.tokens[r] >= 0
            acts = self.windows.acts[r][valid]
            levels = np.clip(np.round(acts / self.peak * 9), 1, 9).astype(int)
            out.append(Shown(self.windows.tokens[r][valid].tolist(), acts > 0, levels))
        return out

    def _window(self, start_pos: int) -> tuple[int, int, np.ndarray]:
        """(row, start column, acts of this feature) of the window starting at flat position `start_pos`."""
        row, start = divmod(int(start_pos), self.heldout.ctx)
        lo, hi = np.searchsorted(self.fire_pos, [start_pos, start_pos + self.width])
        acts = np.zeros(self.width, dtype=np.float32)
        acts[self.fire_pos[lo:hi] - start_pos] = self.fire_act[lo:hi]
        return row, start, acts

    def activating(self, n: int) -> list[tuple[int, int, np.ndarray]]:
        """n windows around firings spread over the activation quantiles (delphi samples by quantile)."""
        if len(self.fire_pos) == 0:
            return []
        ctx, before = self.heldout.ctx, self.width // 2
        order = np.argsort(self.fire_act)
        picks, seen = [], set()
        for chunk in np.array_split(order, min(len(order), 4 * n))[::-1]:
            p = int(self.rng.choice(self.fire_pos[chunk]))
            row, col = divmod(p, ctx)
            start = min(max(col - before, 0), ctx - self.width)
            if (row, start // self.width) not in seen:  # no two windows on the same stretch of text
                seen.add((row, start // self.width))
                picks.append(row * ctx + start)
        chosen = sorted(self.rng.choice(len(picks), size=min(n, len(picks)), replace=False)) if picks else []
        return [self._window(picks[i]) for i in chosen]

    def quiet(self, n: int) -> list[tuple[int, int, np.ndarray]]:
        """n random windows where the feature does not fire at all."""
        out = []
        for _ in range(50 * n):
            if len(out) == n:
                break
            row = int(self.rng.integers(self.heldout.rows))
            start = int(self.rng.integers(self.heldout.ctx - self.width + 1))
            window = self._window(row * self.heldout.ctx + start)
            if not window[2].any() and all((row, start) != (r, s) for r, s, _ in out):
                out.append(window)
        return out

    def shown(self, window: tuple[int, int, np.ndarray], marked: np.ndarray) -> Shown:
        row, start, _ = window
        return Shown(self.heldout.tokens[row, start: start + self.width].tolist(), marked)


def _judge(client: ChatClient, feature: _Feature, explanation: str, task: str, vocab: list[bytes]) -> list[Judgment]:
    n = feature.cfg.judge_examples
    active, quiet = feature.activating(n), feature.quiet(n)
    items: list[tuple[Shown, bool, tuple]] = []
    for w in active:
        items.append((feature.shown(w, w[2] > 0 if task == "fuzzing" else np.zeros(feature.width, bool)), True, w))
    for w in quiet:
        marked = np.zeros(feature.width, dtype=bool)
        if task == "fuzzing":  # as many random highlights as a typical activating window has
            typical = int(np.median([np.count_nonzero(a[2]) for a in active])) if active else 1
            keep = feature.heldout.keep[w[0], w[1]: w[1] + feature.width]
            choices = np.flatnonzero(keep)
            marked[feature.rng.choice(choices, size=min(max(typical, 1), len(choices)), replace=False)] = True
        items.append((feature.shown(w, marked), False, w))
    order = feature.rng.permutation(len(items))
    items = [items[i] for i in order]
    system = DETECTION_SYSTEM if task == "detection" else FUZZING_SYSTEM
    out = []
    for b in range(0, len(items), feature.cfg.judge_batch):
        batch = items[b: b + feature.cfg.judge_batch]
        prompt = judge_prompt(explanation, [s for s, _, _ in batch], vocab, marked=task == "fuzzing")
        said = parse_judgments(client.complete(system, prompt), len(batch), task)
        out += [Judgment(task=task, row=w[0], start=w[1], width=feature.width, truth=truth, said=s)
                for (_, truth, w), s in zip(batch, said, strict=True)]
    return out


def explain_feature(client: ChatClient, feature: _Feature, vocab: list[bytes], stop: threading.Event) -> Explanation:
    base = dict(feature_id=feature.id, method=LLM, model=client.cfg.model, created_at=now())
    if len(feature.rows) < MIN_EXAMPLES:
        return Explanation(**base, status="not_enough_data",
                           reason=f"{len(feature.rows)} stored examples ({MIN_EXAMPLES} needed to explain it)")
    text = ""
    try:
        text = parse_explanation(client.complete(EXPLAIN_SYSTEM, explain_prompt(feature.explain_examples(), vocab)))
        n = feature.cfg.judge_examples
        if len(feature.activating(n)) < n:
            return Explanation(**base, status="not_enough_data", text=text,
                               reason=f"{len(feature.fire_pos)} held-out firings, too few for {n} separate "
                                      "activating examples to judge it on")
        judgments = []
        for task in ("detection", "fuzzing"):
            if stop.is_set():
                raise EndpointError("stopped")
            judgments += _judge(client, feature, text, task, vocab)
    except AnswerError as exc:
        return Explanation(**base, status="failed", text="", reason=f"{exc} (explanation: {text!r})" if text
                           else str(exc))
    score = {t: judged_score([j.truth for j in judgments if j.task == t], [j.said for j in judgments if j.task == t])
             for t in ("detection", "fuzzing")}
    return Explanation(**base, status="ok", text=text, detection=score["detection"], fuzzing=score["fuzzing"],
                       judgments=judgments)


# ---- the run ------------------------------------------------------------------------------------------

def run_llm(index_path: str, features: str, cfg: LLMRunConfig) -> LLMRunReport:
    if cfg.concurrency < 1 or cfg.judge_examples < 1 or cfg.judge_batch < 1 or cfg.explain_examples < 1:
        raise UserError("--concurrency, --judge-examples, --judge-batch and --explain-examples must be at least 1.")
    with IndexStore.open(index_path) as store:
        meta, vocab = store.meta, store.vocab
        ids = parse_feature_ids(features, store.d_sae, live_feature_ids(store))
        windows = example_windows(store, ids)
    out = ExplanationStore.for_index(index_path)
    done = out.done_ids(LLM, cfg.endpoint.model, include_failed=not cfg.retry_failed)
    todo = [f for f in ids if f not in done]
    report = LLMRunReport(requested=len(ids), skipped=len(ids) - len(todo))
    if not todo:
        return report
    client = ChatClient(cfg.endpoint, RateLimiter(cfg.rate_limit))
    client.check()  # before minutes of encoding
    source = load_source(meta.source, cfg.device)
    width = meta.config.window_before + meta.config.window_after + 1
    heldout = encode_heldout(source, meta, cfg.heldout_tokens, cfg.heldout_dataset,
                             min_tokens=meta.context_size, progress=cfg.progress)
    run_id = out.start_run(LLM, cfg.endpoint.model, heldout.description,
                           json.dumps({k: v for k, v in asdict(cfg).items() if k != "endpoint"}))
    stop = threading.Event()
    work = lambda f: explain_feature(client, _Feature(f, windows, heldout, width, cfg), vocab, stop)  # noqa: E731
    bar = tqdm(total=len(todo), unit="feature", desc=f"explain ({cfg.endpoint.model})", disable=not cfg.progress)
    pool = ThreadPoolExecutor(cfg.concurrency)
    try:
        pending: set[Future] = set()
        queue = iter(todo)
        for f in queue:  # keep a bounded number of features in flight
            pending.add(pool.submit(work, f))
            if len(pending) >= 2 * cfg.concurrency:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                _write(finished, out, report, bar)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            _write(finished, out, report, bar)
    except BaseException:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        bar.close()
    pool.shutdown(wait=True)
    out.finish_run(run_id)
    return report


def _write(finished: set[Future], out: ExplanationStore, report: LLMRunReport, bar) -> None:
    """Write the finished features, one transaction each; the first endpoint error is raised after them."""
    error = None
    for fut in finished:
        exc = fut.exception()
        if exc is not None:
            error = error or exc
            continue
        explanation = fut.result()
        out.put(explanation)
        report.written.append(explanation)
        bar.update(1)
    if error is not None:
        raise error
