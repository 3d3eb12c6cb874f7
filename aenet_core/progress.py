"""Progress of long work as log lines (logger ``aenet_core``): what a workflow job's log file shows while it
runs, where a progress bar would be one unreadable line.  The command line sends them to stderr; in a
notebook they show only where logging is configured (``show_progress`` draws the bars there)."""
from __future__ import annotations

import logging
import time

LOG = logging.getLogger("aenet_core")


def duration(seconds: float) -> str:
    """'42 s', '3 min 20 s', '2 h 05 min'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class ProgressLog:
    """Counts work done and logs '<label>: done/total unit (p %), elapsed, about t left': at the first update,
    whenever another ``1/lines`` of the work is done or ``seconds`` passed since the last line, and at the
    end.  With ``total`` None (not known in advance) the lines give what is done so far."""

    def __init__(self, label: str, total: int | None = None, unit: str = "", lines: int = 20, start: int = 0,
                 seconds: float = 60.0):
        self.label, self.total, self.unit, self.seconds = label, total, f" {unit}" if unit else "", seconds
        self.step = max(1, (total or 0) // lines)
        self.start = self.done = start
        self.started = self.reported = time.perf_counter()

    def update(self, count: int = 1, detail: str = "") -> None:
        before, self.done = self.done, self.done + count
        finished = self.total is not None and self.done >= self.total
        crossed = self.total is not None and self.done // self.step > before // self.step
        if before == self.start or crossed or finished or time.perf_counter() - self.reported >= self.seconds:
            self.reported = time.perf_counter()
            LOG.info(self.line(detail))

    def line(self, detail: str = "") -> str:
        elapsed = time.perf_counter() - self.started
        if self.total is None:
            return f"{self.label}: {self.done}{self.unit}{detail}, {duration(elapsed)} elapsed"
        text = f"{self.label}: {self.done}/{self.total}{self.unit}"
        if self.total:
            text += f" ({100 * self.done / self.total:.0f} %)"
        text += f"{detail}, {duration(elapsed)} elapsed"
        if self.start < self.done < self.total:
            left = elapsed / (self.done - self.start) * (self.total - self.done)
            text += f", about {duration(left)} left"
        return text
