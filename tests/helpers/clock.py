"""A clock the test sets: engines and stores take ``clock=`` so that no test waits for time."""

from __future__ import annotations


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
