"""Concept vectors at the SAE's hook, and what the SAE makes of them (engine side, no Streamlit).

- `concept_vector`: from prompts with and without a concept, either the mean difference of the hook's
  activations over their tokens (CAA, Rimsky et al.), or the concept mean minus the dataset's mean activation
  (mean-centring, Jorgensen et al.). Special tokens (BOS above all) count in no mean: their activations are
  outliers the SAE never saw in training, and every prompt has one.
- `dataset_baseline`: the dataset's mean activation and a sample of real token activations, computed once per
  source, hook and dataset and kept for the process.
- `decompose`: which SAE features a vector is made of, by cosine with the decoder rows and by the SAE's own
  encoding of typical activations plus the vector (minus their encoding alone), and how much of the vector
  the top-k features reconstruct.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import torch

from backend.errors import UserError
from backend.index.datasets import dataset_texts, token_rows
from backend.index.sparse import hook_activations
from backend.sources import LoadedSource

Method = Literal["caa", "mean_centring"]
METHODS: dict[str, str] = {"caa": "Mean difference (CAA)", "mean_centring": "Mean-centring"}
RECONSTRUCTION_KS = (1, 5, 20)
MAX_PROMPTS = 500
COUNT_RATIO_LIMIT = 4.0  # sets further apart than this in prompt count are refused
LENGTH_RATIO_LIMIT = 3.0  # ... or in mean tokens per prompt: the difference would partly encode length
BASELINE_TOKENS = 8_192
BASELINE_SAMPLE = 256


class ConceptInputError(UserError, ValueError):
    """A prompt set, vector or strength the concept tools cannot use, in one sentence."""


# ---- prompts ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PromptSets:
    with_concept: list[str]
    without_concept: list[str]


def prompts_from_lines(text: str) -> list[str]:
    """One prompt per non-empty line; a literal `\\n` inside a line stands for a line break (code prompts)."""
    return [line.replace("\\n", "\n") for line in (text or "").splitlines() if line.strip()]


def prompts_from_jsonl(data: bytes | str) -> PromptSets:
    """Lines like {"text": "...", "concept": true}; `concept` false (or absent) puts the text in the other set."""
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    sets: dict[bool, list[str]] = {True: [], False: []}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt, concept = row["text"], row.get("concept", False)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ConceptInputError(f"Line {n} of the file is not a JSON object with a 'text' field "
                                    '(like {"text": "...", "concept": true}).') from exc
        if not isinstance(prompt, str) or not isinstance(concept, bool):
            raise ConceptInputError(f"Line {n} of the file needs 'text' to be a string and 'concept' true or false.")
        sets[concept].append(prompt)
    return PromptSets(sets[True], sets[False])


# ---- activations -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SetStats:
    prompts: int
    tokens: int  # tokens counted in the mean (special tokens left out)

    @property
    def tokens_per_prompt(self) -> float:
        return self.tokens / max(self.prompts, 1)


@dataclass(frozen=True)
class ConceptVector:
    method: Method
    hook_name: str
    vector: torch.Tensor  # [d_in] float32 on the CPU
    with_stats: SetStats
    without_stats: SetStats | None  # None for mean-centring
    baseline_tokens: int  # dataset tokens in the mean that mean-centring subtracts (0 for CAA)

    @property
    def norm(self) -> float:
        return float(self.vector.norm())


@dataclass(frozen=True)
class Baseline:
    """What "typical" means at the hook: the dataset's mean activation and real token activations."""

    mean: torch.Tensor  # [d_in] float32, CPU
    sample: torch.Tensor  # [n, d_in] float32, CPU: token activations spread over the dataset
    tokens: int  # tokens in the mean


def _special_ids(source: LoadedSource) -> torch.Tensor:
    return torch.tensor(source.special_token_ids(), dtype=torch.long)


def _tokenize(source: LoadedSource, prompts: list[str], what: str) -> list[torch.Tensor]:
    """[1, n] token ids per prompt; a prompt longer than the context or with only special tokens is refused."""
    special, ctx = _special_ids(source), min(source.context_size, int(source.model.cfg.n_ctx))
    out = []
    for i, prompt in enumerate(prompts):
        ids = source.model.to_tokens(prompt, prepend_bos=source.prepend_bos, truncate=False).cpu()
        if ids.shape[1] > ctx:
            raise ConceptInputError(f"Prompt {i + 1} of the set {what} has {ids.shape[1]} tokens but the model "
                                    f"reads at most {ctx}; shorten it or split it into several lines.")
        if not (~torch.isin(ids[0], special)).any():
            raise ConceptInputError(f"Prompt {i + 1} of the set {what} has no tokens besides special ones; "
                                    "give it some text.")
        out.append(ids)
    return out


def _counted(ids: torch.Tensor, special: torch.Tensor) -> int:
    return int((~torch.isin(ids[0], special)).sum())


def check_prompt_sets(source: LoadedSource, sets: PromptSets, method: Method) -> tuple[list[torch.Tensor],
                                                                                          list[torch.Tensor]]:
    """Tokenize both sets and refuse, in one sentence, sets that cannot give a meaningful vector."""
    if method not in METHODS:
        raise ConceptInputError(f"Unknown method '{method}'; use one of {', '.join(METHODS)}.")
    if not sets.with_concept:
        raise ConceptInputError("The set of prompts with the concept is empty; enter at least one prompt, one per "
                                "line.")
    if method == "caa" and not sets.without_concept:
        raise ConceptInputError("The set of prompts without the concept is empty; the mean difference subtracts its "
                                "mean, so enter at least one prompt there (or choose mean-centring).")
    for what, prompts in (("with the concept", sets.with_concept), ("without the concept", sets.without_concept)):
        if len(prompts) > MAX_PROMPTS:
            raise ConceptInputError(f"The set {what} has {len(prompts)} prompts; keep it to {MAX_PROMPTS}.")
    with_ids = _tokenize(source, sets.with_concept, "with the concept")
    without_ids = _tokenize(source, sets.without_concept, "without the concept") if method == "caa" else []
    if method == "caa":
        a, b = len(with_ids), len(without_ids)
        if max(a, b) > COUNT_RATIO_LIMIT * min(a, b):
            raise ConceptInputError(f"The sets differ a lot in size ({a} prompts with the concept, {b} without); give "
                                    f"them similar numbers of prompts (at most {COUNT_RATIO_LIMIT:g}x apart) so one "
                                    "set's quirks do not dominate.")
        special = _special_ids(source)
        la = sum(_counted(t, special) for t in with_ids) / a
        lb = sum(_counted(t, special) for t in without_ids) / b
        if max(la, lb) > LENGTH_RATIO_LIMIT * min(la, lb):
            raise ConceptInputError(f"The prompts differ a lot in length: {la:.1f} tokens on average with the "
                                    f"concept, {lb:.1f} without; make them similar (at most {LENGTH_RATIO_LIMIT:g}x "
                                    "apart) or the difference will partly encode length.")
    return with_ids, without_ids


def _token_activations(source: LoadedSource, ids: torch.Tensor) -> torch.Tensor:
    """[n_counted, d_in] float32 on the CPU: the hook's activations at the non-special tokens of one prompt."""
    keep = ~torch.isin(ids[0], _special_ids(source))
    acts = hook_activations(source, ids)[0]
    return acts.reshape(acts.shape[0], -1)[keep.to(acts.device)].float().cpu()


def _set_mean(source: LoadedSource, prompts: list[torch.Tensor]) -> tuple[torch.Tensor, SetStats]:
    """Mean over every counted token of every prompt (each token weighs the same)."""
    total, count = None, 0
    for ids in prompts:
        acts = _token_activations(source, ids)
        total = acts.sum(0) if total is None else total + acts.sum(0)
        count += acts.shape[0]
    assert total is not None  # the sets were checked non-empty
    return total / count, SetStats(len(prompts), count)


def concept_vector(source: LoadedSource, sets: PromptSets, method: Method,
                   baseline: Baseline | None = None) -> ConceptVector:
    """The concept's direction at the SAE's hook; mean-centring needs the dataset `baseline`."""
    with source.lock, torch.inference_mode():
        with_ids, without_ids = check_prompt_sets(source, sets, method)
        with_mean, with_stats = _set_mean(source, with_ids)
        if method == "caa":
            without_mean, without_stats = _set_mean(source, without_ids)
            return ConceptVector(method, source.hook_name, with_mean - without_mean, with_stats, without_stats, 0)
    if baseline is None:
        raise ConceptInputError("Mean-centring subtracts the dataset's mean activation, and none was given.")
    return ConceptVector(method, source.hook_name, with_mean - baseline.mean, with_stats, None, baseline.tokens)


_BASELINES: dict[tuple[str, str, str, int], Baseline] = {}
_BASELINES_LOCK = threading.Lock()


def dataset_baseline(source: LoadedSource, dataset: str | None, tokens: int = BASELINE_TOKENS,
                     sample: int = BASELINE_SAMPLE, texts: Iterable[str] | None = None) -> Baseline:
    """The mean activation over the first `tokens` tokens of the index's dataset (rows cut as the index cut
    them), with `sample` of those token activations drawn evenly; computed once per process."""
    key = (str(source.spec), source.hook_name, dataset or "", tokens)
    with _BASELINES_LOCK:
        if key in _BASELINES:
            return _BASELINES[key]
        rows = token_rows(iter(texts) if texts is not None else dataset_texts(dataset), source.tokenizer,
                          source.context_size, source.prepend_bos, batch_rows=8, max_tokens=tokens)
        parts: list[torch.Tensor] = []
        with source.lock, torch.inference_mode():
            for batch in rows:
                keep = ~torch.isin(batch, _special_ids(source))
                acts = hook_activations(source, batch)
                parts.append(acts.reshape(*batch.shape, -1)[keep.to(acts.device)].float().cpu())
        acts = torch.cat(parts) if parts else torch.zeros(0)
        if acts.shape[0] == 0:
            raise ConceptInputError(f"The dataset '{dataset}' gave no tokens to average; check the index's dataset.")
        picks = torch.linspace(0, acts.shape[0] - 1, min(sample, acts.shape[0])).round().long()
        _BASELINES[key] = Baseline(acts.mean(0), acts[picks].clone(), int(acts.shape[0]))
        return _BASELINES[key]


# ---- decomposition ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FeatureWeight:
    feature_id: int
    cosine: float  # with the feature's decoder row
    encoding_delta: float  # mean over typical activations x of enc(x + v)_f - enc(x)_f
    decoder_norm: float


@dataclass(frozen=True)
class Reconstruction:
    k: int
    selection: Literal["decoder cosine", "SAE encoding"]
    feature_ids: list[int]
    cosine: float  # of the reconstruction with the vector
    norm_ratio: float  # |reconstruction| / |vector|


@dataclass(frozen=True)
class Decomposition:
    hook_name: str
    norm: float
    by_cosine: list[FeatureWeight]  # largest cosine first
    by_encoding: list[FeatureWeight]  # largest encoding delta first
    reconstructions: list[Reconstruction]
    baseline_tokens: int  # typical activations the encoding was averaged over
    encoding_delta: torch.Tensor  # [d_sae]: the whole delta, for reconstructions of any k

    @property
    def best_feature(self) -> FeatureWeight:
        """The feature whose decoder direction is closest to the vector."""
        return self.by_cosine[0]


def check_vector(source: LoadedSource, vector: torch.Tensor | list[float]) -> torch.Tensor:
    """[d_in] float32 CPU; a vector of the wrong width, not finite or all zeros gets one sentence."""
    vector = torch.as_tensor(vector, dtype=torch.float32).detach().cpu()
    width = int(source.sae.W_dec.shape[1])
    if vector.ndim != 1 or vector.shape[0] != width:
        got = vector.shape[0] if vector.ndim == 1 else "x".join(str(s) for s in vector.shape)
        raise ConceptInputError(f"The vector has {got} values but the hook {source.hook_name} is {width} wide; "
                                "give one value per dimension.")
    if not bool(torch.isfinite(vector).all()):
        raise ConceptInputError("The vector holds a value that is not finite (NaN or infinity).")
    if float(vector.norm()) == 0:
        raise ConceptInputError("The vector is all zeros, so it has no direction to decompose or steer along.")
    return vector


def _weights(ids: torch.Tensor, cos: torch.Tensor, delta: torch.Tensor, norms: torch.Tensor) -> list[FeatureWeight]:
    return [FeatureWeight(int(i), float(cos[i]), float(delta[i]), float(norms[i])) for i in ids.tolist()]


def sae_reconstruction(source: LoadedSource, decomposition: Decomposition, k: int) -> torch.Tensor:
    """[d_in]: the top-k features of the SAE's encoding, each times its encoding delta (the SAE's own weights)."""
    delta = decomposition.encoding_delta
    top = torch.topk(delta, k=min(k, delta.shape[0])).indices
    w_dec = source.sae.W_dec.detach().float().cpu()
    return delta[top] @ w_dec[top]


@torch.inference_mode()
def decompose(source: LoadedSource, vector: torch.Tensor | list[float], baseline: Baseline,
              top_n: int = 20) -> Decomposition:
    v = check_vector(source, vector)
    w_dec = source.sae.W_dec.detach().float().cpu()
    norms = w_dec.norm(dim=1)
    cos = (w_dec @ v) / (norms.clamp_min(1e-12) * v.norm())
    with source.lock:
        x = baseline.sample.to(source.device, source.dtype)
        shifted = source.sae.encode(x + v.to(x.device, x.dtype)).float()
        delta = (shifted - source.sae.encode(x).float()).mean(0).cpu()
    n = min(top_n, w_dec.shape[0])
    reconstructions: list[Reconstruction] = []
    for k in RECONSTRUCTION_KS:
        by_cos = torch.topk(cos, k=min(k, n)).indices
        # least squares on the k closest decoder rows: the best these directions can do together
        coef = torch.linalg.lstsq(w_dec[by_cos].T, v.unsqueeze(1)).solution.squeeze(1)
        reconstructions.append(_reconstruction(k, "decoder cosine", by_cos, coef @ w_dec[by_cos], v))
        by_enc = torch.topk(delta, k=min(k, n)).indices
        reconstructions.append(_reconstruction(k, "SAE encoding", by_enc, delta[by_enc] @ w_dec[by_enc], v))
    return Decomposition(
        hook_name=source.hook_name, norm=float(v.norm()),
        by_cosine=_weights(torch.topk(cos, k=n).indices, cos, delta, norms),
        by_encoding=_weights(torch.topk(delta, k=n).indices, cos, delta, norms),
        reconstructions=reconstructions, baseline_tokens=int(baseline.sample.shape[0]), encoding_delta=delta)


def _reconstruction(k: int, selection, ids: torch.Tensor, recon: torch.Tensor, v: torch.Tensor) -> Reconstruction:
    r_norm = float(recon.norm())
    cosine = float(recon @ v) / (r_norm * float(v.norm())) if r_norm > 0 else 0.0
    return Reconstruction(k, selection, ids.tolist(), cosine, r_norm / float(v.norm()))
