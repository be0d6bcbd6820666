"""What a command does with the files of a batch that fail one by one (unreadable, unusable): each
is skipped with its reason, the others go on, and the reasons are printed as warnings at the end.
When no file succeeded the command fails as for any bad input: the first reason is its one-line
``error:`` (exit status 2). ``analyze``, ``classify`` and ``segment`` follow it for the files they
measure or predict (under ``torchrun`` every process for its own share); a file to train on that
fails stops the command at once, since a model without it would not be the one asked for."""

from __future__ import annotations

import sys

from ..errors import NanowireSSLError


def report_failures(failed: list[str], n_done: int) -> None:
    """Warn of each reason in ``failed``; raise the first when nothing succeeded (``n_done == 0``)."""
    first = failed[0] if failed and not n_done else None
    for message in failed[1:] if first else failed:
        print(f"warning: {message}", file=sys.stderr)
    if first:
        more = len(failed) - 1
        raise NanowireSSLError(first + (f" (and {more} more file(s) failed, warned above)" if more else ""))


def failed_note(failed: list[str]) -> str:
    """`` (N failed)`` for a summary line, or nothing."""
    return f" ({len(failed)} failed)" if failed else ""
