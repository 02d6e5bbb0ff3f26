"""Work on a second thread while the caller goes on: the encoder's overlaps (imports during
the transcription, the beats during the timbre fit, an engine's rendering during the fit).
numpy, torch and onnxruntime release the GIL in their kernels, so on two cores the two
threads run side by side."""

from __future__ import annotations

import importlib
import threading
from typing import Any, Callable


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
