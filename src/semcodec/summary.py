"""What ``semcodec info`` shows: a ``.smc`` file's header, tracks (with the bytes each costs),
samples, chunks and bitrates, as data (:func:`container_summary`, the ``--json`` output) and
as text lines (:func:`summary_lines`); the CLI prints them.  Standard library only (General
MIDI program names from pretty_midi when it is installed)."""

from __future__ import annotations

from typing import Any, Callable

from semcodec.container import SmcFile, bitrate_kbps, chunk_table, part_sizes, resd, track_sizes


def container_summary(c: SmcFile, data: bytes, name: str) -> dict[str, Any]:
    """The summary of container ``c`` read from the bytes ``data`` of file ``name``.

    Keys: file, bytes, bitrate_kbps, duration (s), sample_rate (Hz), channels, n_samples,
    loudness_lufs, synth_lufs (the decode mix's loudness before its gain, stored for the
    decoder; None when not stored), tempo_bpm, time_signature, beats (of the tempo map, 0 without one),
    key, encoder, neural_model ({id, installed}: the neural model the timbres were fitted to, the
    legacy model for files that name none; installed: whether this installation has its weights,
    else the decoder uses the current model), tags, texts (the keys), tracks
    (index from 1, name, program, drum, pan, engine, notes, bent_notes, timbre, samples,
    sample_seconds, bytes {score, timbre, samples, total}, kbps, render: how the track is played
    beyond its engine, in words, or None), samples (track from 1, start and duration in s, codec,
    sample_rate, bytes, key), chunks (type, offset, bytes) and parts ({header, score, timbres,
    samples, oneshots, residual, texts: {bytes, kbps}}, adding up to the file), and
    residual (None, or the RESD/RESS grid: bands, period_s, step_db, cells, coded_cells, bytes,
    segments: 1 for the whole-grid RESD layout).
    """
    scor = [ch for ch in chunk_table(data) if ch.type == "SCOR"]  # its payload: less framing
    sizes = track_sizes(c, scor[0].length - 12 if scor else None)
    timbre_tracks = {t.track for t in c.timbres}
    tracks = []
    for i, t in enumerate(c.score.tracks):
        smp = [s for s in c.samples if s.track == i]
        tracks.append({
            "index": i + 1, "name": t.name, "program": t.program, "drum": t.is_drum,
            "pan": t.pan, "engine": t.engine or None, "render": _render_words(t.render),
            "notes": len(t.notes), "bent_notes": sum(1 for n in t.notes if n.bends),
            "timbre": i in timbre_tracks, "samples": len(smp),
            "sample_seconds": round(sum(s.duration for s in smp), 3),
            "bytes": sizes[i],
            "kbps": round(bitrate_kbps(sizes[i]["total"], c.duration), 4),
        })
    return {
        "file": name, "bytes": len(data), "bitrate_kbps": round(bitrate_kbps(len(data), c.duration), 4),
        "duration": c.duration, "sample_rate": c.sample_rate, "channels": c.channels,
        "n_samples": c.n_samples, "loudness_lufs": c.loudness_lufs, "synth_lufs": c.synth_lufs,
        "tempo_bpm": c.score.tempo_bpm, "time_signature": list(c.score.time_signature),
        "beats": len(c.score.tempo_map.beats) if c.score.tempo_map else 0,
        "key": c.score.key, "encoder": c.encoder, "neural_model": neural_model_summary(c),
        "tags": c.tags, "texts": sorted(c.texts),
        "tracks": tracks,
        "samples": [{"track": s.track + 1, "start": s.start, "duration": s.duration,
                     "codec": s.codec, "sample_rate": s.sample_rate, "bytes": len(s.data),
                     "key": s.key}
                    for s in c.samples],
        "chunks": [{"type": ch.type, "offset": ch.offset, "bytes": ch.length}
                   for ch in chunk_table(data)],
        "parts": {k: {"bytes": v, "kbps": round(bitrate_kbps(v, c.duration), 4)}
                  for k, v in part_sizes(c, data).items()},
        "residual": residual_summary(c),
    }


def neural_model_summary(c: SmcFile) -> dict[str, Any]:
    """The neural model the file's timbres were fitted to (its header's ``neural_model``; files
    that name none were fitted to the legacy model) and whether this installation has it."""
    from semcodec.synth.weights import LEGACY_NEURAL_MODEL, weights_for_model  # noqa: PLC0415

    model = c.neural_model or LEGACY_NEURAL_MODEL
    return {"id": model, "named_in_file": bool(c.neural_model),
            "installed": weights_for_model(model) is not None}


def residual_summary(c: SmcFile) -> dict[str, Any] | None:
    """The residual's grid in numbers (None when the file has none)."""
    if not c.residual:
        return None
    g = resd.decode(c.residual, c.duration)
    return {"bands": g.n_bands, "period_s": g.period_s, "step_db": g.step_db,
            "cells": g.n_bands * len(g.mask[0]), "coded_cells": sum(sum(row) for row in g.mask),
            "bytes": len(c.residual),
            "segments": (len(resd.segment_index(c.residual, c.duration).spans)
                         if resd.is_segmented(c.residual) else 1)}


def summary_lines(summary: dict[str, Any], c: SmcFile) -> list[str]:
    """``semcodec info``'s text: ``summary`` (of :func:`container_summary`) of container ``c``,
    one line per item."""
    gm = _gm_names()
    lines = [
        f"file       {summary['file']}: {summary['bytes']} bytes, "
        f"{bitrate_kbps(summary['bytes'], c.duration):.3f} kbps",
        f"encoder    {c.encoder or '?'}",
        _neural_model_line(summary["neural_model"]),
        f"audio      {c.duration:.3f} s ({c.n_samples} samples), {c.sample_rate} Hz, "
        f"{c.channels} channel(s)"
        f"{' (decoded in stereo, each track at its pan)' if c.channels > 1 else ''}, "
        + (f"{c.loudness_lufs:.2f} LUFS" if c.loudness_lufs is not None else "silent")
        + (f" (decode mix {c.synth_lufs:.2f} LUFS before its gain: streams start at once)"
           if c.synth_lufs is not None and c.loudness_lufs is not None else ""),
        f"score      {c.score.n_notes} notes, {c.score.tempo_bpm:g} BPM, "
        f"{c.score.time_signature[0]}/{c.score.time_signature[1]}, {c.score.key}"
        + (f", tempo map of {summary['beats']} beats" if summary.get("beats") else ""),
    ]
    for k, v in c.tags.items():
        lines.append(f"tag        {k}={v}")
    if "lyrics" in c.texts:
        words = c.texts["lyrics"].split()
        lines.append(f"lyrics     {len(words)} words: {' '.join(words[:8])}"
                     f"{' ...' if len(words) > 8 else ''}")
    lines.append("tracks")
    for t in summary["tracks"]:
        kind = "drums" if t["drum"] else f"program {t['program']:3d} {gm(t['program'])}"
        b = t["bytes"]
        pan = "" if c.channels < 2 else "  pan " + ("C" if t["pan"] == 0 else
                                                  f"{'L' if t['pan'] < 0 else 'R'}{abs(t['pan']):.2f}")
        if t["engine"]:
            pan += f"  plays with {t['engine']}"
        if t["render"]:
            pan += f"  {t['render']}"
        lines.append(f"  {t['index']:2d} {t['name']:<12} {kind:<38} {t['notes']:6d} notes{pan}"
                     f"  timbre {'yes' if t['timbre'] else 'no '}  samples {t['samples']}"
                     f" ({t['sample_seconds']:.2f} s)  {b['total']} bytes = {t['kbps']:.3f} kbps"
                     f" (score {b['score']}, timbre {b['timbre']}, samples {b['samples']})")
    if c.samples:
        lines.append("samples")
        for s in summary["samples"]:
            key = f"  key {s['key']}" if s["key"] is not None else ""
            lines.append(f"  track {s['track']:2d} at {s['start']:8.3f} s  {s['duration']:.3f} s  "
                         f"{s['codec']} {s['sample_rate']} Hz  {s['bytes']} bytes{key}")
    r = summary.get("residual")
    if r:
        lines.append(f"residual   {r['bands']} bands x {r['period_s'] * 1000:g} ms frames, "
                     f"{r['step_db']:g} dB steps, {r['coded_cells']} of {r['cells']} cells "
                     f"coded, {r['bytes']} bytes"
                     + (f" in {r['segments']} segments" if r.get("segments", 1) > 1 else ""))
    lines.append("parts")
    for k, v in summary["parts"].items():
        lines.append(f"  {k:<9} {v['bytes']:8d} bytes  {v['kbps']:.3f} kbps")
    lines.append("chunks")
    for ch in summary["chunks"]:
        share = bitrate_kbps(ch["bytes"], c.duration)
        lines.append(f"  {ch['type']:<5} {ch['bytes']:8d} bytes  {share:.3f} kbps")
    return lines


def _neural_model_line(m: dict[str, Any]) -> str:
    origin = "" if m["named_in_file"] else " (legacy: the file names none)"
    where = ("installed" if m["installed"]
             else "not installed here: decodes with the current model, timbres may sound off")
    return f"neural     timbres fitted to model {m['id']}{origin}, {where}"


def _render_words(r: Any) -> str | None:
    """A track's stored render (``events.TrackRender``) in words; None when it has none."""
    if r is None:
        return None
    words = {"voice": "sung from its excerpt", "sampler": "excerpt as sampler"}.get(r.use, "")
    extra = [w for w in (words, f"eq {len(r.eq_db)} bands" if r.eq_db else "",
                         f"room {r.room[0]:g} s" if r.room else "") if w]
    return ", ".join(extra) or None


def _gm_names() -> Callable[[int], str]:
    try:
        import pretty_midi  # noqa: PLC0415

        return pretty_midi.program_to_instrument_name
    except ImportError:  # pragma: no cover - pretty_midi is a dependency
        return lambda _program: ""
