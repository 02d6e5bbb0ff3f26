"""Work on a second thread while the caller goes on: the encoder's overlaps (imports during
the transcription, the beats during the timbre fit, an engine's rendering during the fit).
numpy, torch and onnxruntime release the GIL in their kernels, so on two cores the two
threads run side by side."""

from __future__ import annotations

import collections
import importlib
import queue
import threading
from typing import Any, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")


def in_background(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Callable[[], Any]:
    """Start ``fn(*args, **kwargs)`` on a daemon thread; returns a function that waits for its
    result (or raises its exception in the caller's thread)."""
    box: dict[str, Any] = {}

    def work() -> None:
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
            box["error"] = exc

    t = threading.Thread(target=work, name="semcodec-bg", daemon=True)
    t.start()

    def result() -> Any:
        t.join()
        if "error" in box:
            raise box["error"]
        return box["result"]

    return result


def prefetch(*modules: str) -> None:
    """Import ``modules`` on a background thread (a pure speed-up: errors are ignored here and
    surface, if at all, where the modules are really used)."""
    if not modules:
        return

    def work() -> None:
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # noqa: BLE001 - optional; the real import reports problems
                return

    threading.Thread(target=work, name="semcodec-prefetch", daemon=True).start()


#: Seconds between a waiting producer's checks that its consumer has gone (:func:`ahead`).
_AHEAD_POLL_S = 0.05


def ahead(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """``items`` computed on a second thread, at most ``depth`` ahead of the caller: a
    two-stage pipeline (the caller's work on one item overlaps the making of the next) with
    the same items in the same order.  An exception of ``items`` is raised at the caller's
    next item; a caller that stops early (closes this generator) stops the producer at its
    next item, and it is joined before the close returns."""
    box: queue.Queue = queue.Queue(maxsize=max(1, int(depth)))
    gone = threading.Event()

    def put(msg: tuple[str, Any]) -> bool:
        while not gone.is_set():
            try:
                box.put(msg, timeout=_AHEAD_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def work() -> None:
        try:
            for x in items:
                if not put(("item", x)):
                    return
            put(("end", None))
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread
            put(("error", exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    t = threading.Thread(target=work, name="semcodec-ahead", daemon=True)
    t.start()
    try:
        while True:
            kind, x = box.get()
            if kind == "item":
                yield x
            elif kind == "error":
                raise x
            else:
                return
    finally:
        gone.set()
        t.join()


def mapped(fn: Callable[[Any], T], items: Iterable[Any], workers: int = 2,
           depth: int | None = None) -> Iterator[T]:
    """``fn(item)`` of each of ``items``, made on ``workers`` threads and handed out in the
    order of ``items``, at most ``depth`` (default ``2 * workers``) made ahead of the caller
    (bounded memory).  An exception of ``fn`` is raised at its item; a caller that stops early
    (closes this generator) waits for the calls still running, and no others start."""
    from concurrent.futures import Future, ThreadPoolExecutor  # noqa: PLC0415

    depth = max(1, int(depth if depth is not None else 2 * workers))
    pending: collections.deque[Future] = collections.deque()
    with ThreadPoolExecutor(max(1, int(workers)), thread_name_prefix="semcodec-map") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= depth:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for f in pending:
                f.cancel()
