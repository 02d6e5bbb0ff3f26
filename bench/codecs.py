"""The codecs under test, each run as child processes whose wall time and peak RSS are measured.

* ``semcodec``: ``semcodec encode IN OUT.smc``, ``semcodec decode OUT.smc OUT.wav --engine E``
  for every engine, ``semcodec export OUT.smc --midi OUT.mid`` for the container's score;
* ``opus``: ffmpeg + libopus, mono, at 6 and 12 kbit/s, decoded back to 44.1 kHz wav;
* ``plain``: :mod:`bench.plain` (basic-pitch -> gzipped MIDI -> FluidR3_GM piano).

Peak RSS is the child's maximum resident set size as reported by ``/usr/bin/time -f %M``
(or, when that is missing, ``getrusage(RUSAGE_CHILDREN)`` in a tiny wrapper process).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
#: Longest a single measured command may run (s).
CMD_TIMEOUT_S = float(os.environ.get("BENCH_CMD_TIMEOUT_S", "600"))
OPUS_KBPS = (6, 12)
DEFAULT_ENGINES = ("fluidsynth", "neural")

_RUSAGE_WRAPPER = (
    "import resource,subprocess,sys\n"
    "r=subprocess.run(sys.argv[2:]).returncode\n"
    "open(sys.argv[1],'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(r)\n"
)


def semcodec_bin() -> str:
    """The semcodec console script next to the running interpreter (else on PATH)."""
    p = Path(sys.executable).parent / "semcodec"
    if p.exists():
        return str(p)
    return shutil.which("semcodec") or str(p)


def measured(cmd: list[str], timeout: float = CMD_TIMEOUT_S, env: dict | None = None) -> dict:
    """Run ``cmd``; return ``{rc, wall_s, rss_mb, stderr}`` (stderr: last 2000 characters)."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss", delete=False) as tf:
        rss_file = tf.name
    if os.path.exists("/usr/bin/time"):
        full = ["/usr/bin/time", "-f", "%M", "-o", rss_file, "--"] + cmd
    else:
        full = [sys.executable, "-c", _RUSAGE_WRAPPER, rss_file] + cmd
    t0 = time.perf_counter()
    try:
        p = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                           cwd=str(REPO), env=env)
        rc, err = p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        rc, err = 124, f"timed out after {timeout:g} s\n" + ((e.stderr or b"").decode("utf-8", "replace"))
    except OSError as e:
        rc, err = 127, str(e)
    wall = time.perf_counter() - t0
    rss = None
    try:
        txt = Path(rss_file).read_text().strip().splitlines()
        # /usr/bin/time prefixes "Command exited with non-zero status N" on failure
        if txt and txt[-1].strip().isdigit():
            rss = int(txt[-1].strip()) / 1024.0
    except OSError:
        pass
    finally:
        try:
            os.unlink(rss_file)
        except OSError:
            pass
    return dict(rc=rc, wall_s=wall, rss_mb=rss, stderr=err[-2000:])


def _fail(stage: str, r: dict) -> dict:
    text = r["stderr"].strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = lines[-1] if lines else f"exit status {r['rc']}"
    status = ("unavailable" if re.search(r"unavailable|not available|weights not found|no module named 'torch'",
                                         text, re.I) else "error")
    return dict(status=status, error=f"{stage}: {last}"[:300], stderr=text[-1500:])


# --- semcodec -------------------------------------------------------------------------------

def semcodec_engines() -> tuple[list[str], str]:
    """(engine names, how they were found) from ``semcodec decode --help``."""
    try:
        p = subprocess.run([semcodec_bin(), "decode", "--help"], capture_output=True, text=True,
                           timeout=120, cwd=str(REPO))
        text = p.stdout + p.stderr
        if p.returncode == 0:
            m = (re.search(r"--engine\s*\[([\w|\-]+)\]", text)
                 or re.search(r"--engine\s*\{([\w,\-]+)\}", text))
            if m:
                # "auto" (the default) is measured too: it plays each track with the engine the
                # encoder found closer, so it is not just one of the others
                names = [x for x in re.split(r"[|,]", m.group(1)) if x]
                return names, "semcodec decode --help"
        return list(DEFAULT_ENGINES), "default (decode --help lists no --engine choices)"
    except Exception as e:  # noqa: BLE001
        return list(DEFAULT_ENGINES), f"default ({type(e).__name__})"


def run_semcodec(src: Path, work: Path, engines: list[str], extra_args: tuple[str, ...] = ()) -> dict:
    """Encode, export and decode with every engine.

    Returns ``{"encode": {...}, "export_midi": path|None, "export_error": str|None,
    "engines": {engine: {...}}}``; each step dict has status "ok" or "error"/"unavailable".
    """
    exe = semcodec_bin()
    smc = work / "semcodec.smc"
    out: dict = {"engines": {}, "export_midi": None, "export_error": None}
    work.mkdir(parents=True, exist_ok=True)
    r = measured([exe, "encode", "-q", *extra_args, str(src), str(smc)])
    if r["rc"] != 0 or not smc.exists():
        out["encode"] = _fail("encode", r) | dict(wall_s=r["wall_s"], rss_mb=r["rss_mb"])
        for e in engines:
            out["engines"][e] = dict(status=out["encode"]["status"], error=out["encode"]["error"])
        return out
    out["encode"] = dict(status="ok", wall_s=r["wall_s"], rss_mb=r["rss_mb"], bytes=smc.stat().st_size,
                         path=str(smc))
    mid = work / "semcodec_score.mid"
    r = measured([exe, "export", "-q", str(smc), "--midi", str(mid)])
    if r["rc"] == 0 and mid.exists():
        out["export_midi"] = str(mid)
    else:
        out["export_error"] = _fail("export", r)["error"]
    out["encode"]["parts"] = part_bytes(smc)
    for e in engines:
        wav = work / f"semcodec_{e}.wav"
        r = measured([exe, "decode", "-q", str(smc), str(wav), "--engine", e])
        if r["rc"] != 0 or not wav.exists():
            out["engines"][e] = _fail(f"decode --engine {e}", r) | dict(wall_s=r["wall_s"])
        else:
            out["engines"][e] = dict(status="ok", wall_s=r["wall_s"], rss_mb=r["rss_mb"], wav=str(wav))
    if NO_RESIDUAL_ENGINE in engines and not out["encode"]["parts"].get("RESD"):
        out["no_residual"] = dict(out["engines"][NO_RESIDUAL_ENGINE])  # nothing to leave out
    elif NO_RESIDUAL_ENGINE in engines:
        # the default decoding without the file's residual (the pure synthesis)
        wav = work / "semcodec_no_residual.wav"
        r = measured([exe, "decode", "-q", "--no-residual", str(smc), str(wav),
                      "--engine", NO_RESIDUAL_ENGINE])
        if r["rc"] != 0 or not wav.exists():
            out["no_residual"] = _fail("decode --no-residual", r) | dict(wall_s=r["wall_s"])
        else:
            out["no_residual"] = dict(status="ok", wall_s=r["wall_s"], rss_mb=r["rss_mb"],
                                      wav=str(wav))
    return out


#: The engine whose decoding is also measured with ``--no-residual``.
NO_RESIDUAL_ENGINE = "auto"


def part_bytes(smc: Path) -> dict[str, int]:
    """Bytes of every record of a ``.smc`` file by type (``HEAD``, ``SCOR``, ``TIMB``, ``SAMP``,
    ``SKEY``, ``TAGS``, ``RESD``, ``END``: framing and CRCs included, so they add up to the
    file size); {} when the file cannot be read."""
    from semcodec.container import chunk_table

    try:
        table = chunk_table(smc.read_bytes())
    except Exception:  # noqa: BLE001 - reported as no parts
        return {}
    out: dict[str, int] = {}
    for rec in table:
        out[rec.type] = out.get(rec.type, 0) + rec.length
    return out


# --- Opus -----------------------------------------------------------------------------------

def run_opus(src: Path, work: Path, kbps: int) -> dict:
    """libopus mono at ``kbps`` via ffmpeg; size of the .opus (Ogg) file; decoded to 44.1 kHz."""
    ff = shutil.which("ffmpeg") or "ffmpeg"
    opus = work / f"opus{kbps}.opus"
    wav = work / f"opus{kbps}.wav"
    r = measured([ff, "-nostdin", "-y", "-hide_banner", "-loglevel", "error", "-i", str(src),
                  "-ac", "1", "-c:a", "libopus", "-b:a", f"{kbps}k", str(opus)])
    if r["rc"] != 0 or not opus.exists():
        return _fail("opus encode", r)
    d = measured([ff, "-nostdin", "-y", "-hide_banner", "-loglevel", "error", "-i", str(opus),
                  "-ar", "44100", "-ac", "1", str(wav)])
    if d["rc"] != 0 or not wav.exists():
        return _fail("opus decode", d)
    return dict(status="ok", bytes=opus.stat().st_size, enc_wall_s=r["wall_s"], enc_rss_mb=r["rss_mb"],
                dec_wall_s=d["wall_s"], dec_rss_mb=d["rss_mb"], wav=str(wav))


# --- plain pipeline -------------------------------------------------------------------------

def plain_encode(src: Path, mid_gz: Path, notes_json: Path, env: dict | None = None) -> dict:
    r = measured([sys.executable, "-m", "bench.plain", "encode", str(src), str(mid_gz),
                  "--notes", str(notes_json)], env=env)
    if r["rc"] != 0 or not mid_gz.exists():
        return _fail("plain encode", r)
    return dict(status="ok", wall_s=r["wall_s"], rss_mb=r["rss_mb"], bytes=mid_gz.stat().st_size)


def plain_decode(mid_gz: Path, wav: Path) -> dict:
    r = measured([sys.executable, "-m", "bench.plain", "decode", str(mid_gz), str(wav)])
    if r["rc"] != 0 or not wav.exists():
        return _fail("plain decode", r)
    return dict(status="ok", wall_s=r["wall_s"], rss_mb=r["rss_mb"], wav=str(wav))
