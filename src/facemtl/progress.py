"""Progress that suits where it is written: a live bar on a terminal, a few plain lines in a log.

A tqdm bar redraws many times a second; sent to a file (``facemtl train ... > train.log``,
a batch job) every redraw stays there, and the log fills with carriage-return lines. Off
a terminal :func:`progress_bar` therefore prints one line per 10 % of the work (or
nothing, for callers that print their own summary line) instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from tqdm import tqdm

#: Item counts at which a line is printed when the total is unknown: 1, 2, 5, 10, 20, 50, ...
_UNKNOWN_TOTAL_STEPS = (1, 2, 5)


def is_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is an interactive terminal (a closed or odd stream counts as not)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed file
        return False


class LineProgress:
    """tqdm's ``update`` / ``set_postfix`` / ``close`` / iteration, written as plain lines.

    One line each time another ``every`` fraction of ``total`` is done, e.g.
    ``predict: 50/100 frames (50 %), 12.3 frame/s``; with no total, at 1, 2, 5, 10, 20, ...
    items. ``close`` writes the final count if the last line did not show it.
    """

    def __init__(self, iterable: Iterable[Any] | None = None, total: int | None = None, desc: str = "",
                 unit: str = "it", stream: IO[str] | None = None, every: float = 0.1) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.n = 0
        self.postfix = ""
        self._shown = 0  # the count the last line showed
        self._next = self._threshold(0)
        self._start = time.perf_counter()

    def _threshold(self, done: int) -> int:
        """The count at which the next line is due, given ``done`` lines' worth of progress."""
        if self.total and done < self.total:
            step = max(1, round(self.total * self.every))
            return min(self.total, (done // step + 1) * step)
        # no total, or past it (a video's frame count is an estimate): 1, 2, 5, 10, 20, ...
        scale = 1
        while True:
            for step in _UNKNOWN_TOTAL_STEPS:
                if step * scale > done:
                    return step * scale
            scale *= 10

    def _line(self) -> str:
        rate = self.n / max(time.perf_counter() - self._start, 1e-9)
        count = f"{self.n}/{self.total} {self.unit}s ({100 * self.n / self.total:.0f} %)" if self.total else f"{self.n} {self.unit}s"
        postfix = f", {self.postfix}" if self.postfix else ""
        return f"{self.desc + ': ' if self.desc else ''}{count}, {rate:.1f} {self.unit}/s{postfix}"

    def _write(self) -> None:
        print(self._line(), file=self.stream, flush=True)
        self._shown = self.n

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items; print a line when a threshold is crossed."""
        self.n += n
        if self.n >= self._next:
            self._write()
            self._next = self._threshold(self.n)

    def set_postfix(self, **values: Any) -> None:
        """Shown at the end of the next line (``loss=0.123``)."""
        self.postfix = ", ".join(f"{key}={value}" for key, value in values.items())

    def close(self) -> None:
        """Print the final count, unless the last line already showed it."""
        if self.n != self._shown:
            self._write()

    def __iter__(self) -> Iterator[Any]:
        assert self.iterable is not None, "LineProgress(iterable=...) to iterate"
        try:
            for item in self.iterable:
                yield item
                self.update()
        finally:
            self.close()


def progress_bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
                 unit: str = "it", show: bool = True, lines: bool = True, stream: IO[str] | None = None,
                 **tqdm_options: Any) -> tqdm | LineProgress:
    """A tqdm bar on a terminal; off one, plain lines per 10 % (``lines``) or nothing.

    Args:
        iterable, total, desc, unit: as tqdm's.
        show: False shows nothing at all (a disabled bar, still safe to update and close).
        lines: off a terminal, print :class:`LineProgress` lines; False prints nothing there,
            for callers that write their own summary line (the trainer's epoch line).
        stream: where to write; default ``sys.stderr`` (as tqdm).
        tqdm_options: more tqdm arguments (``leave``, ``dynamic_ncols``), used on a terminal.
    """
    stream = stream if stream is not None else sys.stderr
    if show and is_terminal(stream):
        return tqdm(iterable, total=total, desc=desc, unit=unit, file=stream, **tqdm_options)
    if show and lines:
        return LineProgress(iterable, total, desc, unit, stream)
    return tqdm(iterable, total=total, disable=True)
