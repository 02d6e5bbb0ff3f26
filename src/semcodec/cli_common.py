"""The pieces the ``semcodec`` commands share (part of the command line, like
:mod:`semcodec.cli`, the only code that knows click): verbosity and logging, the
progress bar, output checks and writing, the option groups, error reporting."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import click

from semcodec.constants import (
    DEFAULT_MAX_DECODE_S,
    MAX_SAMPLE_RATE,
    MIN_SAMPLE_RATE,
    TEMPO_FACTOR_MAX,
    TEMPO_FACTOR_MIN,
    TRANSPOSE_MAX_SEMITONES,
)
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


def _read_smc(path: str, check_residual: bool = True):
    """(container, bytes) of the .smc file ``path`` (- for stdin); ``check_residual=False``:
    a segmented residual's segments are checked when the decoder reaches them (a stream
    that starts at once), see :meth:`semcodec.container.SmcFile.from_bytes`."""
    from semcodec import api
    from semcodec.errors import InputError

    if path == "-":
        from semcodec import constants
        from semcodec.audio import read_bounded

        data = read_bounded(sys.stdin.buffer, constants.MAX_STDIN_SMC_BYTES, "<stdin>", ".smc data")
        if not data:
            raise InputError("<stdin>: empty input")
        return api.Container.from_bytes(data, check_residual=check_residual), data
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
        return api.Container.from_bytes(data, check_residual=check_residual), data
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
