"""The one hierarchy of errors semcodec raises on purpose.

Every error a user can cause (a bad file, a bad option) is a :class:`SemcodecError`; the CLI
turns it into a one-line message and exit status 2.  Anything else is a bug.
"""

from __future__ import annotations


class SemcodecError(Exception):
    """Base class of every error semcodec raises on purpose."""


class ContainerError(SemcodecError):
    """A ``.smc`` file is malformed, truncated, corrupt or of an unsupported version."""


class InputError(SemcodecError):
    """Input audio (or another input file) is unreadable or unusable."""


class OutputError(SemcodecError):
    """An output file cannot be written (exists without --force, bad extension, I/O error)."""


class SynthError(SemcodecError):
    """A synthesizer engine is unavailable or failed (missing library, soundfont, weights)."""


class OutputTooLargeError(SynthError):
    """The decoded output would not fit in this machine's memory (a lower sample rate may)."""


class OutputTooLongError(SynthError):
    """The decoded output would be longer than the decoder's duration limit (a higher limit,
    or none, allows it)."""


class UsageError(SemcodecError):
    """An option value is invalid (bad track reference, bad program number, ...)."""
