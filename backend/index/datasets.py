"""Token rows to index: the demo's held-out split, a Hugging Face dataset (streamed), or
local .txt / .jsonl / .parquet files. Every source yields rows of `context_size` tokens,
each starting with BOS when the source prepends one, cut from documents joined by BOS."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import torch

from backend.errors import NotFoundError, UserError

DEMO_HELDOUT = "demo-heldout"
DEMO_TRAIN = "demo-train"  # the LM's training split: more tokens, for benchmarks at scale


def dataset_texts(dataset: str | None) -> Iterator[str]:
    name = dataset or DEMO_HELDOUT
    if name in (DEMO_HELDOUT, DEMO_TRAIN):
        from backend.demo.corpus import build_manifest, iter_texts

        yield from iter_texts(build_manifest(), "heldout" if name == DEMO_HELDOUT else "train")
        return
    paths = [Path(p) for p in name.split(",")]
    if all(p.suffix in (".txt", ".jsonl", ".parquet") for p in paths):
        for p in paths:
            if not p.exists():
                raise NotFoundError(f"Dataset file {p} does not exist.")
            yield from _file_texts(p)
        return
    yield from _hub_texts(name)


def _file_texts(path: Path) -> Iterator[str]:
    if path.suffix == ".txt":
        yield path.read_text(encoding="utf-8", errors="replace")
    elif path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield json.loads(line)["text"]
                    except (json.JSONDecodeError, KeyError, TypeError) as exc:
                        raise UserError(f"Line {n} of {path} is not a JSON object with a 'text' field.") from exc
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if "text" not in table.column_names:
            raise UserError(f"{path} has no 'text' column (columns: {', '.join(table.column_names)}).")
        yield from table.column("text").to_pylist()


def _hub_texts(name: str) -> Iterator[str]:
    try:
        from datasets import load_dataset

        stream = load_dataset(name, split="train", streaming=True)
    except Exception as exc:  # the hub raises many types; all mean "could not open it"
        raise UserError(
            f"Could not open dataset '{name}' from the Hugging Face hub ({type(exc).__name__}); "
            "use local .txt/.jsonl/.parquet files or the demo's held-out split."
        ) from exc
    for row in stream:
        yield row.get("text") or ""


def token_rows(
    texts: Iterator[str], tokenizer, context_size: int, prepend_bos: bool, batch_rows: int, max_tokens: int
) -> Iterator[torch.Tensor]:
    """Batches of [<= batch_rows, context_size] token rows, stopping at max_tokens."""
    bos = tokenizer.bos_token_id
    body = context_size - 1 if prepend_bos else context_size
    buffer: list[int] = []
    rows: list[list[int]] = []
    emitted = 0
    for text in texts:
        if bos is not None:
            buffer.append(bos)
        buffer.extend(tokenizer(text, add_special_tokens=False)["input_ids"])
        while len(buffer) >= body:
            chunk, buffer = buffer[:body], buffer[body:]
            rows.append(([bos] if prepend_bos else []) + chunk)
            if len(rows) == batch_rows or (emitted + len(rows)) * context_size >= max_tokens:
                yield torch.tensor(rows, dtype=torch.long)
                emitted += len(rows)
                rows = []
                if emitted * context_size >= max_tokens:
                    return
    if rows:
        yield torch.tensor(rows, dtype=torch.long)


def prefetched(items: Iterator[torch.Tensor], depth: int = 2) -> Iterator[torch.Tensor]:
    """The same items, produced by a background thread `depth` ahead, so that reading and tokenizing
    text overlaps with the model (whose kernels release the GIL). An error in the producer is raised
    here, at the item where it happened."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(exc)

    thread = threading.Thread(target=produce, daemon=True, name="token-rows")
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
