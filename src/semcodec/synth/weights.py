"""The neural engine's committed weights: finding, verifying and reading them (numpy only).

The weights live in ``semcodec/weights/`` as ``neural-<first 12 hex of their sha256>.safetensors``
(the file named by ``neural-config.json``).  :func:`load_arrays` reads them with the standard
library (a safetensors file is an 8-byte little-endian header length, a JSON header and the raw
little-endian arrays) after checking the hash, so that decoding needs neither torch nor the
``safetensors`` package.

``$SEMCODEC_NEURAL_WEIGHTS`` (a weights directory with its ``neural-config.json``, or one
``neural-<sha12>.safetensors`` file) replaces the package's neural weights wherever no path is
given: for comparing a newly trained model with the committed one (encode and decode with the
same variable set, since the encoder fits its embeddings against the model).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import struct
from pathlib import Path

import numpy as np

from semcodec.constants import PACKAGE_DIR
from semcodec.errors import SynthError

WEIGHTS_DIR = PACKAGE_DIR / "weights"
#: Environment variable naming other neural weights (a directory or a file), see the module doc.
NEURAL_WEIGHTS_ENV = "SEMCODEC_NEURAL_WEIGHTS"
#: The neural model (first 12 hex of its weights' sha256) of the files whose header names none
#: (format < 1.6): their timbre embeddings were fitted to it, so they decode with it.
LEGACY_NEURAL_MODEL = "8a54513562da"
_MODEL_ID = re.compile(r"^[0-9a-f]{12}$")
#: Largest safetensors JSON header read (bytes).
MAX_HEADER_BYTES = 1 << 20
_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4"}
_CACHE: dict[tuple[str, int, float], dict[str, np.ndarray]] = {}


def weights_pattern(kind: str) -> re.Pattern[str]:
    """File names of committed ``kind`` weights: ``<kind>-<12 hex of sha256>.safetensors``."""
    return re.compile(rf"^{re.escape(kind)}-([0-9a-f]{{12}})\.safetensors$")


def find_weights(directory: Path | None = None, kind: str = "neural") -> Path | None:
    """The ``kind`` weights file named by ``<kind>-config.json`` in ``directory`` (default: the
    package's weights, or for ``kind="neural"`` what ``$SEMCODEC_NEURAL_WEIGHTS`` names), else the
    last ``<kind>-*.safetensors`` there by name; None when absent."""
    d = Path(directory) if directory is not None else WEIGHTS_DIR
    env = os.environ.get(NEURAL_WEIGHTS_ENV, "").strip() if kind == "neural" else ""
    if directory is None and env:
        if Path(env).is_file():
            return Path(env)
        if not Path(env).is_dir():
            raise SynthError(f"{env}: neural weights named by ${NEURAL_WEIGHTS_ENV} not found")
        d = Path(env)
    cfg = d / f"{kind}-config.json"
    if cfg.is_file():
        try:
            name = json.loads(cfg.read_text()).get("weights_file")
        except (OSError, ValueError):
            name = None
        if name and (d / name).is_file():
            return d / name
    pattern = weights_pattern(kind)
    files = sorted(p for p in d.glob(f"{kind}-*.safetensors") if pattern.match(p.name))
    return files[-1] if files else None


def model_id(path: Path | None) -> str:
    """The model id of a weights file: the 12 hex of its name (``""`` for None / another name)."""
    m = weights_pattern("neural").match(Path(path).name) if path is not None else None
    return m.group(1) if m else ""


def current_model() -> str:
    """The id of the neural model an encode fits its timbres to (``""`` when none is there)."""
    return model_id(find_weights())


def weights_for_model(model: str | None) -> Path | None:
    """The weights file of neural model ``model`` (12 hex; ``None``/``""``: the legacy model of
    files that name none), looked for beside the weights in use
    (``$SEMCODEC_NEURAL_WEIGHTS``) and in the package's weights; None when this installation
    does not have it (the caller then uses the current model and says so)."""
    model = model or LEGACY_NEURAL_MODEL
    if not _MODEL_ID.match(model):
        return None
    current = find_weights()
    dirs = ([current.parent] if current is not None else []) + [WEIGHTS_DIR]
    for d in dirs:
        f = d / f"neural-{model}.safetensors"
        if f.is_file():
            return f
    return None


def _check_digest(path: Path, data: bytes, kind: str = "neural") -> None:
    m = weights_pattern(kind).match(path.name)
    if not m:
        raise SynthError(f"{path}: weights file name must be {kind}-<12 hex of sha256>.safetensors")
    digest = hashlib.sha256(data).hexdigest()[:12]
    if digest != m.group(1):
        raise SynthError(f"{path}: {kind} weights are corrupt (sha256 {digest}..., "
                         f"name says {m.group(1)})")


def verify_weights(path: Path, kind: str = "neural") -> None:
    """Raise :class:`SynthError` unless the sha256 prefix in the file name matches its content."""
    path = Path(path)
    if not weights_pattern(kind).match(path.name):
        _check_digest(path, b"", kind)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SynthError(f"{path}: cannot read {kind} weights ({exc})") from exc
    _check_digest(path, data, kind)


def parse_safetensors(data: bytes, name: str = "weights") -> dict[str, np.ndarray]:
    """The arrays of a safetensors file's bytes (float32 copies; integer arrays as they are)."""
    if len(data) < 8:
        raise SynthError(f"{name}: not a safetensors file (too short)")
    (n,) = struct.unpack("<Q", data[:8])
    if n > MAX_HEADER_BYTES or 8 + n > len(data):
        raise SynthError(f"{name}: safetensors header length {n} out of range")
    try:
        header = json.loads(data[8:8 + n])
    except ValueError as exc:
        raise SynthError(f"{name}: bad safetensors header ({exc})") from None
    base = 8 + n
    out: dict[str, np.ndarray] = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        try:
            dtype = np.dtype(_DTYPES[info["dtype"]])
            shape = tuple(int(s) for s in info["shape"])
            a, b = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise SynthError(f"{name}: tensor {key!r}: unsupported or malformed entry") from None
        count = math.prod(shape)
        if not 0 <= a <= b or base + b > len(data) or b - a != count * dtype.itemsize:
            raise SynthError(f"{name}: tensor {key!r}: data offsets out of range")
        arr = np.frombuffer(data, dtype, count=count, offset=base + a).reshape(shape)
        out[key] = arr.astype(np.float32) if dtype.kind == "f" else arr.copy()
    return out


def load_arrays(path: Path | str | None = None) -> dict[str, np.ndarray]:
    """The verified weights as ``{name: float32 array}`` (cached per file, size and mtime)."""
    path = Path(path) if path is not None else find_weights()
    if path is None or not path.is_file():
        raise SynthError(f"neural weights not found in {path or WEIGHTS_DIR} (run: make train)")
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime)
    if key not in _CACHE:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise SynthError(f"{path}: cannot read neural weights ({exc})") from exc
        _check_digest(path, data)
        arrays = parse_safetensors(data, str(path))
        _CACHE.clear()
        _CACHE[key] = arrays
    return _CACHE[key]
