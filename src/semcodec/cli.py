"""The ``semcodec`` command line; the only module that knows click.

Exit status: 0 success, 1 usage error, 2 processing error (bad input, corrupt file, ...).
Errors are one line on stderr; ``-v`` adds the traceback.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import click

from semcodec import __version__
from semcodec.container.spec import FORMAT_MAJOR, FORMAT_MINOR_LATEST
from semcodec.constants import (
    DEFAULT_MAX_DECODE_S,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    TEMPO_FACTOR_MAX,
    TEMPO_FACTOR_MIN,
    TRANSPOSE_MAX_SEMITONES,
)
from semcodec.container import bitrate_kbps
from semcodec.errors import (
    OutputError,
    OutputTooLargeError,
    OutputTooLongError,
    SemcodecError,
    UsageError,
)
from semcodec.runtime import configure_logging

log = logging.getLogger("semcodec")

_T_IMPORT = time.perf_counter()


def _since_process_start() -> float:
    """Wall-clock seconds since this process started (interpreter start-up and imports
    included), from /proc; elsewhere since this module was imported."""
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime (ticks)
        return max(0.0, uptime - started, time.perf_counter() - _T_IMPORT)
    except (OSError, ValueError, IndexError, AttributeError):
        return time.perf_counter() - _T_IMPORT


def _timing(duration: float) -> str:
    """``12.3 s, 4.1x real time`` for ``duration`` seconds of audio, counted from process start."""
    wall = _since_process_start()
    return f"{wall:.1f} s wall clock, {duration / max(wall, 1e-9):.1f}x real time"

EXIT_OK, EXIT_USAGE, EXIT_ERROR = 0, 1, 2


# --- plumbing ----------------------------------------------------------------------------

class _State:
    verbose = 0
    quiet = False


STATE = _State()


def _setup_logging() -> None:
    level = logging.WARNING
    if STATE.quiet:
        level = logging.ERROR
    elif STATE.verbose >= 2:
        level = logging.DEBUG
    elif STATE.verbose == 1:
        level = logging.INFO
    configure_logging(level)


def _verbosity(f):
    """-v/-q on the group and on every command, so both positions work."""

    def set_verbose(ctx, param, value):  # noqa: ARG001
        if value:
            STATE.verbose = max(STATE.verbose, value)
            _setup_logging()
        return value

    def set_quiet(ctx, param, value):  # noqa: ARG001
        if value:
            STATE.quiet = True
            _setup_logging()
        return value

    f = click.option("-v", "--verbose", count=True, expose_value=False, callback=set_verbose,
                     is_eager=True, help="More messages (-vv: debug); tracebacks on errors.")(f)
    f = click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=set_quiet,
                     is_eager=True, help="Only errors on stderr, no progress bars.")(f)
    return f


class _Progress:
    """One tqdm bar on stderr for a job of several stages; silent when stderr is not a terminal.

    It is called as ``progress(stage, fraction)`` (see ``semcodec.api.Progress``).  The bar
    shows the job's overall fraction (stages weighted by their typical share of the time,
    ``stages``: ``((name, weight), ...)``), its elapsed time and ETA, and the current stage with
    its own percentage; a background thread redraws it twice a second, so the clock moves
    during a long step that reports nothing.
    """

    def __init__(self, desc: str, stages: tuple[tuple[str, float], ...] = ()) -> None:
        self.enabled = not STATE.quiet and sys.stderr.isatty()
        self.desc = desc
        self.stages = stages
        self.bar: Any = None
        self._stop: Any = None
        self._thread: Any = None

    def __call__(self, stage: str, frac: float) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            self._start()
        from semcodec.api import progress_fraction

        frac = min(max(float(frac), 0.0), 1.0)
        overall = progress_fraction(stage, frac, self.stages) if self.stages else frac
        with self.bar.get_lock():
            if overall is not None and int(overall * 1000) > self.bar.n:
                self.bar.update(int(overall * 1000) - self.bar.n)  # feeds the rate / ETA
            self.bar.set_description_str(f"{self.desc}: {stage} {frac * 100:3.0f}%",
                                         refresh=False)
            self.bar.refresh()

    def _start(self) -> None:
        import threading

        from tqdm import tqdm

        self.bar = tqdm(total=1000, desc=self.desc, file=sys.stderr, leave=False,
                        dynamic_ncols=True, smoothing=0.05,
                        bar_format="{desc} |{bar}| {percentage:3.0f}% {elapsed}<{remaining}")
        self._stop = threading.Event()

        def tick() -> None:
            while not self._stop.wait(0.5):
                with self.bar.get_lock():
                    self.bar.refresh()

        self._thread = threading.Thread(target=tick, name="semcodec-progress", daemon=True)
        self._thread.start()

    def close(self) -> None:
        if self.bar is not None:
            self._stop.set()
            self._thread.join()
            self.bar.close()
            self.bar = None


def _check_output(path: str, force: bool, inputs: tuple[str, ...] = ()) -> None:
    """Refuse to overwrite an existing file without --force, or to overwrite an input."""
    if path == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write binary data to a terminal (redirect stdout)")
        return
    p = Path(path)
    for src in inputs:
        if src != "-" and Path(src).exists() and p.exists() and p.resolve() == Path(src).resolve():
            raise OutputError(f"{path}: output would overwrite the input")
    if p.is_dir():
        raise OutputError(f"{path}: is a directory")
    if p.exists() and not force:
        raise OutputError(f"{path}: already exists (use -f to overwrite)")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{path}: directory {parent} does not exist")
    _probe_writable(path, parent)


def _probe_writable(path: str, parent: Path) -> None:
    """Fail now, not after a long encode, when ``parent`` takes no new file (read-only folder
    or file system, no permission, no space for an inode): create and remove a temporary file
    there, named like those of the atomic writes."""
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{Path(path).name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write into {parent} ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        os.unlink(tmp)
    except OSError:
        pass


def _check_smc_name(path: str) -> None:
    """Refuse a ``.smc`` output named like an audio file (``encode x.flac o.wav``)."""
    from semcodec.audio import AUDIO_EXTENSIONS

    ext = Path(path).suffix.lower()
    if path != "-" and ext in AUDIO_EXTENSIONS:
        raise UsageError(f"{path}: encode writes a .smc container, not {ext} audio "
                         f"(name the output .smc; 'semcodec decode' makes audio)")


def _write_bytes(path: str, data: bytes) -> None:
    if path == "-":
        with _stdout_errors():
            _write_all(sys.stdout.buffer, data)
        return
    from semcodec.io import atomic_write_bytes

    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write ({exc.strerror or exc})") from None


@contextlib.contextmanager
def _stdout_errors() -> Iterator[None]:
    """An OS error writing to stdout (disk full behind ``>``...) as one line naming <stdout>;
    a reader that went away (BrokenPipeError) passes through."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise OutputError(f"<stdout>: cannot write ({exc.strerror or exc})") from None


def _write_all(out, data: bytes) -> None:
    """Write ``data`` to the binary file ``out`` and flush: a full disk gives short writes,
    then an error, never a silent truncation."""
    view = memoryview(data)
    while view:
        n = out.write(view)
        if not n:
            raise OSError(28, "short write")
        view = view[n:]
    out.flush()


def _read_smc(path: str):
    from semcodec import api
    from semcodec.errors import InputError

    if path == "-":
        from semcodec import constants
        from semcodec.audio import read_bounded

        data = read_bounded(sys.stdin.buffer, constants.MAX_STDIN_SMC_BYTES, "<stdin>", ".smc data")
        if not data:
            raise InputError("<stdin>: empty input")
        return api.Container.from_bytes(data), data
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if p.is_dir():
        raise InputError(f"{path}: is a directory")
    from semcodec.audio import describe_special

    special = describe_special(p.stat().st_mode)
    if special:  # a FIFO would block here, then be read without a bound
        raise InputError(f"{path}: {special}")
    data = p.read_bytes()
    try:
        return api.Container.from_bytes(data), data
    except SemcodecError as exc:
        raise type(exc)(f"{path}: {exc}") from None


#: Characters never written raw to the terminal: C0/C1 controls (escape sequences, CR, BEL),
#: DEL, line/paragraph separators and the bidirectional-text controls.
_CONTROL_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029"
                            "\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every control character written as a Python escape (``\\x1b``,
    ``\\r``, ``\\u202e``): what a file or a path says reaches the terminal as text, never
    as a command to it."""
    return _CONTROL_CHARS.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def _say(msg: str) -> None:
    if not STATE.quiet:
        click.echo(msg, err=True)


def _encode_options(f):
    """The encoder options shared by ``encode`` and ``batch encode``."""
    decorators = [
        click.option("--onset-threshold", type=click.FloatRange(0.01, 0.99), default=None,
                     help="Note onset threshold of the transcriber (0..1; lower finds more notes)."),
        click.option("--frame-threshold", type=click.FloatRange(0.01, 0.99), default=None,
                     help="Note continuation threshold of the transcriber (0..1)."),
        click.option("--min-note-ms", type=click.FloatRange(1, 2000), default=None,
                     help="Shortest note kept (milliseconds)."),
        click.option("--no-bends", is_flag=True, help="Do not store pitch bends."),
        click.option("--no-timbre", is_flag=True, help="Skip timbre fitting (score only)."),
        click.option("--no-samples", is_flag=True, help="Do not store short audio samples."),
        click.option("--no-residual", is_flag=True,
                     help="Do not code the residual (the band energy the score's synthesis "
                     "misses or has too much of)."),
        click.option("--kbps", "--max-kbps", "max_kbps", type=click.FloatRange(0.0, 64.0),
                     default=1.0, show_default=True, metavar="TARGET",
                     help="Bitrate target (kbit/s): the file is filled up to it, never beyond, "
                          "with the parts that bring the decode closest per byte (excerpts, "
                          "one-shots); header, score and timbres are always kept. "
                          "--max-kbps is the old name."),
        click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE",
                     help="Store a tag (repeatable)."),
        click.option("--tracks", "n_tracks", default="auto", show_default=True,
                     metavar="auto|N",
                     help="Instrument tracks to split a mix into (1 = one track)."),
        click.option("--drums", type=click.Choice(["auto", "off"]), default="auto",
                     show_default=True, help="Detect drums and store them as a drum track."),
        click.option("--lyrics", "lyrics_file", type=click.Path(dir_okay=False), default=None,
                     help="Store the lyrics in this UTF-8 text file (exported to MusicXML)."),
    ]
    for deco in reversed(decorators):
        f = deco(f)
    return f


def _synth_options(f):
    """The synthesis options shared by ``decode`` and ``batch decode``."""
    decorators = [
        click.option("--engine", type=click.Choice(["auto", "neural", "fluidsynth"]),
                     default="auto", show_default=True,
                     help="Synthesizer: neural (when weights and torch are there) "
                     "or fluidsynth (General MIDI soundfont); auto = neural, except the "
                     "tracks the encoder found closer with fluidsynth."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                     show_default=True, help="Where the neural engine runs."),
        click.option("--soundfont", type=click.Path(dir_okay=False), default=None,
                     help="Soundfont for the fluidsynth engine (default: FluidR3_GM)."),
        click.option("--sample-rate", type=click.IntRange(MIN_SAMPLE_RATE, MAX_SAMPLE_RATE),
                     default=None,
                     help="Output sample rate in Hz (default: the original's)."),
        click.option("--transpose",
                     type=click.IntRange(-TRANSPOSE_MAX_SEMITONES, TRANSPOSE_MAX_SEMITONES),
                     default=0,
                     help="Transpose pitched tracks by SEMITONES (the residual is not "
                     "transposed)."),
        click.option("--tempo", type=click.FloatRange(TEMPO_FACTOR_MIN, TEMPO_FACTOR_MAX),
                     default=1.0,
                     help="Tempo factor (2 = twice as fast); the residual follows it."),
        click.option("--channels", type=click.Choice(["auto", "1", "2"]), default="auto",
                     show_default=True,
                     help="Output channels: auto = stereo when the original was (each track "
                     "at its measured position), 1 = mono, 2 = stereo."),
        click.option("--no-residual", is_flag=True,
                     help="Play the pure synthesis, without the file's residual (noise where "
                     "the synthesis lacks energy, attenuation where it has too much). The "
                     "residual follows --tempo and stays as it is with --transpose and "
                     "--program."),
        click.option("--max-duration", type=click.FloatRange(min=0), default=DEFAULT_MAX_DECODE_S,
                     show_default=True, metavar="SECONDS",
                     help="Refuse to render more than SECONDS of audio (a tiny file may "
                     "declare 24 h); 0 = no limit."),
    ]
    for deco in reversed(decorators):
        f = deco(f)
    return f


#: Largest lyrics file accepted (bytes).
MAX_LYRICS_BYTES = 256 * 1024


def _read_lyrics(path: str | None) -> str | None:
    from semcodec.errors import InputError

    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such file")
    data = p.read_bytes()
    if len(data) > MAX_LYRICS_BYTES:
        raise InputError(f"{path}: lyrics of {len(data)} bytes (at most {MAX_LYRICS_BYTES})")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: lyrics are not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    text = text.replace("\r\n", "\n").strip()
    if not text or any(ord(ch) < 32 and ch not in "\n\t" for ch in text):
        raise InputError(f"{path}: lyrics must be non-empty plain text")
    return text


def _encode_options_from(onset_threshold, frame_threshold, min_note_ms, no_bends: bool,
                         no_timbre: bool, no_samples: bool, max_kbps: float, tags,
                         n_tracks: str = "auto", drums: str = "auto",
                         lyrics_file: str | None = None, no_residual: bool = False):
    """``api.EncodeOptions`` from the values of :func:`_encode_options`."""
    from dataclasses import replace

    from semcodec import api

    tag_map = {}
    for item in tags:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag {item!r}: expected KEY=VALUE")
        tag_map[key] = value
    changes = {k: v for k, v in (("onset_threshold", onset_threshold),
                                 ("frame_threshold", frame_threshold),
                                 ("min_note_s", None if min_note_ms is None else min_note_ms / 1000.0))
               if v is not None}
    if no_bends:
        changes["keep_bends"] = False
    tracks = None
    if n_tracks != "auto":
        try:
            tracks = int(n_tracks)
        except ValueError:
            raise UsageError(f"--tracks {n_tracks!r}: expected auto or a number") from None
    return api.EncodeOptions(transcribe=replace(api.TranscribeOptions(), **changes),
                             fit_timbre=not no_timbre, samples=not no_samples,
                             kbps=max_kbps, tags=tag_map, tracks=tracks, drums=drums,
                             lyrics=_read_lyrics(lyrics_file), residual=not no_residual)


# --- commands ----------------------------------------------------------------------------

class _Group(click.Group):
    """The semcodec group: its ``main`` maps errors to one line and exit status 0/1/2/130."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: ARG002
        _setup_logging()
        try:
            super().main(args=args, prog_name=prog_name or "semcodec", complete_var=complete_var,
                         standalone_mode=False, **extra)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            cmd = exc.ctx.command_path if exc.ctx is not None else "semcodec"
            click.echo(f"semcodec: usage error: {exc.format_message()} (see '{cmd} --help')",
                       err=True)
            sys.exit(EXIT_USAGE)
        except (click.Abort, KeyboardInterrupt):
            click.echo("semcodec: interrupted", err=True)
            sys.exit(130)
        except UsageError as exc:
            _fail(exc, EXIT_USAGE)
        except SemcodecError as exc:
            _fail(exc, EXIT_ERROR)
        except BrokenPipeError:
            sys.exit(EXIT_ERROR)
        except MemoryError:
            _fail(MemoryError("not enough memory for this job"), EXIT_ERROR)
        except OSError as exc:
            _fail(exc, EXIT_ERROR, prefix=f"{exc.filename}: " if exc.filename else "")
        except Exception as exc:  # noqa: BLE001 - a bug: one line, traceback with -v
            _fail(exc, EXIT_ERROR, prefix="internal error: ", hint=True)
        finally:
            STATE.verbose, STATE.quiet = 0, False
        sys.exit(EXIT_OK)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="semcodec",
                      message=f"%(prog)s %(version)s (.smc format {FORMAT_MAJOR}.{FORMAT_MINOR_LATEST})")
@_verbosity
def cli() -> None:
    """semcodec — a semantic music codec.

    \b
      semcodec encode song.wav song.smc   transcribe + measure timbre + pack (~1 kbps)
      semcodec decode song.smc out.wav    synthesize the music back
    """


@cli.command()
@click.argument("paths", nargs=-1, type=str, metavar="INPUT [OUTPUT]")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--stem", "stems", multiple=True, metavar="NAME=FILE",
              help="Encode this stem as its own track NAME (repeatable; then the only "
              "argument is OUTPUT). Names with drum/perc become drum tracks, with "
              "vocal/voice sung lines.")
@_encode_options
@_verbosity
def encode(paths: tuple[str, ...], force: bool, stems: tuple[str, ...], **options) -> None:
    """Encode an audio file (or - for stdin) into a .smc container.

    OUTPUT defaults to INPUT with the extension .smc; - writes to stdout.
    With --stem NAME=FILE (repeated), the stems are encoded as named tracks into OUTPUT.
    """
    from semcodec import api
    from semcodec.audio import read_audio

    opts = _encode_options_from(**options)
    stem_list = []
    for item in stems:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise UsageError(f"--stem {item!r}: expected NAME=FILE")
        stem_list.append((name, path))
    output: str | None
    if stem_list:
        if len(paths) != 1:
            raise UsageError("with --stem, give exactly one argument: the OUTPUT .smc")
        input, output = "+".join(p for _, p in stem_list), paths[0]
        _check_output(output, force, tuple(p for _, p in stem_list))
    else:
        if not 1 <= len(paths) <= 2:
            raise UsageError("expected INPUT [OUTPUT]")
        input, output = paths[0], (paths[1] if len(paths) == 2 else None)
        if output is None:
            if input == "-":
                raise UsageError("encode from stdin needs an OUTPUT (use - for stdout)")
            output = str(Path(input).with_suffix(".smc"))
        _check_output(output, force, (input,))
    _check_smc_name(output)
    from semcodec.api import ENCODE_STAGES

    skip = ({"fit"} if opts.fit_timbre is False else set()) | (
        {"samples"} if opts.samples is False else set())
    progress = _Progress("encode", tuple(st for st in ENCODE_STAGES if st[0] not in skip))
    try:
        if stem_list:
            c = api.encode_stems([(name, read_audio(path)) for name, path in stem_list],
                                 options=opts, progress=progress)
        else:
            c = api.encode(read_audio(input), options=opts, progress=progress)
    finally:
        progress.close()
    data = c.to_bytes()
    _write_bytes(output, data)
    kbps = bitrate_kbps(len(data), c.duration)
    _say(f"{input} -> {output}: {c.score.n_notes} notes, {len(c.score.tracks)} track(s), "
         f"{len(data)} bytes, {kbps:.3f} kbps ({_timing(c.duration)})")


@cli.command()
@click.argument("input", type=str)
@click.argument("output", type=str, required=False)
@click.option("-f", "--force", is_flag=True, help="Overwrite OUTPUT if it exists.")
@click.option("--format", "fmt", type=click.Choice(["wav", "flac", "ogg", "opus", "mp3"]),
              default=None,
              help="Output format (default: from OUTPUT's extension; wav for stdout). "
              "opus and mp3 resample to a rate they take (Opus: 48 kHz).")
@click.option("--program", "programs", multiple=True, metavar="TRACK=GM_PROGRAM",
              help="Play track TRACK (number from 1, or name) with another GM program (the "
              "residual stays as it is).")
@click.option("--stems", "stems_dir", type=str, default=None, metavar="DIR",
              help="Also write one file per track into DIR (NN-NAME.EXT, same format): the "
              "pure synthesis of each track (the residual is in the mix only).")
@_synth_options
@_verbosity
def decode(input: str, output: str | None, force: bool, engine: str, device: str,
           soundfont: str | None, sample_rate: int | None, fmt: str | None, programs,
           transpose: int, tempo: float, channels: str, stems_dir: str | None,
           no_residual: bool, max_duration: float) -> None:
    """Decode a .smc container (or - for stdin) into audio (.wav, .flac, .ogg, .opus, .mp3).

    OUTPUT defaults to INPUT with the extension .wav; - writes WAV to stdout.
    """
    from semcodec import api
    from semcodec.audio import (encode_audio, output_format, write_audio, write_audio_blocks,
                                written_rate)

    if output is None:
        if input == "-":
            raise UsageError("decode from stdin needs an OUTPUT (use - for stdout)")
        output = str(Path(input).with_suffix(".wav"))
    audio_fmt = output_format(output, fmt or ("wav" if output == "-" else None))
    _check_output(output, force, (input,))
    c, _ = _read_smc(input)
    prog_map = api.parse_program_map(programs, len(c.score.tracks),
                                     [t.name for t in c.score.tracks])
    stem_paths = _stem_paths(stems_dir, c, output, audio_fmt, force) if stems_dir else []
    opts = api.DecodeOptions(engine=engine, device=device, soundfont=soundfont,
                             sample_rate=sample_rate, channels=_channels(channels),
                             programs=prog_map, transpose=transpose, tempo=tempo,
                             max_duration_s=max_duration or None, residual=not no_residual)
    out_sr = api.output_shape(c, opts)[0]
    progress = _Progress("decode", api.DECODE_STAGES)
    try:
        with _flag_hints(input):
            if stems_dir or written_rate(audio_fmt, out_sr) != out_sr:
                # per-track files (or a format that needs another rate): whole arrays
                if stems_dir:
                    audio, sr, parts = api.decode_tracks(c, opts, progress=progress)
                else:
                    (audio, sr), parts = api.decode(c, opts, progress=progress), []
                n_frames = audio.shape[0]
                n_files = 1 + len(stem_paths)

                def writing(k: int):
                    return lambda f: progress("write", (k + f) / n_files)

                if output == "-":
                    _write_bytes(output, encode_audio(audio, sr, audio_fmt, progress=writing(0)))
                else:
                    write_audio(output, audio, sr, fmt, progress=writing(0))
                for k, (path, (_, part)) in enumerate(zip(stem_paths, parts)):
                    write_audio(path, part, sr, progress=writing(k + 1))
            elif output == "-" and audio_fmt[0] == "WAV":
                # streamed: the first blocks go out while the rest renders
                stream = api.decode_stream(c, opts, progress=progress)
                sr, n_frames = stream.sr, stream.n_samples
                try:
                    _stream_wav(sys.stdout.buffer, stream, progress)
                except BrokenPipeError:  # the reader went away: stop quietly, as `cat` does
                    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
                    return
            else:
                # block by block with the exact loudness gain (two passes, the raw mix kept or
                # spooled): memory stays bounded whatever the length
                stream = api.decode_stream(c, opts, exact=True, progress=progress)
                sr, n_frames = stream.sr, stream.n_samples
                if output == "-":
                    import numpy as np

                    _write_bytes(output, encode_audio(np.concatenate(list(stream.blocks)), sr,
                                                      audio_fmt))
                else:
                    write_audio_blocks(output, stream.blocks, sr, stream.channels, n_frames, fmt,
                                       progress=lambda f: progress("write", f))
    finally:
        progress.close()
    dur = n_frames / sr
    _say(f"{input} -> {output}: {dur:.2f} s at {written_rate(audio_fmt, sr)} Hz "
         f"({_timing(dur)})")


def _stream_wav(out, stream, progress=None) -> None:
    """Write a :class:`semcodec.api.DecodeStream` as a 16-bit WAV to the binary file ``out``,
    block by block (the header first: the length is known)."""
    from semcodec.audio import pcm16_bytes, wav_header

    with _stdout_errors():
        _write_all(out, wav_header(stream.sr, stream.channels, stream.n_samples))
        done = 0
        for block in stream.blocks:
            _write_all(out, pcm16_bytes(block))
            done += block.shape[0]
            if progress is not None:
                progress("write", done / max(1, stream.n_samples))


#: Players tried by ``semcodec play`` (each reads a WAV on stdin), in order.
PLAYERS = (
    ("ffplay", ["ffplay", "-nodisp", "-autoexit", "-loglevel", "error", "-i", "-"]),
    ("pw-play", ["pw-play", "-"]),
    ("paplay", ["paplay"]),
    ("aplay", ["aplay", "-q", "-"]),
)


@cli.command()
@click.argument("input", type=str)
@click.option("--player", type=str, default=None, metavar="COMMAND",
              help="Command that plays a WAV from its stdin (default: the sounddevice package "
              "when installed, else the first of ffplay, pw-play, paplay, aplay found).")
@click.option("--program", "programs", multiple=True, metavar="TRACK=GM_PROGRAM",
              help="Play track TRACK (number from 1, or name) with another GM program.")
@_synth_options
@_verbosity
def play(input: str, player: str | None, engine: str, device: str, soundfont: str | None,
         sample_rate: int | None, programs, transpose: int, tempo: float, channels: str,
         no_residual: bool, max_duration: float) -> None:
    """Play a .smc container (or - for stdin) as it decodes.

    The audio starts after the first block (files up to 40 s are rendered whole first, for
    the exact loudness; longer ones start at once with an estimated loudness gain; a file
    with a residual is rendered whole first).
    """
    import shlex
    import shutil
    import subprocess

    from semcodec import api

    c, _ = _read_smc(input)
    prog_map = api.parse_program_map(programs, len(c.score.tracks),
                                     [t.name for t in c.score.tracks])
    opts = api.DecodeOptions(engine=engine, device=device, soundfont=soundfont,
                             sample_rate=sample_rate, channels=_channels(channels),
                             programs=prog_map, transpose=transpose, tempo=tempo,
                             max_duration_s=max_duration or None, residual=not no_residual)
    cmd = shlex.split(player) if player else None
    use_sd = False
    if cmd is None:
        try:
            import sounddevice  # noqa: F401 - optional audio output
            use_sd = True
        except (ImportError, OSError):
            found = [argv for name, argv in PLAYERS if shutil.which(name)]
            if not found:
                raise OutputError("no audio output: install the Python package sounddevice "
                                  "or a player (ffplay, pw-play, paplay or aplay), or pass "
                                  "--player COMMAND") from None
            cmd = found[0]
    with _flag_hints(input):
        stream = api.decode_stream(c, opts)
    if use_sd:
        _play_sounddevice(stream)
        return
    assert cmd is not None  # a player was found (else the error above)
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
    except OSError as exc:
        raise OutputError(f"cannot start the player {cmd[0]}: {exc.strerror or exc}") from None
    try:
        if proc.stdin is not None:
            _stream_wav(proc.stdin, stream)
            proc.stdin.close()
    except OSError:
        pass
    err = proc.stderr.read().decode("utf-8", "replace").strip() if proc.stderr else ""
    if proc.wait() != 0:
        first = err.splitlines()[-1] if err else f"exit status {proc.returncode}"
        raise OutputError(f"the player {cmd[0]} failed: {first}")


def _play_sounddevice(stream) -> None:
    """Play a DecodeStream through the sounddevice package (PortAudio)."""
    import numpy as np
    import sounddevice as sd

    try:
        with sd.OutputStream(samplerate=stream.sr, channels=stream.channels,
                             dtype="float32") as out:
            for block in stream.blocks:
                out.write(np.ascontiguousarray(block.reshape(block.shape[0], -1)))
    except sd.PortAudioError as exc:
        raise OutputError(f"no audio device: {exc}") from None


def _channels(choice: str) -> int | None:
    """The ``--channels`` choice as :class:`semcodec.api.DecodeOptions` takes it."""
    return None if choice == "auto" else int(choice)


@contextlib.contextmanager
def _flag_hints(name: str) -> Iterator[None]:
    """Name the input and the CLI flag a library error's advice refers to."""
    try:
        yield
    except OutputTooLongError as exc:
        raise OutputTooLongError(f"{name}: {exc} with --max-duration SECONDS (0: none)") from None
    except OutputTooLargeError as exc:
        raise OutputTooLargeError(f"{name}: {exc} (--sample-rate)") from None


def _stem_paths(stems_dir: str, c, output: str, audio_fmt: tuple[str, str], force: bool) -> list[str]:
    """One output path per track in ``stems_dir`` (created if missing), checked like OUTPUT."""
    import re

    d = Path(stems_dir)
    if d.exists() and not d.is_dir():
        raise OutputError(f"{stems_dir}: not a directory")
    if not d.exists():
        if not (d.parent if str(d.parent) else Path(".")).is_dir():
            raise OutputError(f"{stems_dir}: parent directory does not exist")
        d.mkdir()
    from semcodec.audio import extension_of

    ext = extension_of(audio_fmt)
    paths = []
    for i, t in enumerate(c.score.tracks):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", t.name).strip("._") or "track"
        p = str(d / f"{i + 1:02d}-{safe[:48]}{ext}")
        _check_output(p, force)
        if output != "-" and Path(output).resolve() == Path(p).resolve():
            raise OutputError(f"{p}: a stem would overwrite OUTPUT")
        paths.append(p)
    return paths


@cli.command()
@click.argument("input", type=str)
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@_verbosity
def info(input: str, as_json: bool) -> None:
    """Show a .smc file's header, tracks, samples, chunk sizes and bitrate."""
    from semcodec.summary import container_summary, summary_lines

    c, data = _read_smc(input)
    summary = container_summary(c, data, input)
    if as_json:  # ensure_ascii: every control (and non-ASCII) character as a \\u escape
        click.echo(json.dumps(summary, indent=2, ensure_ascii=True))
        return
    click.echo("\n".join(printable(line) for line in summary_lines(summary, c)))


@cli.command()
@click.argument("input", type=str)
@click.option("--midi", "midi_out", type=str, default=None, help="Write a Standard MIDI File.")
@click.option("--musicxml", "xml_out", type=str, default=None,
              help="Write quantized MusicXML (sheet music).")
@click.option("-f", "--force", is_flag=True, help="Overwrite existing outputs.")
@_verbosity
def export(input: str, midi_out: str | None, xml_out: str | None, force: bool) -> None:
    """Export the score of a .smc file as MIDI and/or MusicXML.

    Without --midi and --musicxml, writes both beside INPUT (x.smc -> x.mid, x.musicxml).
    """
    from semcodec.score import write_midi, write_musicxml

    if not midi_out and not xml_out:
        if input == "-":
            raise UsageError("export from stdin needs --midi PATH and/or --musicxml PATH")
        midi_out = str(Path(input).with_suffix(".mid"))
        xml_out = str(Path(input).with_suffix(".musicxml"))
    for out in (midi_out, xml_out):
        if out:
            if out == "-":
                raise UsageError("export writes files, not stdout")
            _check_output(out, force, (input,))
    c, _ = _read_smc(input)
    if midi_out:
        write_midi(c.score, midi_out)
        _say(f"{input} -> {midi_out}")
    if xml_out:
        # title: the title tag, else the input's file name (the output's from stdin);
        # composer: the artist tag
        write_musicxml(c.score, xml_out, c.texts.get("lyrics"),
                       title=c.tags.get("title") or Path(xml_out if input == "-" else input).stem,
                       composer=c.tags.get("artist") or c.tags.get("composer", ""))
        _say(f"{input} -> {xml_out}")


@cli.command("test")
@click.argument("inputs", nargs=-1, required=True, type=str)
@_verbosity
def test_cmd(inputs: tuple[str, ...]) -> None:
    """Check the integrity of .smc files (structure, lengths, CRCs), like flac -t."""
    failed = 0
    for path in inputs:
        try:
            _read_smc(path)
        except SemcodecError as exc:
            failed += 1
            click.echo(printable(f"{exc}"), err=True)
            continue
        if not STATE.quiet:
            click.echo(printable(f"{path}: ok"))
    if failed:
        raise SystemExit(EXIT_ERROR)


# --- batch -------------------------------------------------------------------------------

@cli.group("batch")
@_verbosity
def batch_group() -> None:
    """Encode or decode whole folder trees, on local processes or a Dask cluster.

    \b
      semcodec batch encode music/ smc/ --jobs 4
      semcodec batch decode smc/ wav/ --engine fluidsynth --format flac
      semcodec batch encode music/ smc/ --scheduler tcp://HOST:8786

    The output tree mirrors the input tree.  Outputs that are already complete (newer than
    their input, and valid) are skipped, so an interrupted batch resumes; -f redoes them.
    A bad file is reported and the batch carries on; the exit status is 2 if any failed.
    """


def _batch_common(f):
    for opt in reversed([
        click.option("-j", "--jobs", type=click.IntRange(1, 1024), default=None,
                     help="Local worker processes (default: the number of cores)."),
        click.option("-f", "--force", is_flag=True, help="Redo outputs that are already complete."),
        click.option("--report", "report_path", type=click.Path(dir_okay=False), default=None,
                     help="Write the per-file results as JSON to this file."),
        click.option("--scheduler", default=None, metavar="tcp://HOST:8786",
                     help="Run on this Dask cluster instead (pip install 'semcodec[dask]')."),
        click.option("--follow-symlinks", is_flag=True,
                     help="Also process symbolic links to files outside SRC_DIR (skipped and "
                     "listed by default)."),
    ]):
        f = opt(f)
    return f


def _run_batch(mode: str, src: str, dst: str, fmt: str, jobs, force: bool, report_path,
               scheduler, follow_symlinks: bool = False, **settings) -> None:
    from tqdm import tqdm

    from semcodec import batch

    if report_path:
        rp = Path(report_path)
        if rp.is_dir() or not (rp.parent if str(rp.parent) else Path(".")).is_dir():
            raise OutputError(f"{report_path}: cannot write the report there")
    plan = batch.plan_batch(mode, src, dst, fmt, follow_symlinks=follow_symlinks)
    if plan.n_files == 0:
        _say(f"batch {mode}: no input files under {src}")
    show = not STATE.quiet and sys.stderr.isatty()
    # files done plus the fractions of the files in progress: the bar and its ETA move while
    # files are being worked on; the files in progress are listed with their stage after it
    bar = tqdm(total=plan.n_files, desc=f"batch {mode}", file=sys.stderr, disable=not show,
               dynamic_ncols=True, smoothing=0.1,
               bar_format="{desc} |{bar}| {n:.1f}/{total_fmt} files {elapsed}<{remaining}"
               "{postfix}")
    finished = [0]
    running: dict[str, tuple[str, float]] = {}

    def redraw() -> None:
        n = finished[0] + sum(f for _, f in running.values())
        with bar.get_lock():
            if n > bar.n:
                bar.update(n - bar.n)
            bar.set_postfix_str(", ".join(f"{Path(rel).name} {stage} {frac * 100:.0f}%"
                                          for rel, (stage, frac) in sorted(running.items())))

    def progress(res) -> None:
        finished[0] += 1
        running.pop(res.rel, None)
        redraw()
        if res.status == "failed":
            msg = f"semcodec: error: {Path(src) / res.rel}: {res.reason}"
            bar.write(msg, file=sys.stderr) if show else click.echo(msg, err=True)

    def file_progress(rel: str, stage: str, frac: float) -> None:
        running[rel] = (stage, frac)
        redraw()

    stop = threading.Event()

    def tick() -> None:  # the clock moves while workers start and load their models
        while not stop.wait(0.5):
            with bar.get_lock():
                bar.refresh()

    ticker = threading.Thread(target=tick, name="semcodec-progress", daemon=True)
    if show:
        ticker.start()
    try:
        report = batch.run_batch(plan, jobs=jobs, force=force, scheduler=scheduler,
                                 progress=progress, file_progress=file_progress if show else None,
                                 **settings)
    finally:
        stop.set()
        if show:
            ticker.join()
        bar.close()
    if report_path:
        report.write_json(report_path)
    for line in report.summary_lines():
        if not line.startswith("failed:"):
            _say(line)
        elif not STATE.quiet:
            click.echo(line, err=True)
    if report.failed:
        raise SystemExit(EXIT_ERROR)


@batch_group.command("encode")
@click.argument("src_dir", type=str)
@click.argument("dst_dir", type=str)
@_batch_common
@_encode_options
@_verbosity
def batch_encode(src_dir: str, dst_dir: str, jobs, force: bool, report_path, scheduler,
                 follow_symlinks: bool, **options) -> None:
    """Encode every audio file under SRC_DIR (.wav .flac .ogg .mp3 .aif .aiff) to DST_DIR/**.smc."""
    opts = _encode_options_from(**options)
    _run_batch("encode", src_dir, dst_dir, "wav", jobs, force, report_path, scheduler,
               follow_symlinks, encode_options=opts)


@batch_group.command("decode")
@click.argument("src_dir", type=str)
@click.argument("dst_dir", type=str)
@_batch_common
@click.option("--format", "fmt", type=click.Choice(["wav", "flac", "ogg"]), default="wav",
              show_default=True, help="Output format.")
@_synth_options
@_verbosity
def batch_decode(src_dir: str, dst_dir: str, jobs, force: bool, report_path, scheduler,
                 follow_symlinks: bool, fmt: str, engine: str, device: str, soundfont,
                 sample_rate, transpose: int, tempo: float, channels: str,
                 no_residual: bool, max_duration: float) -> None:
    """Decode every .smc under SRC_DIR to DST_DIR/**.wav (or --format flac|ogg)."""
    from semcodec import batch

    if soundfont is not None:
        soundfont = os.path.abspath(soundfont)  # workers may run elsewhere
    settings = batch.DecodeSettings(engine=engine, device=device, soundfont=soundfont,
                                    sample_rate=sample_rate, fmt=fmt, transpose=transpose,
                                    tempo=tempo, channels=_channels(channels),
                                    max_duration_s=max_duration or None,
                                    residual=not no_residual)
    _run_batch("decode", src_dir, dst_dir, fmt, jobs, force, report_path, scheduler,
               follow_symlinks, decode_settings=settings)


# --- entry point -------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with 0 (ok), 1 (usage error), 2 (processing error), 130 (Ctrl-C)."""
    cli.main(args=argv, prog_name="semcodec")


def _fail(exc: BaseException, code: int, prefix: str = "", hint: bool = False) -> None:
    if STATE.verbose:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    extra = " (run with -v for details)" if hint and not STATE.verbose else ""
    click.echo(printable(f"semcodec: error: {prefix}{text}{extra}"), err=True)
    sys.exit(code)
