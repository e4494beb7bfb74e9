"""Who may use a dashboard served to a team: the mode switch, the passphrase check and its rate limits.

Off by default (`./run.sh dashboard` listens on 127.0.0.1 only, so the machine's own user is the only one who
can reach it). Team mode (`./run.sh dashboard --team`, or `SAE_EXPLORER_TEAM=1`) listens on the network and
asks for sign-in on every page: Streamlit's OIDC login when an `[auth]` section is configured in its secrets,
otherwise a passphrase shared by the team. Kept free of Streamlit so the rules are tested on their own."""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from dataclasses import dataclass, field

TEAM_ENV = "SAE_EXPLORER_TEAM"
PASSPHRASE_ENV = "SAE_EXPLORER_PASSPHRASE"
PASSPHRASE_SECRET = "sae_explorer_passphrase"  # top-level key in .streamlit/secrets.toml
MIN_PASSPHRASE_CHARS = 8
MAX_INPUT_CHARS = 200


def team_mode(environ: dict[str, str] | None = None) -> bool:
    value = (environ if environ is not None else os.environ).get(TEAM_ENV, "")
    return value.strip().lower() in {"1", "true", "yes", "on"}


def passphrase_matches(given: str, expected: str) -> bool:
    """Constant-time comparison; both sides hashed first so neither length nor content leaks through timing."""
    a = hashlib.sha256(given.encode("utf-8")).digest()
    b = hashlib.sha256(expected.encode("utf-8")).digest()
    return hmac.compare_digest(a, b)


@dataclass
class Backoff:
    """Failed attempts allowed before a wait: the first `free` failures (within `forget_after_s`) cost nothing,
    each later one doubles the wait from `base_s`, up to `max_s`. Thread-safe: the global one is shared by every
    session of the server."""

    free: int
    base_s: float
    max_s: float
    forget_after_s: float
    _failures: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _recent(self, now: float) -> list[float]:
        self._failures = [t for t in self._failures if now - t < self.forget_after_s]
        return self._failures

    def wait_s(self, now: float | None = None) -> float:
        """Seconds to wait before the next attempt may be checked (0: go ahead)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            recent = self._recent(now)
            if len(recent) < self.free:
                return 0.0
            delay = min(self.max_s, self.base_s * 2 ** (len(recent) - self.free))
            return max(0.0, recent[-1] + delay - now)

    def record_failure(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            self._recent(now).append(now)

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()


def session_backoff() -> Backoff:
    """Per browser session: 3 free tries, then 2 s, 4 s, 8 s … up to 5 minutes."""
    return Backoff(free=3, base_s=2.0, max_s=300.0, forget_after_s=900.0)


# every session of this server together: a guesser opening many sessions still meets a wall
GLOBAL_BACKOFF = Backoff(free=30, base_s=1.0, max_s=300.0, forget_after_s=600.0)


@dataclass(frozen=True)
class Attempt:
    ok: bool
    message: str = ""  # one sentence for the reader when not ok


def check_passphrase(given: str, expected: str, session: Backoff, everyone: Backoff = GLOBAL_BACKOFF,
                     now: float | None = None) -> Attempt:
    """One sign-in attempt under both rate limits; a refused attempt is not compared at all."""
    wait = max(session.wait_s(now), everyone.wait_s(now))
    if wait > 0:
        return Attempt(False, f"Too many wrong passphrases; try again in {wait:.0f} s.")
    if len(given) > MAX_INPUT_CHARS or not passphrase_matches(given, expected):
        session.record_failure(now)
        everyone.record_failure(now)
        return Attempt(False, "That passphrase is not right.")
    session.reset()
    return Attempt(True)


def clean_name(name: str) -> str:
    """The name a passphrase user signs in with: printable, trimmed, at most 60 characters."""
    return "".join(ch for ch in name if ch.isprintable()).strip()[:60]
