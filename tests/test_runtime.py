"""semcodec.runtime: the C heap's handling around an encode."""

from __future__ import annotations

import numpy as np

from semcodec import runtime
from semcodec.synth import dsp


def test_keep_freed_holds_the_trims_until_the_end(monkeypatch):
    trims: list[int] = []
    monkeypatch.setattr(runtime, "_TRIM", lambda pad: trims.append(pad))
    runtime.release_free_memory()
    assert trims == [0]
    with runtime.keep_freed():
        with runtime.keep_freed():  # nested (two encodes on two threads)
            runtime.release_free_memory()
            dsp.release_free_memory()
        dsp.release_free_memory()
        assert trims == [0]  # nothing given back while a block holds
        # allocations work as before meanwhile
        a = np.ones(1 << 22, np.float32)
        assert float(a.sum()) == float(1 << 22)
    assert trims == [0, 0]  # given back once, when the outer block ends
    runtime.release_free_memory()
    assert trims == [0, 0, 0]
