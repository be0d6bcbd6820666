"""Background workers that show napari progress and end with their viewer.

Every long operation of the widgets runs in a napari ``thread_worker``. The
widget hands it to :func:`track`, which

- adds a napari progress bar (the activity dock) advanced per yielded item;
- remembers the worker with its stop flag, so that closing the viewer while
  it runs asks it to stop (the flag for loops that check it between tiles,
  ``quit()`` for generator workers between items) and waits for it before
  the window goes: no thread outlives its widgets and writes into deleted
  layers, and a stopped training still ends with its best state restored;
- frees cached GPU memory when the worker ends.

The close is seen by an event filter on the viewer's main window (napari
has no public "viewer closing" event); the filter only reads Close events.

Widgets use two things from here rather than writing their own:
:class:`Job` (their one background job: busy buttons, stop flag, handlers
connected before the start, failures reported) and :func:`reports_errors`
(an action whose bad input becomes one error message, nothing else done).
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from pathlib import Path

from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_warning
from qtpy.QtCore import QEvent, QObject
from qtpy.QtWidgets import QApplication

from ..errors import NanowireSSLError

CLOSE_WAIT_S = 60.0  # longest wait for running workers when the viewer closes


def release_gpu_memory() -> None:
    """Return the CUDA cache to the driver (no-op without CUDA, and without torch loaded)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class _ViewerWorkers(QObject):
    """The running workers of one viewer; stops and awaits them when its window closes."""

    def __init__(self, window) -> None:
        super().__init__()
        self.running: dict = {}  # worker -> stop flag
        window.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Close:
            self.stop_all()
        return False

    def stop_all(self, timeout_s: float = CLOSE_WAIT_S) -> bool:
        """Ask every running worker to stop and wait for them; True when all ended in time."""
        for worker, stop in list(self.running.items()):
            stop.set()
            worker.quit()
        deadline = time.monotonic() + timeout_s
        while any(worker.is_running for worker in self.running) and time.monotonic() < deadline:
            QApplication.processEvents()  # deliver their last signals while the widgets still exist
            time.sleep(0.02)
        QApplication.processEvents()
        return not any(worker.is_running for worker in self.running)


_BY_VIEWER: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def viewer_workers(viewer) -> _ViewerWorkers:
    """The worker registry of ``viewer`` (created, with its close filter, on first use)."""
    if viewer not in _BY_VIEWER:
        # The menu bar's top-level widget is the main window: public napari and Qt API only.
        _BY_VIEWER[viewer] = _ViewerWorkers(viewer.window.main_menu.window())
    return _BY_VIEWER[viewer]


def track(viewer, worker, stop: threading.Event, description: str, total: int = 0) -> None:
    """Show ``worker`` in napari's activity dock and end it with ``viewer``; see the module docstring.

    ``total`` = number of items the worker yields (0: an indeterminate bar).
    Call before ``worker.start()``.
    """
    from napari.utils import progress

    registry = viewer_workers(viewer)
    registry.running[worker] = stop
    bar = progress(total=total, desc=description)
    if total:
        worker.yielded.connect(lambda _: bar.increment_with_overflow())

    def ended() -> None:
        registry.running.pop(worker, None)
        bar.close()
        release_gpu_memory()

    worker.finished.connect(ended)


def report_error(message) -> None:
    """Tell the user about a problem: one line, in napari's notification area."""
    show_error(str(message))


def reports_errors(action):
    """Decorate a widget action: a :class:`NanowireSSLError` or an ``OSError`` (a file that cannot be
    written...) from it becomes one :func:`report_error` line and the action does nothing more."""

    @functools.wraps(action)
    def run(*args, **kwargs):
        try:
            return action(*args, **kwargs)
        except (NanowireSSLError, OSError) as exc:
            report_error(exc)
            return None

    return run


class Job:
    """The one background job a widget runs at a time.

    ``start`` disables the ``start_buttons`` and enables ``stop_button`` until
    the worker ends, connects every handler before the worker starts (so no
    signal is missed), reports a failure as ``"<failed>: <error>"``, and
    tracks the worker with the viewer (:func:`track`). ``stop`` sets the
    flag the worker's loop checks (``should_stop=job.stop_flag.is_set``).
    """

    def __init__(self, viewer, start_buttons, stop_button=None) -> None:
        self.viewer = viewer
        self.start_buttons = list(start_buttons)
        self.stop_button = stop_button
        self.stop_flag = threading.Event()
        self.worker = None
        self.busy = False  # from start until the worker's finished signal (is_running lags the start)

    def start(self, worker, description: str, *, total: int = 0, yielded=None, returned=None,
              failed: str = "Failed", finished=None) -> None:
        """Run ``worker`` (a ``thread_worker`` made with ``start_thread=False``)."""
        if self.busy:
            raise NanowireSSLError("Still working: wait for the running job or press Stop")
        self.stop_flag.clear()
        self.worker = worker
        if yielded is not None:
            worker.yielded.connect(yielded)
        if returned is not None:
            worker.returned.connect(returned)
        worker.errored.connect(lambda exc: report_error(f"{failed}: {exc}"))
        worker.finished.connect(lambda: self._set_busy(False))
        if finished is not None:
            worker.finished.connect(finished)
        track(self.viewer, worker, self.stop_flag, description, total)
        self._set_busy(True)
        worker.start()

    def stop(self) -> None:
        """Ask the running worker to end at its loop's next check of the flag; what follows the
        loop (saving, restoring the best state) still runs."""
        self.stop_flag.set()

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for button in self.start_buttons:
            button.enabled = not busy
        if self.stop_button is not None:
            self.stop_button.enabled = busy


# --- the background jobs more than one widget runs ----------------------------------------


@thread_worker(start_thread=False)
def batch_worker(bundle, files: list[Path], out_dir: Path, stop: threading.Event, *, crop_bottom: int | str):
    """Generator worker over :func:`..batch.process_files`: yields its events, returns the rows."""
    from ..batch import process_files

    rows = []
    for event in process_files(bundle, files, out_dir, crop_bottom=crop_bottom, should_stop=stop.is_set,
                               on_fallback=show_warning):
        rows.append(event.row)
        yield event
    return rows


@thread_worker(start_thread=False)
def pretrain_worker(trainer, stop: threading.Event, out: Path, description: str):
    """Generator worker over a :class:`~..ssl.pretrain.Pretrainer` (pretraining and adaptation): one
    yielded event per step; saves when done or stopped (``stop`` is checked after every step)."""
    for event in trainer.steps():
        yield event
        if stop.is_set():
            break
    return trainer.finish(out, data_description=description)
