"""A request's time budget, checked between model steps so a long generation stops on time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from backend.inference.errors import InferenceTimeoutError


@dataclass
class Deadline:
    seconds: float
    started: float = field(default_factory=time.monotonic)

    def remaining(self) -> float:
        return self.seconds - (time.monotonic() - self.started)

    def check(self) -> None:
        if self.remaining() <= 0:
            raise InferenceTimeoutError(f"The request ran past its {self.seconds:g} s time limit and was stopped; "
                                        "ask for fewer tokens or try again when the service is less busy.")
