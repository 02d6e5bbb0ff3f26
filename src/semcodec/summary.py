"""What ``semcodec info`` shows, as data: a ``.smc`` file's header, tracks (with the bytes each
costs), samples, chunks and bitrates.  Standard library only; the CLI prints it."""

from __future__ import annotations

from typing import Any

from semcodec.container import SmcFile, bitrate_kbps, chunk_table, track_sizes


def container_summary(c: SmcFile, data: bytes, name: str) -> dict[str, Any]:
    """The summary of container ``c`` read from the bytes ``data`` of file ``name``.

    Keys: file, bytes, bitrate_kbps, duration (s), sample_rate (Hz), channels, n_samples,
    loudness_lufs, tempo_bpm, time_signature, key, encoder, tags, texts (the keys), tracks
    (index from 1, name, program, drum, pan, engine, notes, bent_notes, timbre, samples,
    sample_seconds, bytes {score, timbre, samples, total}, kbps), samples (track from 1, start
    and duration in s, codec, sample_rate, bytes, key) and chunks (type, offset, bytes).
    """
    sizes = track_sizes(c)
    timbre_tracks = {t.track for t in c.timbres}
    tracks = []
    for i, t in enumerate(c.score.tracks):
        smp = [s for s in c.samples if s.track == i]
        tracks.append({
            "index": i + 1, "name": t.name, "program": t.program, "drum": t.is_drum,
            "pan": t.pan, "engine": t.engine or None,
            "notes": len(t.notes), "bent_notes": sum(1 for n in t.notes if n.bends),
            "timbre": i in timbre_tracks, "samples": len(smp),
            "sample_seconds": round(sum(s.duration for s in smp), 3),
            "bytes": sizes[i],
            "kbps": round(bitrate_kbps(sizes[i]["total"], c.duration), 4),
        })
    return {
        "file": name, "bytes": len(data), "bitrate_kbps": round(bitrate_kbps(len(data), c.duration), 4),
        "duration": c.duration, "sample_rate": c.sample_rate, "channels": c.channels,
        "n_samples": c.n_samples, "loudness_lufs": c.loudness_lufs,
        "tempo_bpm": c.score.tempo_bpm, "time_signature": list(c.score.time_signature),
        "key": c.score.key, "encoder": c.encoder, "tags": c.tags, "texts": sorted(c.texts),
        "tracks": tracks,
        "samples": [{"track": s.track + 1, "start": s.start, "duration": s.duration,
                     "codec": s.codec, "sample_rate": s.sample_rate, "bytes": len(s.data),
                     "key": s.key}
                    for s in c.samples],
        "chunks": [{"type": ch.type, "offset": ch.offset, "bytes": ch.length}
                   for ch in chunk_table(data)],
    }
