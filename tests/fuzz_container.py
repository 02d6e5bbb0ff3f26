#!/usr/bin/env python3
"""Mutation fuzzer for the ``.smc`` reader (standard library only).

    python tests/fuzz_container.py --seconds 60 [--seed-dir DIR] [--seed N] [--crash-dir DIR]

Seeds are files written by ``dumps`` from a few generated Containers plus every ``*.smc`` in
``--seed-dir``.  Each input is a seed mutated by bit flips, truncation, splices, length-field
overwrites, random bytes, chunk reordering/duplication, or a *structured* mutation of the JSON
header or of a decompressed chunk payload after which every CRC is recomputed (so that the
deep parsers are reached, not just the CRC check).  ``loads`` must either succeed or raise
``ContainerError``, and must return within 1 s.  When it succeeds, ``dumps`` of the result
must succeed (or raise ``ContainerError``) and its output must load again.

Prints the number of inputs tried; exits 0 when nothing failed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import random
import struct
import sys
import time
import zlib
from pathlib import Path

try:
    import semcodec  # noqa: F401
except ImportError:  # running from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from semcodec.container import (  # noqa: E402
    CHUNK_END,
    SmcFile as Container,
    chunk_table,
    dumps,
    loads,
)
from semcodec.errors import ContainerError  # noqa: E402
from semcodec.events import BendPoint, Note, Sample, Score, TempoMap, Timbre, Track  # noqa: E402

TIME_LIMIT_S = 1.0
INTERESTING_U32 = (0, 1, 2, 3, 4, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF,
                   0x80000000, 0xFFFFFFFE, 0xFFFFFFFF, 64 * 1024, 64 * 1024 + 1,
                   16 * 1024 * 1024, 16 * 1024 * 1024 + 1)
INTERESTING_JSON = (None, True, False, 0, -1, 1, 2, 127, 128, 255, 2**31, 2**63, 2**64,
                    -(2**63), 1e308, -1e308, 1.5, -0.0, 1e-300, "", "x", "\u00e9",
                    "x" * 300, [], {}, [4, 4], [0, 0], [1, 3], {"a": "b"}, [[[[[[[[[]]]]]]]]])
RAW_TOKENS = ("NaN", "Infinity", "-Infinity", "1e999", "9" * 5000, '"\\ud800"', "[" * 50,
              "{" * 50, '"a":1,"a":2', "", "\x00", '"\xff"')


# --- seeds ---------------------------------------------------------------------------------


def generated_containers(rng: random.Random) -> list[Container]:
    def notes(n: int, t0: float, bends: bool, step: float = 0.2) -> tuple[Note, ...]:
        out, t = [], t0
        for i in range(n):
            bp = ()
            if bends and i % 3 == 0:
                bp = tuple(BendPoint(0.012 * k, rng.uniform(-2, 2)) for k in range(rng.randint(1, 4)))
            d = rng.choice([0.05, 0.1, 0.25])
            out.append(Note(t, t + d, rng.randint(30, 100), rng.randint(1, 127), bp))
            t += step
        return tuple(out)

    rich = Container(
        duration=12.0, sample_rate=48000, channels=2, n_samples=12 * 48000,
        loudness_lufs=-16.5,
        score=Score(
            tracks=(
                Track("lead", 73, False, notes(40, 0.0, True)),
                Track("drums", 0, True, notes(30, 0.1, False, 0.3)),
                Track("bass", 33, False, notes(20, 0.05, False, 0.5)),
            ),
            tempo_bpm=96.0, time_signature=(3, 4), key="E minor",
            tempo_map=TempoMap(beats=tuple(round(0.2 + 0.625 * i + 0.003 * (i % 4), 3)
                                           for i in range(18)), downbeat=1,
                               time_signature=(3, 4)),
        ),
        timbres=(Timbre(0, tuple(rng.uniform(-1, 1) for _ in range(16)), -3.0, (0.3, 0.5)),
                 Timbre(2, tuple(rng.uniform(-1, 1) for _ in range(8)), 1.5, ())),
        samples=(Sample(0, 1.0, 0.5, 48000, "opus", bytes(rng.randrange(256) for _ in range(40))),
                 Sample(2, 3.25, 0.25, 24000, "pcm16", b"\x00\x01" * 10)),
        tags={"title": "Fuzz", "artist": "R\u00f6bot"},
        texts={"lyrics": "la la la " * 30, "notes": "n"},
        encoder="semcodec fuzz", extra={"engine": "neural", "opts": {"a": [1, 2.5, None]}},
    )
    solo = Container(
        duration=30.0, sample_rate=44100, n_samples=30 * 44100, loudness_lufs=-20.0,
        score=Score(tracks=(Track("piano", 0, False, notes(150, 0.1, False, 0.19)),)),
    )
    # a long repetitive score so that the compressed SCOR codecs are chosen
    repetitive = Container(
        duration=60.0, sample_rate=22050, n_samples=60 * 22050,
        score=Score(tracks=(Track("arp", 5, False, tuple(
            Note(0.1 * i, 0.1 * i + 0.05, 60 + i % 4, 80) for i in range(500))),)),
        texts={"lyrics": "abc " * 200},
    )
    empty = Container(duration=0.0, sample_rate=8000)
    silent = Container(duration=2.5, sample_rate=16000, n_samples=40000,
                       score=Score(tracks=(Track("none", 1),)))
    return [rich, solo, repetitive, empty, silent]


def load_seeds(seed_dir: str | None, rng: random.Random) -> list[bytes]:
    seeds = [dumps(c) for c in generated_containers(rng)]
    if seed_dir:
        for path in sorted(Path(seed_dir).glob("*.smc")):
            data = path.read_bytes()
            if len(data) <= 4 * 1024 * 1024:
                seeds.append(data)
    return seeds


# --- framing helpers (for structured mutations of valid seeds) ------------------------------


def split(data: bytes) -> tuple[int, int, bytes, list[tuple[bytes, bytes]]] | None:
    """(major, minor, header JSON, [(type, payload)...] without END) of a valid file."""
    try:
        table = chunk_table(data)
    except ContainerError:
        return None
    hlen = struct.unpack_from("<I", data, 6)[0]
    chunks = []
    for info in table[1:]:
        ctype = data[info.offset : info.offset + 4]
        if ctype == CHUNK_END:
            continue
        chunks.append((ctype, data[info.offset + 8 : info.offset + info.length - 4]))
    return data[4], data[5], data[10 : 10 + hlen], chunks


def build(major: int, minor: int, header: bytes, chunks: list[tuple[bytes, bytes]],
          end: bool = True) -> bytes:
    pre = data = b"\x89SMC" + bytes([major & 0xFF, minor & 0xFF]) + struct.pack("<I", len(header)) + header
    data = pre + struct.pack("<I", zlib.crc32(pre))
    for ctype, payload in chunks + ([(CHUNK_END, b"")] if end else []):
        rec = ctype + struct.pack("<I", len(payload)) + payload
        data += rec + struct.pack("<I", zlib.crc32(rec))
    return data


def raw_payload(payload: bytes) -> tuple[int, bytes] | None:
    if not payload:
        return None
    codec, body = payload[0], payload[1:]
    try:
        if codec == 0:
            return 0, body
        if codec == 1:
            return 1, zlib.decompress(body, -15)
        if codec == 2:
            return 2, lzma.decompress(body, format=lzma.FORMAT_RAW,
                                      filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}])
    except (zlib.error, lzma.LZMAError):
        return None
    return None


def recompress(rng: random.Random, raw: bytes) -> bytes:
    choice = rng.randrange(4)
    if choice == 1:
        co = zlib.compressobj(rng.randint(0, 9), zlib.DEFLATED, -15)
        return b"\x01" + co.compress(raw) + co.flush()
    if choice == 2:
        return b"\x02" + lzma.compress(raw, format=lzma.FORMAT_RAW,
                                       filters=[{"id": lzma.FILTER_LZMA2, "dict_size": 1 << 20}])
    if choice == 3:  # broken compressed stream
        co = zlib.compressobj(9, zlib.DEFLATED, -15)
        body = co.compress(raw) + co.flush()
        return b"\x01" + (body[: rng.randrange(len(body) + 1)] if rng.random() < 0.5
                          else body + bytes([rng.randrange(256)]))
    return b"\x00" + raw


def uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        out.append(b | (0x80 if value else 0))
        if not value:
            return bytes(out)


# --- mutations ------------------------------------------------------------------------------


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    if not buf:
        return bytes(rng.randrange(256) for _ in range(rng.randint(0, 32)))
    op = rng.randrange(6)
    if op == 0:
        for _ in range(rng.randint(1, 8)):
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
    elif op == 1:
        i = rng.randrange(len(buf))
        buf[i : i + rng.randint(1, 16)] = bytes(rng.randrange(256) for _ in range(rng.randint(0, 16)))
    elif op == 2:
        del buf[rng.randrange(len(buf)) :]
    elif op == 3:
        i = rng.randrange(len(buf) + 1)
        buf[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    elif op == 4:
        i = rng.randrange(len(buf))
        del buf[i : i + rng.randint(1, 64)]
    else:
        i = rng.randrange(len(buf))
        buf[i] = rng.choice((0, 0x7F, 0x80, 0xFF))
    return bytes(buf)


def mutate_json(rng: random.Random, header: bytes) -> bytes:
    if rng.random() < 0.3:
        return mutate_bytes(rng, header)
    try:
        obj = json.loads(header)
    except ValueError:
        return mutate_bytes(rng, header)
    placeholder = "\u0001PLACEHOLDER\u0001"
    raw_token = None

    def nodes(o, path=()):
        yield path
        if isinstance(o, dict):
            for k, v in o.items():
                yield from nodes(v, path + (k,))
        elif isinstance(o, list):
            for i, v in enumerate(o):
                yield from nodes(v, path + (i,))

    paths = list(nodes(obj))
    path = rng.choice(paths[1:] or paths)
    op = rng.randrange(4)
    if not path:
        obj = rng.choice(INTERESTING_JSON)
    else:
        parent = obj
        for p in path[:-1]:
            parent = parent[p]
        key = path[-1]
        if op == 0 and isinstance(parent, dict):
            del parent[key]
        elif op == 1:
            raw_token = rng.choice(RAW_TOKENS)
            parent[key] = placeholder
        elif op == 2 and isinstance(parent, dict):
            parent["x" + str(rng.randrange(100))] = rng.choice(INTERESTING_JSON)
        else:
            parent[key] = rng.choice(INTERESTING_JSON)
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=rng.random() < 0.5)
    if raw_token is not None:
        text = text.replace(json.dumps(placeholder), raw_token)
    return text.encode("utf-8", "surrogatepass")


def mutate_payload(rng: random.Random, ctype: bytes, payload: bytes) -> bytes:
    if ctype in (b"SCOR", b"TAGS"):
        decoded = raw_payload(payload)
        if decoded is not None and rng.random() < 0.8:
            _, raw = decoded
            if ctype == b"TAGS" and rng.random() < 0.5:
                raw = mutate_json(rng, raw)
            elif rng.random() < 0.3 and raw:
                i = rng.randrange(len(raw))
                raw = raw[:i] + uvarint(rng.choice((0, 1, 127, 128, 2**32, 2**63, 2**64 - 1,
                                                    2**64, 2**70))) + raw[i + rng.randint(0, 2):]
            else:
                raw = mutate_bytes(rng, raw)
            return recompress(rng, raw)
    return mutate_bytes(rng, payload)


def mutate(rng: random.Random, seeds: list[bytes]) -> bytes:
    data = rng.choice(seeds)
    parts = split(data)
    op = rng.randrange(10)
    if op == 0 or parts is None:
        return mutate_bytes(rng, data)
    if op == 1:  # truncation
        return data[: rng.randrange(len(data) + 1)]
    if op == 2:  # splice two files
        other = rng.choice(seeds)
        return data[: rng.randrange(len(data) + 1)] + other[rng.randrange(len(other) + 1) :]
    if op == 3:  # overwrite a length field (header length or a chunk length), maybe fix CRCs
        table = chunk_table(data)
        offsets = [6] + [info.offset + 4 for info in table[1:]]
        off = rng.choice(offsets)
        value = rng.choice(INTERESTING_U32 + (len(data) - off, len(data) - off - 8,
                                              rng.randrange(2**32)))
        buf = bytearray(data)
        struct.pack_into("<I", buf, off, value)
        return bytes(buf)
    major, minor, header, chunks = parts
    if op == 4:  # structured header mutation, CRC fixed
        return build(major, minor, mutate_json(rng, header), chunks)
    if op == 5 and chunks:  # structured payload mutation, CRC fixed
        i = rng.randrange(len(chunks))
        ctype, payload = chunks[i]
        chunks[i] = (ctype, mutate_payload(rng, ctype, payload))
        return build(major, minor, header, chunks)
    if op == 6:  # chunk list surgery
        sub = rng.randrange(5)
        if sub == 0 and chunks:
            chunks.insert(rng.randrange(len(chunks) + 1), rng.choice(chunks))
        elif sub == 1 and chunks:
            del chunks[rng.randrange(len(chunks))]
        elif sub == 2:
            chunks.insert(rng.randrange(len(chunks) + 1),
                          (bytes(rng.randrange(256) for _ in range(4)), mutate_bytes(rng, b"xyz")))
        elif sub == 3:
            rng.shuffle(chunks)
        else:
            return build(major, minor, header, chunks, end=False)
        return build(major, minor, header, chunks)
    if op == 7:  # version bytes
        return build(rng.choice((0, 1, 2, 255)), rng.choice((0, 1, 255)), header, chunks)
    if op == 8:  # random bytes after a valid prefix
        cut = rng.randrange(len(data) + 1)
        return data[:cut] + bytes(rng.randrange(256) for _ in range(rng.randint(0, 200)))
    # several mutations stacked
    out = data
    for _ in range(rng.randint(2, 4)):
        out = mutate_bytes(rng, out)
    return out


# --- driver ---------------------------------------------------------------------------------


def check_one(data: bytes) -> str | None:
    """None if the reader behaved, else a description of the failure."""
    start = time.perf_counter()
    try:
        c = loads(data)
    except ContainerError:
        c = None
    except BaseException as exc:  # noqa: BLE001 - that is the point of a fuzzer
        if isinstance(exc, KeyboardInterrupt):
            raise
        return f"loads raised {type(exc).__name__}: {exc}"
    elapsed = time.perf_counter() - start
    if elapsed > TIME_LIMIT_S:
        return f"loads took {elapsed:.2f} s"
    if c is None:
        return None
    try:
        again = dumps(c)
    except ContainerError:
        return None
    except Exception as exc:  # noqa: BLE001
        return f"dumps of an accepted file raised {type(exc).__name__}: {exc}"
    try:
        loads(again)
    except Exception as exc:  # noqa: BLE001
        return f"re-dumped file does not load: {type(exc).__name__}: {exc}"
    return None


def run(seconds: float, seed_dir: str | None = None, seed: int | None = None,
        crash_dir: str | None = None, max_inputs: int | None = None) -> tuple[int, list[str]]:
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    seeds = load_seeds(seed_dir, rng)
    failures: list[str] = []
    tried = 0
    deadline = time.monotonic() + seconds
    # the unmutated seeds first
    queue = list(seeds)
    while time.monotonic() < deadline and (max_inputs is None or tried < max_inputs):
        data = queue.pop() if queue else mutate(rng, seeds)
        tried += 1
        problem = check_one(data)
        if problem is None:
            continue
        digest = hashlib.sha1(data).hexdigest()[:12]
        failures.append(f"{problem} [input {digest}, {len(data)} bytes]")
        if crash_dir:
            Path(crash_dir).mkdir(parents=True, exist_ok=True)
            Path(crash_dir, f"crash-{digest}.smc").write_bytes(data)
        elif len(data) <= 512:
            failures.append(f"  input hex: {data.hex()}")
        if len(failures) > 40:
            break
    return tried, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to run (s)")
    parser.add_argument("--seed-dir", default=None, help="folder of extra *.smc seed files")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--crash-dir", default=None, help="write failing inputs here")
    parser.add_argument("--max-inputs", type=int, default=None, help="stop after this many")
    args = parser.parse_args(argv)
    seed = random.randrange(2**32) if args.seed is None else args.seed
    tried, failures = run(args.seconds, args.seed_dir, seed, args.crash_dir, args.max_inputs)
    print(f"fuzz_container: {tried} inputs tried (seed {seed}), {len(failures)} failures")
    for line in failures:
        print("  " + line)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
