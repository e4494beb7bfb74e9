"""Long builds survive: a build SIGKILLed after a checkpoint resumes and writes the same index as an
uninterrupted one; a resume against other options gets one sentence."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from backend.errors import UserError
from backend.index.build import IndexConfig, build_index
from backend.index.checkpoint import KILL_AFTER_CHECKPOINTS_ENV
from backend.index.meta import IndexMeta
from backend.sources import SourceSpec
from tests.conftest import TINY_INDEX_CONFIG

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_EVERY = 8 * 128 * 2  # every other batch of the tiny config


def _build_in_subprocess(spec: str, dataset: Path, out: Path, resume: bool, kill_after: int | None):
    config = {**TINY_INDEX_CONFIG, "dataset": str(dataset), "checkpoint_every": CHECKPOINT_EVERY, "resume": resume}
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from backend.index.build import IndexConfig, build_index; from backend.sources import SourceSpec;"
        "import json; build_index(SourceSpec.parse(sys.argv[2]), IndexConfig(**json.loads(sys.argv[3])), sys.argv[4])"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    env.pop(KILL_AFTER_CHECKPOINTS_ENV, None)
    if kill_after is not None:
        env[KILL_AFTER_CHECKPOINTS_ENV] = str(kill_after)
    return subprocess.run([sys.executable, "-c", script, str(ROOT), spec, json.dumps(config), str(out)],
                          env=env, capture_output=True, text=True, timeout=300)


def _tables(path: Path) -> dict[str, list]:
    con = duckdb.connect(str(path), read_only=True)
    try:
        out = {
            "features": con.execute("SELECT * FROM features ORDER BY feature_id").fetchall(),
            "examples": con.execute("SELECT * FROM examples ORDER BY feature_id, kind, interval_idx, rank").fetchall(),
            "vocab": con.execute("SELECT * FROM vocab ORDER BY token_id").fetchall(),
        }
        meta = IndexMeta.from_stored({k: json.loads(v) for k, v in con.execute("SELECT key, value FROM meta")
                                      .fetchall()})
    finally:
        con.close()
    out["meta"] = {k: getattr(meta, k) for k in ("tokens_processed", "tokens_counted", "rows", "coactivation_tokens")}
    return out


@pytest.fixture(scope="module")
def killed_build(tiny_dirs, tiny_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("resume") / "killed.duckdb"
    run = _build_in_subprocess(tiny_dirs.spec, tiny_dataset, out, resume=False, kill_after=2)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    work = out.parent / f".{out.name}.build"
    assert (work / "state.pt").exists() and not out.exists(), "killed: a checkpoint, no index"
    return out


def test_resume_after_sigkill_equals_an_uninterrupted_build(tiny_dirs, tiny_dataset, tiny_index, killed_build):
    run = _build_in_subprocess(tiny_dirs.spec, tiny_dataset, killed_build, resume=True, kill_after=None)
    assert run.returncode == 0, run.stderr[-2000:]
    assert not (killed_build.parent / f".{killed_build.name}.build").exists(), "the work folder is removed at the end"
    resumed, straight = _tables(killed_build), _tables(tiny_index)
    assert resumed["meta"] == straight["meta"]
    for name in ("features", "examples", "vocab"):
        assert resumed[name] == straight[name], f"table {name} differs after resume"


def test_resume_with_other_options_is_one_sentence(tiny_dirs, tiny_dataset, tmp_path):
    out = tmp_path / "other.duckdb"
    run = _build_in_subprocess(tiny_dirs.spec, tiny_dataset, out, resume=False, kill_after=1)
    assert run.returncode == -signal.SIGKILL
    cfg = IndexConfig(**{**TINY_INDEX_CONFIG, "top_k": 3}, dataset=str(tiny_dataset),
                      checkpoint_every=CHECKPOINT_EVERY, resume=True)
    with pytest.raises(UserError, match=r"different top_k; run the same command as before"):
        build_index(SourceSpec.parse(tiny_dirs.spec), cfg, out)
    assert not out.exists() and (out.parent / f".{out.name}.build" / "state.pt").exists(), "checkpoint kept"


def test_resume_with_nothing_to_resume_builds_from_the_start(tiny_dirs, tiny_dataset, tmp_path):
    cfg = IndexConfig(**{**TINY_INDEX_CONFIG, "tokens": 2_000, "umap": False}, dataset=str(tiny_dataset), resume=True)
    out = build_index(SourceSpec.parse(tiny_dirs.spec), cfg, tmp_path / "fresh.duckdb")
    assert _tables(out)["meta"]["tokens_processed"] >= 2_000
