"""``make bench``: run every codec on every clip, compute the metrics, write the report.

    .venv/bin/python -m bench.run [--jobs 2] [--clips SUBSTR ...] [--no-report]

Writes docs/BENCHMARKS.md, docs/bench/results.json and docs/bench/*.png.  Caches the
rendered clips and the plain pipeline's basic-pitch output of every original under
.bench-cache/.  Progress goes to stderr; the total time is printed at the end.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import datetime as dt
import hashlib
import json
import multiprocessing as mp
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = REPO / ".bench-cache"
PLAIN_CACHE = CACHE / "plain"
FIG_CACHE = CACHE / "figures"
#: Bump to invalidate the cached plain-pipeline encodings.
PLAIN_VERSION = 1
#: Clips whose decoded audio is kept for the spectrogram figure (first found in each list).
FIGURE_CLIPS = (("m21_flute_hornpipe", "m21_violin_haydn"),
                ("slakh_Track00001_mix", "m21_ens_winds_bwv66.6"))

#: Group of the stereo clips (bench.dataset.stereo_clips): they also get per-channel mel.
STEREO_GROUP = "stereo"

ORIGINAL = "original (basic-pitch ceiling)"
OPUS = "opus {} kbps"
PLAIN = "plain"
PLAIN_LM = "plain (loudness-matched)"


#: On mixes (ensembles, bands): the same clip encoded as one track without drums (what semcodec
#: did before it split mixes), decoded with the neural engine, to compare with the default.
ONE_TRACK = "semcodec neural, 1 track"
ONE_TRACK_ARGS = ("--tracks", "1", "--drums", "off")
ONE_TRACK_GROUPS = ("ensemble", "band")


#: The default decoding without the file's residual (``decode --no-residual``); its bytes are
#: the file's without the RESD chunk.
NO_RESIDUAL = "semcodec auto, no residual"


def semcodec_row(engine: str) -> str:
    return f"semcodec {engine}"


def codec_order(engines: list[str]) -> list[str]:
    from bench.codecs import NO_RESIDUAL_ENGINE, OPUS_KBPS

    one = [ONE_TRACK] if "neural" in engines else []
    pure = [NO_RESIDUAL] if NO_RESIDUAL_ENGINE in engines else []
    return ([ORIGINAL] + [semcodec_row(e) for e in engines] + pure + one
            + [OPUS.format(k) for k in OPUS_KBPS] + [PLAIN, PLAIN_LM])


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def figure_wav(clip_name: str, codec: str) -> Path:
    """Where the decoded audio of ``codec`` on a figure clip is kept."""
    if codec == ORIGINAL:
        return FIG_CACHE / clip_name / "original.flac"
    return FIG_CACHE / clip_name / f"{slug(codec)}.wav"


# --- per-clip work (runs in a worker process) ---------------------------------------------

def load_mono(path: str | Path, sr: int = 44100):
    import librosa
    import numpy as np
    import soundfile as sf

    y, s = sf.read(str(path), dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if s != sr:
        y = librosa.resample(y, orig_sr=s, target_sr=sr)
    return np.ascontiguousarray(y, dtype=np.float32)


def load_stereo(path: str | Path, sr: int = 44100):
    """``(n, 2)`` float32 at ``sr`` Hz: the file's two channels (a mono file on both)."""
    import librosa
    import numpy as np
    import soundfile as sf

    y, s = sf.read(str(path), dtype="float32", always_2d=True)
    y = np.repeat(y, 2, axis=1) if y.shape[1] == 1 else y[:, :2]
    if s != sr:
        y = librosa.resample(y.T, orig_sr=s, target_sr=sr).T
    return np.ascontiguousarray(y, dtype=np.float32)


def _file_key(path: str | Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def cached_plain_encode(clip: dict) -> dict:
    """The plain pipeline's encoding of the original (basic-pitch + gzipped MIDI), cached.

    Its note list doubles as the original's own basic-pitch transcription (ceiling row).
    """
    from importlib.metadata import version

    from bench import codecs

    try:
        bpv = version("basic-pitch")
    except Exception:  # noqa: BLE001
        bpv = "?"
    key = hashlib.sha1(f"{PLAIN_VERSION}|{bpv}|{_file_key(clip['audio'])}".encode()).hexdigest()[:12]
    d = PLAIN_CACHE / f"{clip['name']}-{key}"
    meta = d / "meta.json"
    if meta.exists():
        m = json.loads(meta.read_text())
        m["cached"] = True
        return m
    PLAIN_CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=str(PLAIN_CACHE)))
    try:
        # the baseline runs with onnxruntime's default thread count, as a user would
        env = dict(os.environ, BENCH_ORT_THREADS="0")
        m = codecs.plain_encode(Path(clip["audio"]), tmp / "plain.mid.gz", tmp / "notes.json", env=env)
        if m["status"] != "ok":
            return m
        m.update(dir=str(d), measured_at=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"))
        (tmp / "meta.json").write_text(json.dumps(m, indent=1))
        if d.exists():
            shutil.rmtree(d)
        tmp.rename(d)
        m["cached"] = False
        return m
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def detected_drums(audio, sr: int = 44100) -> list[tuple[float, float, int]]:
    """``(onset, offset, gm_key)`` of semcodec's drum detector on mono ``audio`` at ``sr``."""
    from semcodec import drums

    return [(n.onset, n.offset, n.pitch) for n in drums.detect_drums(audio, sr)]


def smc_drum_notes(path: str | Path) -> list[tuple[float, float, int]]:
    """``(onset, offset, gm_key)`` of every note of the drum tracks of the ``.smc`` at ``path``
    (empty when it has none)."""
    import semcodec

    c = semcodec.load(path)
    return [(n.onset, n.offset, n.pitch) for t in c.score.tracks if t.is_drum for n in t.notes]


def _instrument_f1(clip: dict, gt, pm) -> float | None:
    """Instrument-aware note F1 of the exported MIDI ``pm`` (bench.families); None where the
    clip's truth notes have no families (not a mix)."""
    from bench import families

    fams = families.note_families(clip, gt)
    if fams is None:
        return None
    est, est_fams = families.midi_notes_with_families(pm)
    prf = families.instrument_prf(gt, fams, est, est_fams)
    return None if prf is None else prf[2]


def evaluate_clip(clip: dict, engines: list[str], keep_figures: bool) -> dict:
    """Every codec on one clip; returns ``{clip..., rows: {codec: row}}``."""
    import numpy as np
    import pretty_midi
    import pyloudnorm
    import soundfile as sf

    from bench import codecs, metrics
    from bench.bp import transcribe
    from bench.dataset import load_drums, load_notes

    t_clip = time.perf_counter()
    name = clip["name"]
    dur = float(clip["duration_s"])
    ref = load_mono(clip["audio"])
    ref_lr = load_stereo(clip["audio"]) if clip.get("group") == STEREO_GROUP else None
    gt = load_notes(clip)
    drum_gt = load_drums(clip)
    rows: dict[str, dict] = {}
    ref_cache: dict = {}  # reference features, reused by every codec of this clip
    fig_dir = FIG_CACHE / name
    if keep_figures:
        shutil.rmtree(fig_dir, ignore_errors=True)
        fig_dir.mkdir(parents=True, exist_ok=True)

    def f1(est):
        return metrics.note_f1(gt, [(a, b, c) for a, b, c, *_ in est]) if gt is not None else None

    def audio_row(codec: str, wav: str, **extra) -> dict:
        row = dict(status="ok", **extra)
        try:
            est = load_mono(wav)
            row["decoded_s"] = len(est) / metrics.SR
            row["mel"] = metrics.mel_distance(ref, est, ref_cache=ref_cache)
            row["chroma"] = metrics.chroma_similarity(ref, est, ref_cache=ref_cache)
            if ref_lr is not None:
                # each decoded channel against the same channel of the original; then the
                # decoded downmix on both channels (what a mono decoding would score)
                est_lr = load_stereo(wav)
                row["mel_lr"] = float(np.mean([metrics.mel_distance(ref_lr[:, k], est_lr[:, k])
                                               for k in (0, 1)]))
                row["mel_lr_downmix"] = float(np.mean([metrics.mel_distance(ref_lr[:, k], est)
                                                       for k in (0, 1)]))
            if gt is not None:
                notes, _ = transcribe(wav)
                prf = metrics.note_prf(gt, [(a, b, c) for a, b, c, _ in notes])
                row["rt_p"], row["rt_r"], row["rt_f1"] = prf if prf else (None, None, None)
            if drum_gt is not None:
                row["rt_drum_f1"] = metrics.drum_onset_f1(drum_gt, detected_drums(est))
            if keep_figures:
                shutil.copyfile(wav, figure_wav(name, codec))
        except Exception as e:  # noqa: BLE001
            row.update(status="error", error=f"metrics: {type(e).__name__}: {e}"[:300])
        return row

    def speeds(row: dict, enc_wall, dec_wall, enc_rss, dec_rss) -> dict:
        row.update(enc_wall_s=enc_wall, dec_wall_s=dec_wall, enc_rss_mb=enc_rss, dec_rss_mb=dec_rss,
                   enc_x_rt=metrics.realtime_factor(dur, enc_wall) if enc_wall else None,
                   dec_x_rt=metrics.realtime_factor(dur, dec_wall) if dec_wall else None)
        return row

    with tempfile.TemporaryDirectory(prefix=f"bench-{slug(name)}-") as tmpd:
        work = Path(tmpd)

        # original + plain pipeline (basic-pitch of the original, cached)
        plain = cached_plain_encode(clip)
        orig = dict(status="ok", kbps=metrics.bitrate_kbps(Path(clip["audio"]).stat().st_size, dur),
                    mel=0.0, chroma=1.0)
        if drum_gt is not None:
            # the drum detector on the original: what the encoder's drum track can reach
            orig["drum_f1"] = orig["rt_drum_f1"] = metrics.drum_onset_f1(drum_gt, detected_drums(ref))
        if plain.get("status") == "ok" and gt is not None:
            notes = json.loads((Path(plain["dir"]) / "notes.json").read_text())
            prf = metrics.note_prf(gt, [(a, b, c) for a, b, c, _ in notes])
            orig["rt_p"], orig["rt_r"], orig["rt_f1"] = prf if prf else (None, None, None)
        if keep_figures:
            shutil.copyfile(clip["audio"], figure_wav(name, ORIGINAL))
        rows[ORIGINAL] = orig

        # semcodec
        sc = codecs.run_semcodec(Path(clip["audio"]), work, engines)
        enc = sc["encode"]
        score_f1 = inst_f1 = None
        score_error = sc.get("export_error")
        if sc.get("export_midi") and gt is not None:
            try:
                pm = pretty_midi.PrettyMIDI(sc["export_midi"])
                est = [(n.start, n.end, n.pitch) for i in pm.instruments if not i.is_drum for n in i.notes]
                score_f1 = metrics.note_f1(gt, est)
                inst_f1 = _instrument_f1(clip, gt, pm)
            except Exception as e:  # noqa: BLE001
                score_error = f"export midi unreadable: {e}"[:300]
        drum_f1 = None
        if drum_gt is not None and enc.get("status") == "ok":
            try:
                drum_f1 = metrics.drum_onset_f1(drum_gt, smc_drum_notes(enc["path"]))
            except Exception as e:  # noqa: BLE001
                score_error = f"drum track unreadable: {e}"[:300]
        for e in engines:
            er = sc["engines"][e]
            if enc.get("status") == "ok" and er.get("status") == "ok":
                row = audio_row(semcodec_row(e), er["wav"], bytes=enc["bytes"],
                                kbps=metrics.bitrate_kbps(enc["bytes"], dur), score_f1=score_f1,
                                inst_f1=inst_f1, drum_f1=drum_f1, part_bytes=enc.get("parts", {}))
                if score_error:
                    row["score_error"] = score_error
                speeds(row, enc["wall_s"], er["wall_s"], enc["rss_mb"], er["rss_mb"])
            else:
                row = dict(status=er.get("status", "error"), error=er.get("error"), stderr=er.get("stderr"))
            rows[semcodec_row(e)] = row

        # the default decoding without the residual: the file's bytes less its RESD chunk
        nr = sc.get("no_residual")
        if nr is not None:
            if nr.get("status") == "ok":
                pure_bytes = enc["bytes"] - enc.get("parts", {}).get("RESD", 0)
                row = audio_row(NO_RESIDUAL, nr["wav"], bytes=pure_bytes,
                                kbps=metrics.bitrate_kbps(pure_bytes, dur), score_f1=score_f1,
                                drum_f1=drum_f1)
                speeds(row, enc["wall_s"], nr["wall_s"], enc["rss_mb"], nr["rss_mb"])
            else:
                row = dict(status=nr.get("status", "error"), error=nr.get("error"))
            rows[NO_RESIDUAL] = row

        # the same mix as one track, no drums
        if clip.get("group") in ONE_TRACK_GROUPS and "neural" in engines:
            one = codecs.run_semcodec(Path(clip["audio"]), work / "one", ["neural"], ONE_TRACK_ARGS)
            enc1, er1 = one["encode"], one["engines"]["neural"]
            if enc1.get("status") == "ok" and er1.get("status") == "ok":
                f1_1 = inst_1 = None
                if one.get("export_midi") and gt is not None:
                    pm1 = pretty_midi.PrettyMIDI(one["export_midi"])
                    f1_1 = metrics.note_f1(gt, [(n.start, n.end, n.pitch) for i in pm1.instruments
                                                if not i.is_drum for n in i.notes])
                    inst_1 = _instrument_f1(clip, gt, pm1)
                row = audio_row(ONE_TRACK, er1["wav"], bytes=enc1["bytes"],
                                kbps=metrics.bitrate_kbps(enc1["bytes"], dur), score_f1=f1_1,
                                inst_f1=inst_1)
                speeds(row, enc1["wall_s"], er1["wall_s"], enc1["rss_mb"], er1["rss_mb"])
            else:
                row = dict(status="error", error=enc1.get("error") or er1.get("error"))
            rows[ONE_TRACK] = row

        # Opus
        for k in codecs.OPUS_KBPS:
            r = codecs.run_opus(Path(clip["audio"]), work, k)
            if r["status"] == "ok":
                row = audio_row(OPUS.format(k), r["wav"], bytes=r["bytes"],
                                kbps=metrics.bitrate_kbps(r["bytes"], dur))
                speeds(row, r["enc_wall_s"], r["dec_wall_s"], r["enc_rss_mb"], r["dec_rss_mb"])
            else:
                row = r
            rows[OPUS.format(k)] = row

        # plain pipeline
        if plain.get("status") == "ok":
            wav = work / "plain.wav"
            d = codecs.plain_decode(Path(plain["dir"]) / "plain.mid.gz", wav)
            if d["status"] == "ok":
                kb = metrics.bitrate_kbps(plain["bytes"], dur)
                row = audio_row(PLAIN, str(wav), bytes=plain["bytes"], kbps=kb,
                                enc_cached=plain.get("cached", False))
                speeds(row, plain["wall_s"], d["wall_s"], plain["rss_mb"], d["rss_mb"])
                rows[PLAIN] = row
                try:
                    y = load_mono(wav)
                    meter = pyloudnorm.Meter(metrics.SR)
                    l_ref = meter.integrated_loudness(ref)
                    l_dec = meter.integrated_loudness(y)
                    if not (np.isfinite(l_ref) and np.isfinite(l_dec)):
                        raise ValueError(f"loudness not finite (ref {l_ref}, decoded {l_dec})")
                    lm = work / "plain_lm.wav"
                    sf.write(str(lm), y * 10 ** ((l_ref - l_dec) / 20), metrics.SR, subtype="FLOAT")
                    row = audio_row(PLAIN_LM, str(lm), bytes=plain["bytes"], kbps=kb,
                                    gain_db=float(l_ref - l_dec), enc_cached=plain.get("cached", False))
                    speeds(row, plain["wall_s"], d["wall_s"], plain["rss_mb"], d["rss_mb"])
                    rows[PLAIN_LM] = row
                except Exception as e:  # noqa: BLE001
                    rows[PLAIN_LM] = dict(status="error", error=f"loudness match: {e}"[:300])
            else:
                rows[PLAIN] = d
                rows[PLAIN_LM] = dict(d)
        else:
            rows[PLAIN] = plain
            rows[PLAIN_LM] = dict(plain)

    out = dict(clip)
    out["n_notes"] = len(gt) if gt is not None else None
    out["n_drum_hits"] = len(drum_gt) if drum_gt is not None else None
    out["rows"] = rows
    out["eval_wall_s"] = time.perf_counter() - t_clip
    return out


def _evaluate_safe(clip: dict, engines: list[str], keep_figures: bool) -> dict:
    try:
        return evaluate_clip(clip, engines, keep_figures)
    except Exception as e:  # noqa: BLE001
        out = dict(clip)
        out["rows"] = {}
        out["error"] = f"{type(e).__name__}: {e}\n{traceback.format_exc()[-1500:]}"
        return out


def _worker_init() -> None:
    os.environ.setdefault("BENCH_ORT_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")


def figure_clip_names(clips: list[dict]) -> list[str]:
    names = {c["name"] for c in clips}
    out = []
    for cands in FIGURE_CLIPS:
        for n in cands:
            if n in names:
                out.append(n)
                break
    if not out and clips:
        out.append(clips[0]["name"])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.run", description="semcodec benchmark")
    ap.add_argument("--jobs", type=int, default=int(os.environ.get("BENCH_JOBS", "2")),
                    help="clips evaluated in parallel (default 2)")
    ap.add_argument("--clips", nargs="*", default=None,
                    help="only clips whose name contains one of these substrings (development)")
    ap.add_argument("--no-report", action="store_true", help="print the tables, write nothing (development)")
    ap.add_argument("--report-only", action="store_true",
                    help="regenerate the report and figures from the existing results.json")
    ap.add_argument("--speed-runs", type=int, default=None,
                    help="rounds of the speed comparison with Opus (bench/speed.py; default "
                         "$BENCH_SPEED_RUNS or 3; 0 skips it)")
    ap.add_argument("--docs", type=Path, default=None,
                    help="write BENCHMARKS.md and bench/ here instead of docs/ (development)")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    started = dt.datetime.now(dt.timezone.utc)

    from tqdm import tqdm

    from bench import codecs, dataset, report, speed

    if args.report_only:
        report.rewrite_from_results(args.docs)
        return 0
    info = report.run_info(argv_display=_command_line(argv), started=started)  # commit before we write
    info["loadavg_start"] = os.getloadavg()[0]
    CACHE.mkdir(exist_ok=True)
    clips = dataset.build()
    if args.clips:
        clips = [c for c in clips if any(s in c["name"] for s in args.clips)]
    if not clips:
        print("bench: no clips", file=sys.stderr)
        return 1
    engines, how = codecs.semcodec_engines()
    info["jobs"] = args.jobs
    info["engines"] = engines
    info["engines_from"] = how
    print(f"bench: {len(clips)} clips, semcodec engines {engines} ({how}), {args.jobs} workers",
          file=sys.stderr)
    figs = set(figure_clip_names(clips))

    results: dict[str, dict] = {}
    ctx = mp.get_context("spawn")
    # longest clips first, so the pool drains evenly
    order = sorted(clips, key=lambda c: -c["duration_s"])
    with cf.ProcessPoolExecutor(max_workers=max(1, args.jobs), mp_context=ctx,
                                initializer=_worker_init) as ex:
        futs = {ex.submit(_evaluate_safe, c, engines, c["name"] in figs): c for c in order}
        with tqdm(total=len(futs), desc="clips", unit="clip", file=sys.stderr) as bar:
            for f in cf.as_completed(futs):
                c = futs[f]
                try:
                    results[c["name"]] = f.result()
                except Exception as e:  # noqa: BLE001  (a dead worker)
                    results[c["name"]] = dict(c, rows={}, error=f"{type(e).__name__}: {e}")
                bar.set_postfix_str(c["name"][:28])
                bar.update(1)
    per_clip = [results[c["name"]] for c in clips]
    # whole processes one at a time, after the pool: nothing else of the benchmark runs then
    runs = speed.RUNS if args.speed_runs is None else args.speed_runs
    if runs > 0:
        info["speed"] = speed.run(clips, runs)
    info["bench_wall_s"] = time.perf_counter() - t0
    ru_self, ru_kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    info["bench_cpu_s"] = ru_self.ru_utime + ru_self.ru_stime + ru_kids.ru_utime + ru_kids.ru_stime
    info["loadavg_end"] = os.getloadavg()[0]
    info["codecs"] = codec_order(engines)
    info["figure_clips"] = sorted(figs, key=lambda n: [c["name"] for c in clips].index(n))
    if not args.no_report:
        report.write_all(info, per_clip, docs=args.docs)
    else:
        report.print_tables(info, per_clip)
    total = time.perf_counter() - t0
    print(f"bench: total time {total / 60:.1f} min ({total:.0f} s)", file=sys.stderr)
    return 0


def _command_line(argv) -> str:
    args = sys.argv[1:] if argv is None else list(argv)
    base = "make bench" if os.environ.get("MAKELEVEL") and not args else ".venv/bin/python -m bench.run"
    return " ".join([base] + args)


if __name__ == "__main__":
    sys.exit(main())
