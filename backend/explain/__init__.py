"""Explanations of features, with scores that say how well they predict the activations.

- `heldout.py`   token rows the index never saw, encoded with the SAE (sparse firings): the scoring data
- `rules.py`     the offline rule language: token classes, rule families, keys per position, rule text
- `offline.py`   the offline explainer: rules mined from the index's examples, chosen on one held-out half,
                 scored on the other
- `scoring.py`   balanced precision / recall / F1 (delphi's detection framing), shared by both explainers
- `prompts.py`   delphi-style prompts (explain, detection, fuzzing) and the parsers of their answers
- `llm.py`       the one place the `openai` client is used: retries, rate limit, errors in one sentence
- `runner.py`    the LLM run: concurrent within a rate limit, progress bar, resumable, one write per feature
- `storage.py`   the explanations sidecar (`cache/<name>.explanations.sqlite`) and its SQL
"""
