"""Concept vectors on the tiny source: CAA and mean-centring against brute-force means from run_with_cache,
the decomposition of a vector built from known decoder rows, the side-by-side steering's measured effects, one
sentence for every bad input, the store's round trip and the safetensors export."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load
from streamlit.testing.v1 import AppTest

from backend.concept_steering import PROBE_NAME, SideBySideSettings, check_strength, steer_side_by_side
from backend.concepts import (
    ConceptInputError,
    PromptSets,
    concept_vector,
    dataset_baseline,
    decompose,
    prompts_from_jsonl,
    prompts_from_lines,
    sae_reconstruction,
)
from backend.concepts_store import (
    ConceptsExport,
    ConceptStore,
    SavedConcept,
    concept_safetensors,
    export_concepts,
    import_concepts,
)
from backend.errors import UserError
from backend.index.datasets import dataset_texts, token_rows
from backend.inference.schemas import SteerFeature, SteerRequest

WITH = ["def add(a, b):", "def main():", "class Point:"]
WITHOUT = ["x = [1, 2, 3]", "print(i)", "y = {'k': 'v'}"]
KNOWN = [3, 17, 42]  # live features (the tiny SAE's last one is dead)


def brute_mean(source, prompts: list[str]) -> torch.Tensor:
    """Mean of the hook's activations over every non-BOS token, from a full forward pass with run_with_cache."""
    rows = []
    with torch.no_grad():
        for prompt in prompts:
            tokens = source.model.to_tokens(prompt)
            _, cache = source.model.run_with_cache(tokens, names_filter=source.hook_name)
            keep = tokens[0] != source.tokenizer.bos_token_id
            rows.append(cache[source.hook_name][0][keep])
    return torch.cat(rows).mean(0)


@pytest.fixture(scope="module")
def baseline(source, tiny_dataset):
    return dataset_baseline(source, str(tiny_dataset), tokens=2_048, sample=128)


def test_caa_is_the_brute_force_mean_difference(source):
    result = concept_vector(source, PromptSets(WITH, WITHOUT), "caa")
    expected = brute_mean(source, WITH) - brute_mean(source, WITHOUT)
    torch.testing.assert_close(result.vector, expected, atol=1e-5, rtol=1e-5)
    assert result.norm == pytest.approx(float(expected.norm()), rel=1e-5)
    assert result.with_stats.prompts == 3 and result.without_stats is not None
    assert result.with_stats.tokens == sum(len(source.model.to_tokens(p)[0]) - 1 for p in WITH)


def test_mean_centring_subtracts_the_dataset_mean(source, tiny_dataset, baseline):
    # brute force: every token row the baseline reads, run through the whole model, BOS left out
    rows = token_rows(dataset_texts(str(tiny_dataset)), source.tokenizer, source.context_size, True, 8, 2_048)
    acts = []
    with torch.no_grad():
        for batch in rows:
            _, cache = source.model.run_with_cache(batch, names_filter=source.hook_name)
            acts.append(cache[source.hook_name][batch != source.tokenizer.bos_token_id])
    dataset_mean = torch.cat(acts).mean(0)
    assert baseline.tokens == sum(a.shape[0] for a in acts)
    torch.testing.assert_close(baseline.mean, dataset_mean, atol=1e-5, rtol=1e-5)
    result = concept_vector(source, PromptSets(WITH, []), "mean_centring", baseline)
    torch.testing.assert_close(result.vector, brute_mean(source, WITH) - dataset_mean, atol=1e-5, rtol=1e-5)
    assert result.without_stats is None and result.baseline_tokens == baseline.tokens
    assert dataset_baseline(source, str(tiny_dataset), tokens=2_048, sample=128) is baseline  # computed once


def test_a_vector_of_known_decoder_rows_decomposes_into_them(source, baseline):
    w_dec = source.sae.W_dec.detach()
    scale = float(baseline.sample.norm(dim=1).mean())  # about a typical activation's size
    vector = scale * w_dec[KNOWN].sum(0)
    result = decompose(source, vector, baseline)
    assert {f.feature_id for f in result.by_cosine[:3]} == set(KNOWN)
    assert {f.feature_id for f in result.by_encoding[:3]} == set(KNOWN)
    # brute force: the cosine of every decoder row, and the SAE's encoding of each typical activation
    cos = torch.nn.functional.cosine_similarity(w_dec, vector.unsqueeze(0), dim=1)
    for f in result.by_cosine:
        assert f.cosine == pytest.approx(float(cos[f.feature_id]), abs=1e-5)
    with torch.no_grad():
        delta = (source.sae.encode(baseline.sample + vector) - source.sae.encode(baseline.sample)).mean(0)
    assert result.by_encoding[0].encoding_delta == pytest.approx(float(delta.max()), abs=1e-4)
    recon = {(r.k, r.selection): r for r in result.reconstructions}
    assert set(recon) == {(k, s) for k in (1, 5, 20) for s in ("decoder cosine", "SAE encoding")}
    assert recon[(5, "decoder cosine")].cosine == pytest.approx(1.0, abs=1e-4)  # the three rows span it
    assert recon[(1, "decoder cosine")].cosine == pytest.approx(float(cos.max()), abs=1e-4)
    assert recon[(5, "SAE encoding")].cosine > 0.9
    top5 = sae_reconstruction(source, result, 5)
    r5 = recon[(5, "SAE encoding")]
    assert float(top5.norm()) / float(vector.norm()) == pytest.approx(r5.norm_ratio, rel=1e-4)
    assert result.best_feature.feature_id in KNOWN


def test_side_by_side_steering_measures_the_projection_on_the_concept(engine, source, baseline):
    concept = concept_vector(source, PromptSets(WITH, WITHOUT), "caa")
    decomposition = decompose(source, concept.vector, baseline)
    settings = SideBySideSettings(prompt="def add(a, b):\n", strength=3.0, k=5, max_new_tokens=6, temperature=0)
    result = steer_side_by_side(engine, concept.vector, decomposition, sae_reconstruction(source, decomposition, 5),
                                settings)
    assert [a.kind for a in result.arms] == ["raw vector", "SAE reconstruction", "best feature"]
    target = 3.0 * concept.norm
    assert all(a.added_norm == pytest.approx(target) for a in result.arms)
    unit = concept.vector / concept.vector.norm()
    for arm in result.arms:  # brute force: the generated tokens' activations at the hook, projected on the unit vector
        ids = [t.id for t in arm.response.prompt_tokens] + [t.token.id for t in arm.response.steered.tokens]
        with torch.no_grad():
            _, cache = source.model.run_with_cache(torch.tensor([ids]), names_filter=source.hook_name)
        acts = cache[source.hook_name][0, len(arm.response.prompt_tokens):]
        assert arm.projection_steered == pytest.approx(float((acts @ unit).mean()), abs=1e-4)
    best = result.arms[2]
    assert best.response.summary[0].strength == pytest.approx(target / decomposition.best_feature.decoder_norm)
    assert best.response.vector_summary[0].name == PROBE_NAME
    # the probe (strength 0) is measured, never added: the same request without it generates the same tokens
    plain = engine.steer(SteerRequest(prompt=settings.prompt, max_new_tokens=6, temperature=0, stop_at_eos=False,
                                      features=[SteerFeature(feature_id=decomposition.best_feature.feature_id,
                                                             strength=best.response.summary[0].strength)]))
    assert [t.token.id for t in plain.steered.tokens] == [t.token.id for t in best.response.steered.tokens]
    assert result.default_text == result.arms[0].response.default.text


def one_sentence(message: str) -> None:
    assert message.endswith(".") and message.count(". ") == 0, message


@pytest.mark.parametrize("sets, method, expected", [
    (PromptSets([], WITHOUT), "caa", "set of prompts with the concept is empty"),
    (PromptSets(WITH, []), "caa", "set of prompts without the concept is empty"),
    (PromptSets(WITH * 3, WITHOUT[:1]), "caa", r"differ a lot in size \(9 prompts with the concept, 1 without\)"),
    (PromptSets(["def add(a, b):\n    return a + b"], ["x"]), "caa", "differ a lot in length"),
    (PromptSets(["x " * 40], ["y"]), "mean_centring", "Prompt 1 of the set with the concept has .* tokens but"),
    (PromptSets(WITH, WITHOUT), "pca", "Unknown method 'pca'"),
])
def test_bad_prompt_sets_get_one_sentence(source, baseline, sets, method, expected):
    with pytest.raises(ConceptInputError, match=expected) as info:
        concept_vector(source, sets, method, baseline)
    one_sentence(str(info.value))
    assert isinstance(info.value, ValueError) and isinstance(info.value, UserError)


def test_bad_vectors_strengths_and_files_get_one_sentence(source, baseline):
    width = source.sae.W_dec.shape[1]
    cases = [(lambda: decompose(source, [1.0, 2.0], baseline), f"has 2 values but the hook .* is {width} wide"),
             (lambda: decompose(source, [float("nan")] * width, baseline), "not finite"),
             (lambda: decompose(source, [0.0] * width, baseline), "all zeros"),
             (lambda: check_strength(float("inf")), "strength is inf; give a finite number"),
             (lambda: prompts_from_jsonl('{"text": "a", "concept": true}\nnot json\n'), "Line 2 of the file"),
             (lambda: prompts_from_jsonl('{"text": 3}\n'), "Line 1 of the file needs 'text' to be a string")]
    for call, expected in cases:
        with pytest.raises(ConceptInputError, match=expected) as info:
            call()
        one_sentence(str(info.value))


def test_prompt_parsers():
    assert prompts_from_lines("def f():\\n    pass\n\n  \nimport os\n") == ["def f():\n    pass", "import os"]
    sets = prompts_from_jsonl('{"text": "a", "concept": true}\n\n{"text": "b", "concept": false}\n{"text": "c"}\n')
    assert sets == PromptSets(["a"], ["b", "c"])


def concept_for(source, name: str = "functions") -> SavedConcept:
    vector = torch.randn(source.sae.W_dec.shape[1], generator=torch.Generator().manual_seed(1))
    return SavedConcept(name=name, method="caa", hook_name=source.hook_name, layer=source.hook_layer, model="tiny",
                        with_concept=WITH, without_concept=WITHOUT, vector=vector.tolist(), author="ada")


def test_store_round_trip_and_team_export(source, tmp_path):
    store = ConceptStore(tmp_path / "a.team.sqlite", d_in=source.sae.W_dec.shape[1])
    original = concept_for(source)
    saved = store.save(original)
    assert saved.concept_id is not None and saved.created_at
    again = store.get(saved.concept_id)
    assert again.vector == pytest.approx(original.vector, abs=1e-6) and again.with_concept == WITH
    assert again.without_concept == WITHOUT and again.author == "ada" and again.hook_name == source.hook_name
    assert [s.name for s in store.summaries()] == ["functions"]
    assert store.summaries()[0].norm == pytest.approx(original.norm, rel=1e-5)
    with pytest.raises(UserError, match="already exists"):
        store.save(original)
    with pytest.raises(UserError, match="has 2 values but this index's hook is"):
        store.save(original.model_copy(update={"vector": [1.0, 2.0], "name": "short"}))
    exported = export_concepts(tmp_path / "a.team.sqlite")
    payload = ConceptsExport.model_validate_json(exported.model_dump_json())  # survives JSON
    ids = import_concepts(tmp_path / "b.team.sqlite", payload)
    other = ConceptStore(tmp_path / "b.team.sqlite")
    assert other.get(ids[0]).vector == again.vector and other.get(ids[0]).name == "functions"
    assert import_concepts(tmp_path / "b.team.sqlite", payload) != ids  # importing again replaces, no duplicate
    assert len(other.summaries()) == 1
    store.delete(saved.concept_id)
    with pytest.raises(UserError, match=f"Concept {saved.concept_id} does not exist"):
        store.get(saved.concept_id)


def test_safetensors_export_names_the_hook(source, tmp_path):
    concept = concept_for(source)
    data = concept_safetensors(concept)
    assert load(data)["vector"].tolist() == pytest.approx(concept.vector, abs=1e-6)
    file = tmp_path / "c.safetensors"  # safe_open reads files, not bytes
    file.write_bytes(data)
    with safe_open(str(file), framework="pt") as f:
        meta = f.metadata()
    assert meta["hook_name"] == source.hook_name and meta["hook_layer"] == str(source.hook_layer)
    assert meta["method"] == "caa" and meta["name"] == "functions"


# ---- the page, under Streamlit's AppTest on the tiny index ----------------------------------------------------

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def open_page(tiny_index, tmp_path, monkeypatch):
    """A fresh session on the Concepts page of a private copy of the tiny index (an empty team file beside it)."""
    index = tmp_path / "tiny.duckdb"
    shutil.copy(tiny_index, index)
    monkeypatch.setenv("SAE_EXPLORER_INDEX", str(index))

    def open_(**params: object) -> AppTest:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=180)
        at.run()
        at.switch_page(str(ROOT / "pages" / "concepts.py"))
        for key, value in params.items():
            at.query_params[key] = str(value)
        return at.run()

    open_.index = index
    return open_


def clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_concepts_page_computes_saves_and_reopens_a_concept(open_page, source):
    at = open_page()
    clean(at)
    assert any("press Compute" in i.value for i in at.info)
    at.text_input(key="concepts.name.new").input("functions")
    at.text_area(key="concepts.with.new").input("\n".join(WITH))
    at.text_area(key="concepts.without.new").input("\n".join(WITHOUT))
    next(b for b in at.button if b.label == "Compute").click().run()
    clean(at)
    expected = brute_mean(source, WITH) - brute_mean(source, WITHOUT)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Norm"] == f"{float(expected.norm()):.3f}" and metrics["Prompts with / without"] == "3 / 3"
    by_cosine = at.dataframe[0].value
    cos = torch.nn.functional.cosine_similarity(source.sae.W_dec.detach(), expected.unsqueeze(0), dim=1)
    assert int(by_cosine["feature"][0]) == int(cos.argmax()) and metrics["Closest feature"] == f"#{int(cos.argmax())}"
    assert sorted(at.dataframe[2].value["features (k)"].unique()) == [1, 5, 20]

    next(b for b in at.button if b.label == "Save for the team").click().run()
    clean(at)
    (summary,) = ConceptStore.for_index(open_page.index).summaries()
    assert summary.name == "functions" and at.query_params["id"] == str(summary.concept_id)

    again = open_page(id=summary.concept_id, prompt="def add(a, b):\n", n=6)  # a fresh session opens the link
    clean(again)
    assert {m.label: m.value for m in again.metric}["Norm"] == metrics["Norm"]
    assert again.text_area(key=f"concepts.with.{summary.concept_id}").value == "\n".join(WITH)
    projections = [m for m in again.metric if m.label == "Projection on the concept"]
    assert len(projections) == 3  # raw vector, SAE reconstruction, best feature
    effects = again.dataframe[-2].value  # the effect table, then the saved concepts
    assert list(effects["steered with"]) == ["raw vector", "SAE reconstruction", "best feature"]
    assert list(again.dataframe[-1].value["name"]) == ["functions"]


def test_concepts_page_bad_input_is_one_sentence(open_page):
    at = open_page(id=99)
    assert not at.exception
    assert [e.value for e in at.error] == ["Concept 99 does not exist (it may have been deleted)."]
    fresh = open_page()
    fresh.text_area(key="concepts.with.new").input("def add(a, b):")
    next(b for b in fresh.button if b.label == "Compute").click().run()
    assert not fresh.exception
    (error,) = [e.value for e in fresh.error]
    assert "without the concept is empty" in error
