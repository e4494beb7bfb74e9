"""delphi-style prompts (explain, detection, fuzzing) and strict parsers of their answers.

The wording follows EleutherAI's delphi: the explainer sees examples with the active tokens between << and
>> and their activations on a 0-9 scale, and ends with "[EXPLANATION]: ..."; the judges see numbered
examples and answer with a Python list of 0/1, one per example. A line break inside a token is shown as ↵
so every example stays on one line. An answer that does not follow the format raises `AnswerError`: the
runner records it as a failure with that reason, never as a label."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import numpy as np

from backend.tokens import display_pieces

MAX_EXPLANATION_CHARS = 200

EXPLAIN_SYSTEM = """You are a meticulous AI researcher conducting an important investigation into patterns found \
in language. Your task is to analyze text and provide an explanation that thoroughly encapsulates possible \
patterns found in it.
Guidelines:

You will be given a list of text examples on which special words are selected and between delimiters like \
<<this>>. If a sequence of consecutive tokens all are important, the entire sequence of tokens will be contained \
between delimiters <<just like this>>. How important each token is for the behavior is listed after each example \
in parentheses, on a scale from 0 to 9. The symbol ↵ stands for a line break.

- Try to produce a concise final description. Simply describe the text features that are common in the \
examples, and what patterns you found.
- If the examples are uninformative, you don't need to mention them. Don't focus on giving examples of important \
tokens, but try to summarize the patterns found in the examples.
- Do not mention the marker tokens (<< >>) in your explanation.
- Do not make lists of possible explanations. Keep your explanations short and concise.
- The last line of your response must be the formatted explanation, using [EXPLANATION]:"""

DETECTION_SYSTEM = """You are an intelligent and meticulous linguistics researcher.

You will be given a certain feature of text, such as "male pronouns" or "text with negative sentiment". \
You will then be given several text examples. Your task is to determine which examples possess the feature. \
The symbol ↵ stands for a line break.

For each example in turn, return 1 if the example possesses the feature or 0 if it does not. You must return \
your response in a valid Python list. Do not return anything else besides a Python list."""

FUZZING_SYSTEM = """You are an intelligent and meticulous linguistics researcher.

You will be given a certain feature of text, such as "male pronouns" or "text with negative sentiment". \
You will be given a few examples of text that contain this feature. Portions of the sentence which strongly \
represent this feature are between tokens << and >>. The symbol ↵ stands for a line break.

Some examples might be mislabeled. Your task is to determine if every single token within << and >> is \
correctly labeled. Consider that all provided examples could be correct, none of the examples could be \
correct, or a mix. An example is only correct if every marked token is representative of the feature.

For each example in turn, return 1 if the sentence is correctly labeled or 0 if the tokens are mislabeled. You \
must return your response in a valid Python list. Do not return anything else besides a Python list."""


class AnswerError(Exception):
    """The model answered, but not in the asked format (the reason is recorded with the feature)."""


@dataclass(frozen=True)
class Shown:
    """One example as text: its tokens and which of them are marked."""

    tokens: list[int]
    marked: np.ndarray  # [len(tokens)] bool
    levels: np.ndarray | None = None  # [len(tokens)] 0-9, for the explainer's activation list


def render(example: Shown, vocab: list[bytes]) -> tuple[str, list[tuple[str, int]]]:
    """The example's text with runs of marked tokens between << >>, and (token, level) of each marked token.

    A token that only starts a multi-byte character shows nothing (backend/tokens.py); a run that shows
    nothing gets no markers."""
    pieces = [p.replace("\n", "↵") for p in display_pieces(example.tokens, vocab)]
    runs: list[tuple[bool, str]] = []
    levels = []
    for i, piece in enumerate(pieces):
        mark = bool(example.marked[i])
        if runs and runs[-1][0] == mark:
            runs[-1] = (mark, runs[-1][1] + piece)
        else:
            runs.append((mark, piece))
        if mark and example.levels is not None and piece:
            levels.append((piece, int(example.levels[i])))
    return "".join(f"<<{text}>>" if mark and text else text for mark, text in runs), levels


def explain_prompt(examples: list[Shown], vocab: list[bytes]) -> str:
    blocks = []
    for n, ex in enumerate(examples, 1):
        text, levels = render(ex, vocab)
        listed = ", ".join(f"({json.dumps(t, ensure_ascii=False)}, {lv})" for t, lv in levels)
        blocks.append(f"Example {n}: {text}\nActivations: {listed}")
    return "\n\n".join(blocks)


def judge_prompt(explanation: str, examples: list[Shown], vocab: list[bytes], marked: bool) -> str:
    """Detection (`marked` False: plain text) or fuzzing (`marked` True: the highlights are to be judged)."""
    lines = []
    for n, ex in enumerate(examples, 1):
        text = render(ex, vocab)[0] if marked else "".join(
            p.replace("\n", "↵") for p in display_pieces(ex.tokens, vocab))
        lines.append(f"Example {n}: {text}")
    return f"Feature explanation: {explanation}\n\nText examples:\n\n" + "\n\n".join(lines)


_THINK = re.compile(r"<think>.*?</think>", re.S | re.I)


def parse_explanation(answer: str) -> str:
    text = _THINK.sub("", answer or "")
    at = text.rfind("[EXPLANATION]:")
    if at < 0:
        raise AnswerError(f"the answer has no '[EXPLANATION]:' line: {_clip(text)}")
    lines = text[at + len("[EXPLANATION]:"):].strip().splitlines()
    explanation = (lines[0] if lines else "").strip().strip("*").strip()
    if len(explanation) >= 2 and explanation[0] == explanation[-1] and explanation[0] in "\"'`":
        explanation = explanation[1:-1].strip()  # the whole explanation in quotes
    if not explanation:
        raise AnswerError("the '[EXPLANATION]:' line is empty")
    if len(explanation) > MAX_EXPLANATION_CHARS:
        raise AnswerError(f"the explanation is {len(explanation)} characters long ({MAX_EXPLANATION_CHARS} at most)")
    return explanation


def parse_judgments(answer: str, n: int, task: str) -> list[bool]:
    """The last bracketed list in the answer, which must hold exactly `n` zeros and ones."""
    text = _THINK.sub("", answer or "")
    for candidate in reversed(re.findall(r"\[[^\[\]]*\]", text)):
        try:
            values = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(values, list) and len(values) == n and all(v in (0, 1) and not isinstance(v, float)
                                                                  for v in values):
            return [bool(v) for v in values]
    raise AnswerError(f"the {task} answer is not a list of {n} zeros and ones: {_clip(text)}")


def _clip(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "…")
