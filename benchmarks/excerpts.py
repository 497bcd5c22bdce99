"""Per-track CPU of the dsp job's work, split by stage, analysing whole tracks vs dsp's excerpts (issue 25).

On real files the tuning never saw (``benchmarks/unseen.py``, the first ``--tracks``), one thread, CPU
seconds (``time.thread_time``, so other load on the machine moves them little), per track:

- ``whole``: what every run did before excerpts: decode the whole track to 22.05 kHz mono (the codec,
  downmix and resampling), its Chromaprint fingerprint, dsp over every second of it;
- ``first run (whole)``: decode whole and fingerprint (a file with no fingerprint yet; before the
  print was capped), dsp over its excerpts;
- ``first run``: as shipped, ``worker.decode_track`` with dsp's plan and a fingerprint wanted: a long
  track's first ``HEAD_SECONDS`` decoded for its capped print (``capped_print``), the excerpts past them
  sought, dsp over the excerpts;
- ``re-embed``: a file that has its fingerprint (a model change, a forced run): only the excerpts are
  decoded (``worker.decode_track`` with dsp's plan), dsp over them.

Also reported: the cosine between each track's vector from its excerpts decoded alone and from the
whole decode (the two ways a run may take), and the codec alone (decoding at the file's own rate).
usage: python -m benchmarks.excerpts [--tracks 24]
"""

import argparse
import time
from datetime import datetime

import numpy as np


def main(argv: list[str] | None = None) -> None:
    import torch

    from benchmarks.unseen import unseen_library
    from navembed_pipeline.lib.duplicates.chromaprint import fingerprint_pcm
    from navembed_pipeline.lib.engine.worker import decode_track
    from navembed_pipeline.lib.library.audio import decode_audio, load_audio
    from navembed_pipeline.lib.library.navidrome import Track
    from navembed_pipeline.lib.models.dsp import DspModel
    from navembed_pipeline.lib.models.options import ModelOptions

    class WholeDsp(DspModel):
        excerpts = None  # every second, as before

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tracks", type=int, default=24, help="files of the unseen library")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    excerpts, whole = DspModel(ModelOptions(device="cpu")), WholeDsp(ModelOptions(device="cpu"))
    for model in (excerpts, whole):
        model.embed([np.zeros(5 * model.sample_rate, np.float32)])
    rate, plan = excerpts.sample_rate, excerpts.excerpts
    keys = ("codec", "decode", "fingerprint", "dsp_whole", "dsp_excerpts", "decode_excerpts", "decode_first")
    totals, audio, cosines = dict.fromkeys(keys, 0.0), 0.0, []
    print(f"{'file':<8}{'audio s':>8}" + "".join(f"{k:>16}" for k in keys) + f"{'cosine':>10}")
    for index, file in enumerate(unseen_library(args.tracks)):
        track = Track(str(index), file.path, file.title, "Benchmark", file.album, "Benchmark", file.duration_seconds,
                      file.path.stat().st_size, datetime.now(), 1, "Benchmark", file.path.suffix.lstrip("."))
        row = {}
        cpu = time.thread_time()
        decode_audio(file.path, sample_rate=None, mono=True)
        row["codec"] = time.thread_time() - cpu
        cpu = time.thread_time()
        wave = load_audio(file.path, rate, duration_seconds=file.duration_seconds)
        row["decode"] = time.thread_time() - cpu
        cpu = time.thread_time()
        fingerprint_pcm(wave, rate)
        row["fingerprint"] = time.thread_time() - cpu
        cpu = time.thread_time()
        whole.embed([wave])
        row["dsp_whole"] = time.thread_time() - cpu
        cpu = time.thread_time()
        from_whole = excerpts.embed([wave])[0].embedding
        row["dsp_excerpts"] = time.thread_time() - cpu
        cpu = time.thread_time()
        alone = decode_track(track, rate, False, plan)
        row["decode_excerpts"] = time.thread_time() - cpu
        cpu = time.thread_time()
        printed = decode_track(track, rate, True, plan)  # decode + capped print, as a first run does
        row["decode_first"] = time.thread_time() - cpu
        assert printed.prints, printed.error or printed.print_error
        cosines.append(float(from_whole @ excerpts.embed(alone.waves)[0].embedding))
        cosines.append(float(from_whole @ excerpts.embed(printed.waves)[0].embedding))
        audio += len(wave) / rate
        for key in keys:
            totals[key] += row[key]
        print(f"{file.path.suffix:<8}{len(wave) / rate:>8.0f}" + "".join(f"{row[k]:>16.2f}" for k in keys)
              + f"{min(cosines[-2:]):>10.5f}", flush=True)
    t = totals
    before = t["decode"] + t["fingerprint"] + t["dsp_whole"]
    first_whole = t["decode"] + t["fingerprint"] + t["dsp_excerpts"]
    first = t["decode_first"] + t["dsp_excerpts"]
    again = t["decode_excerpts"] + t["dsp_excerpts"]
    print(f"\n{args.tracks} files, {audio / 60:.0f} audio-minutes; CPU seconds per audio-minute: "
          + ", ".join(f"{k} {60 * v / audio:.3f}" for k, v in t.items()))
    print(f"whole (before):        {before:7.2f} CPU s")
    print(f"first run, whole print: {first_whole:6.2f} CPU s  ({first_whole / before:.2f} of before)")
    print(f"first run (excerpts):  {first:7.2f} CPU s  ({first / before:.2f} of before)   2-min print + excerpts")
    print(f"re-embed (excerpts):   {again:7.2f} CPU s  ({again / before:.2f} of before)")
    print(f"cosine, excerpts decoded (alone or with the print's head) vs cut from the whole decode: min {min(cosines):.5f}, "
          f"median {float(np.median(cosines)):.5f}")


if __name__ == "__main__":
    main()
