"""Suite progress: one overall bar, a status line per run event, and a summary at the end.

`SuiteProgress` is an ``on_event`` callback for `Executor.map_runs`. Lines go through
``tqdm.write`` so that they scroll above the bar instead of breaking it:

    [ 3/12] running   iwae-k5 seed=0 3f2a9c81d0e4 (pid 4121)
    [ 3/12] done      iwae-k5 seed=0 3f2a9c81d0e4 (41.2 s)
    12 runs in 3m 05s: 9 done, 2 cached, 1 failed
      failed: beta-vae-b2 seed=1 (ValueError: ...)
"""

import sys
import time
from collections import Counter
from typing import TextIO

from tqdm.auto import tqdm

from benchmark.executors import RunEvent

FINAL = ("done", "cached", "failed", "diverged")


class SuiteProgress:
    """Draw the progress of a suite of `total` runs from `RunEvent`s.

    Args:
        total: Number of runs in the expanded suite.
        bar: Show the overall tqdm bar (status lines and the summary are always written).
        stream: Where everything goes; standard error by default, leaving stdout for results.
    """

    def __init__(self, total: int, *, bar: bool = True, stream: TextIO | None = None) -> None:
        self.total = total
        self.stream = stream if stream is not None else sys.stderr
        self.bar = tqdm(
            total=total,
            desc="suite",
            unit="run",
            disable=not bar,
            file=self.stream,
            dynamic_ncols=True,
        )
        self.counts: Counter[str] = Counter()
        self.problems: list[str] = []
        self.started = time.perf_counter()

    def __call__(self, event: RunEvent) -> None:
        self.bar.write(status_line(event, self.total), file=self.stream)
        if event.status in FINAL:
            self.counts[event.status] += 1
            self.bar.update(1)
            self.bar.set_postfix({s: self.counts[s] for s in FINAL if self.counts[s]})
        if event.status in ("failed", "diverged"):
            self.problems.append(f"  {event.status}: {run_label(event)} ({event.detail})")

    def close(self) -> str:
        """Close the bar, write the summary and return it."""
        self.bar.close()
        text = summary(self.counts, time.perf_counter() - self.started, self.problems)
        print(text, file=self.stream)
        return text


def run_label(event: RunEvent) -> str:
    """Return ``name seed=S hash12``, which identifies a run in every line."""
    return f"{event.spec.name} seed={event.spec.seed} {event.spec.hash[:12]}"


def status_line(event: RunEvent, total: int) -> str:
    """Return one line for an event: index, status, run and a note (time taken, pid, reason)."""
    width = len(str(total))
    note = event.detail
    seconds = event.record.timings.get("total") if event.record is not None else None
    if event.status == "done" and seconds is not None:
        note = f"{seconds:.1f} s"
    line = f"[{event.index + 1:>{width}}/{total}] {event.status:<9} {run_label(event)}"
    return f"{line} ({note})" if note else line


def summary(counts: Counter, seconds: float, problems: list[str]) -> str:
    """Return the end-of-suite summary: totals per status, wall time, then each problem run."""
    minutes, rest = divmod(int(round(seconds)), 60)
    parts = ", ".join(f"{counts[s]} {s}" for s in FINAL if counts[s]) or "nothing to run"
    return "\n".join([f"{sum(counts.values())} runs in {minutes}m {rest:02d}s: {parts}", *problems])
