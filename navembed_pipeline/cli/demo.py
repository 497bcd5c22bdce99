"""`navembed demo` (what `make demo` runs): the whole product on a generated library, end to end.

1. write the sample library (real audio files and a Navidrome-schema database);
2. start the embedded stack — Milvus Lite, the Dagster webserver, the API — on 127.0.0.1;
3. start the main job through the API (``POST /batch/start``) with the models this machine has
   (``dsp`` plus every model whose weights are present: musicnn's are installed by ``make setup``,
   and dsp + musicnn are embedded by one step that decodes each file once), *then* start the Dagster
   daemon, so the queued run is the one that embeds the library (the change sensor's first tick sees
   it and waits);
4. draw a progress bar from ``GET /batch/progress?run_id=…`` until the run ends;
5. print the MusiCNN tags stored for a few tracks (when musicnn ran), ask the API for a
   similar-track playlist (and a text search when muq is enabled), and the upload socket whether an
   MP3 re-encode of a library track is a duplicate;
6. ask for alice's "For you" mix (``GET /playlist/for-you``), then write the sonic mixes (library
   clusters, and per user from the sample's listening history) as M3U8 playlists into
   ``library/music/navembed`` and say how Navidrome would import them;
7. stop the stack — or keep it running with ``--keep`` until Ctrl-C.

Every step checks what it gets; anything unexpected raises ``DemoFailed`` (exit status 1).
"""

import json
import secrets
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from tqdm import tqdm

from navembed_pipeline.lib.errors import NavembedError

POLL_S = 0.5
RUN_TIMEOUT_S = 1800.0
TERMINAL = ("completed", "completed_with_errors", "failed", "cancelled")
TEXT_PROMPT = "calm solo piano"
PLAYLIST_SIZE = 5
PLAYLISTS_SUBDIR = "navembed"  # inside the sample's "Music" library: ND_PLAYLISTSPATH=navembed
FOR_YOU_USER = "alice"
TAGGED_TRACKS = 4  # tracks whose MusiCNN tags the demo prints
TOP_TAGS = 3


class DemoFailed(NavembedError):
    """The demo saw something other than what a healthy install produces."""


@dataclass(frozen=True)
class DemoOptions:
    root: Path
    seconds: float = 20.0
    dagster_port: int | None = None  # None: 3000 when free, else any free port
    api_port: int | None = None  # None: 9002 when free, else any free port
    keep: bool = False


def run_demo(options: DemoOptions, *, say: Callable[[str], None] = print) -> int:
    from navembed_api.settings import ApiSettings
    from navembed_pipeline.cli.stack_commands import sigterm_as_interrupt
    from navembed_pipeline.lib.settings import Settings
    from navembed_pipeline.sample_data.sample_library import write_sample_library
    from navembed_pipeline.stack import Stack

    root = options.root.resolve()
    say(f"==> writing the sample library to {root / 'library'}")
    library = write_sample_library(root / "library", seconds=options.seconds)
    say(f"    {library.track_count} tracks ({library.format_summary}); navidrome.db: {library.db_path}")
    token = secrets.token_urlsafe(24)
    # A short private directory: a unix socket path must stay under ~100 bytes, whatever --dir is.
    socket_dir = Path(tempfile.mkdtemp(prefix="navembed-demo-"))
    settings = ApiSettings(
        data_dir=root / "data", navidrome_db=library.db_path, music_root=library.root, milvus_uri="",
        admin_token=token, socket_path=socket_dir / "upload.sock",
        playlists_dir=library.root / "music" / PLAYLISTS_SUBDIR,
        # the install's weights (what `make setup` downloaded), not the demo's fresh data folder
        models_dir=Settings().weights_dir.resolve(),
        dagster_port=_port(options.dagster_port, 3000, "Dagster UI", say),
        api_port=_port(options.api_port, 9002, "API", say))
    models = settings.enabled_models()
    say(f"==> starting the stack (Milvus Lite, Dagster webserver, API) under {settings.data_dir.resolve()}")
    stack = Stack(settings)
    with sigterm_as_interrupt():
        try:
            urls = stack.start(daemon=False)
            for line in urls.lines():
                say(f"    {line}")
            with httpx.Client(base_url=urls.api, headers={"Authorization": f"Bearer {token}"},
                              timeout=60) as api:
                run = _start_run(api, models, say)
                stack.start_daemon()  # it dequeues and launches the run
                final = _follow(api, run["run_id"], stack)
                _check_run(final, models, library, say)
                seed = _seed(library)
                if "musicnn" in models:
                    _musicnn_tags(settings, seed, say)
                _similar(api, seed, say)
                _upload_duplicate(settings.socket_path, library.duplicate_pair[1], seed, say)
                if "muq" in models:
                    _text_search(api, say)
                _for_you(api, say)
                _write_mixes(settings, library, models, say)
                say(f"==> Dagster run (logs, per-bucket tables): {run['dagster_run_url']}")
                if options.keep:
                    say("==> the stack keeps running; admin token for /batch/* and the Dagster UI "
                        "(sign in at /login): " + token)
                    say("    Ctrl-C stops it (`make up` runs it again on this library)")
                    died = stack.wait()
                    raise DemoFailed(f"{died} exited; see {stack.log_dir}/{died}.log")
        except KeyboardInterrupt:
            if not options.keep:
                raise
        finally:
            say("==> stopping the stack")
            stack.stop()
            shutil.rmtree(socket_dir, ignore_errors=True)
    say("==> demo finished")
    return 0


def _port(wanted: int | None, default: int, what: str, say: Callable[[str], None]) -> int:
    from navembed_pipeline.stack import free_port, port_in_use

    if wanted is not None:
        return wanted
    if not port_in_use("127.0.0.1", default):
        return default
    port = free_port()
    say(f"    port {default} is taken (is `navembed up` running?); the demo's {what} uses {port}")
    return port


def _start_run(api: httpx.Client, models: list[str], say: Callable[[str], None]) -> dict[str, Any]:
    say(f"==> POST /batch/start {{\"models\": {json.dumps(models)}, \"force\": true}}  (a full re-embed; deep "
        "models join once their weights are downloaded: navembed models download)")
    body = _ok(api.post("/batch/start", json={"models": models, "force": True}), "/batch/start")
    if body.get("status") != "started":
        raise DemoFailed(f"/batch/start answered {body}")
    say(f"    started job {body['job_id']} (Dagster run {body['run_id']}); the Dagster daemon launches it")
    return body


def _follow(api: httpx.Client, run_id: str, stack: Any) -> dict[str, Any]:
    """Poll ``/batch/progress`` for ``run_id`` and draw it until the run ends; the last answer."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    bar: tqdm | None = None
    try:
        while time.monotonic() < deadline:
            answer = _ok(api.get("/batch/progress", params={"run_id": run_id}), "/batch/progress")
            total = int(answer.get("total_tracks") or 0)
            if bar is None and total:
                bar = tqdm(total=total, desc="embedding", unit="track", dynamic_ncols=True,
                           bar_format="{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} tracks "
                                      "[{elapsed}{postfix}]")
            if bar is not None:
                bar.n = int(answer.get("processed_tracks") or 0)
                bar.set_postfix_str(_postfix(answer), refresh=False)
                bar.refresh()
            if answer["status"] in TERMINAL:
                return answer
            died = stack.exited()
            if died:
                raise DemoFailed(f"{died} exited during the run; see {stack.log_dir}/{died}.log")
            time.sleep(POLL_S)
    finally:
        if bar is not None:
            bar.close()
    raise DemoFailed(f"run {run_id} did not finish within {RUN_TIMEOUT_S:.0f} s")


def _postfix(answer: dict[str, Any]) -> str:
    """ETA (from the API's estimated_completion), rate, failures and the model now running."""
    parts = []
    eta = answer.get("estimated_completion")
    if answer["status"] not in TERMINAL:
        parts.append(f"ETA {max(0, round(eta - time.time()))} s" if eta else "ETA …")
    if answer.get("tracks_per_second"):
        parts.append(f"{answer['tracks_per_second']:.1f} tracks/s")
    running = [m for m, e in (answer.get("models") or {}).items() if e["status"] == "running"]
    if running:
        parts.append(f"model {running[0]}")
    parts.append(f"failed {answer.get('failed_tracks', 0)}")
    return ", ".join(parts)  # tqdm puts ", " before it


def _check_run(final: dict[str, Any], models: list[str], library: Any, say: Callable[[str], None]) -> None:
    """The run must have embedded every track but the sample library's deliberately corrupt one."""
    if final["status"] not in ("completed", "completed_with_errors"):
        raise DemoFailed(f"the run ended {final['status']}: {final.get('error') or final}")
    say(f"==> run {final['status']} in {(final['finished_at'] or 0) - (final['started_at'] or 0):.1f} s: "
          f"{final['total_tracks']} tracks")
    for model, entry in final["models"].items():
        say(f"    {model:>6}: embedded {entry['embedded']}, skipped {entry['skipped']} (unchanged), "
              f"failed {entry['failed']}")
    expected = library.track_count - 1
    bad = {m: e for m, e in final["models"].items()
           if e["failed"] != 1 or e["embedded"] + e["skipped"] != expected}
    if bad or set(final["models"]) != set(models):
        raise DemoFailed(f"expected {expected} tracks embedded and 1 failed per model ({', '.join(models)}); "
                         f"got {final['models']}")
    say(f"    the failure is expected: {library.corrupt_path.name} is deliberately corrupt "
          "(recorded as failed; the run went on)")


def _seed(library: Any) -> Any:
    from navembed_pipeline.lib.library import NavidromeLibrary

    tracks = {str(t.path): t for t in NavidromeLibrary(library.db_path).tracks()}
    return tracks[str(library.duplicate_pair[0])]


def _musicnn_tags(settings: Any, seed: Any, say: Callable[[str], None]) -> None:
    """The top MusiCNN tags stored for the seed and a few other tracks (read from the running store)."""
    from navembed_pipeline.lib.library import NavidromeLibrary
    from navembed_pipeline.lib.models import tag_names
    from navembed_pipeline.lib.store import VectorStore, running_uri

    names = tag_names(settings.musicnn_variant)
    tracks = [seed, *[t for t in NavidromeLibrary(settings.navidrome_db).tracks() if t.id != seed.id]]
    store = VectorStore(settings.milvus_uri or running_uri(settings.milvus_data_dir))
    try:
        stored = store.get_vectors("musicnn", [t.id for t in tracks], "tags")
    finally:
        store.close()
    shown = [t for t in tracks if t.id in stored][:TAGGED_TRACKS]
    if not shown:
        raise DemoFailed("musicnn ran but no track has stored tags")
    say(f"==> MusiCNN tags ({settings.musicnn_variant}, top {TOP_TAGS} of {len(names)}, mean over 3-s patches):")
    for track in shown:
        scores = stored[track.id].mean(axis=0)  # a CUE album's segments: their mean
        top = np.argsort(-scores)[:TOP_TAGS]
        say(f"    {track.display_name}: " + ", ".join(f"{names[i]} {scores[i]:.2f}" for i in top))


def _similar(api: httpx.Client, seed: Any, say: Callable[[str], None]) -> None:
    playlist = _ok(api.get(f"/similar/{seed.id}", params={"size": PLAYLIST_SIZE}), "/similar")
    say(f"==> GET /similar/{seed.id}: tracks that sound like {seed.display_name!r} "
        f"({', '.join(playlist['models'])})")
    _print_tracks(playlist, say)
    if not playlist["tracks"]:
        raise DemoFailed("the similar-track playlist is empty")


def _text_search(api: httpx.Client, say: Callable[[str], None]) -> None:
    body = {"prompts": [TEXT_PROMPT], "size": PLAYLIST_SIZE}
    playlist = _ok(api.post("/playlist/text", json=body), "/playlist/text")
    say(f"==> POST /playlist/text {{\"prompts\": [{TEXT_PROMPT!r}]}} (muq text tower):")
    _print_tracks(playlist, say)
    if not playlist["tracks"]:
        raise DemoFailed("the text search found nothing")


def _for_you(api: httpx.Client, say: Callable[[str], None]) -> None:
    playlist = _ok(api.get("/playlist/for-you", params={"user": FOR_YOU_USER, "size": PLAYLIST_SIZE}),
                   "/playlist/for-you")
    say(f"==> GET /playlist/for-you?user={FOR_YOU_USER}: near the {_count(len(playlist['seeds']), 'track')} they "
        f"play and star most, leaving out {_count(playlist['left_out_recent_plays'], 'recent play')}")
    _print_tracks(playlist, say)
    if not playlist["tracks"]:
        raise DemoFailed(f"{FOR_YOU_USER}'s For you mix is empty")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _write_mixes(settings: Any, library: Any, models: list[str], say: Callable[[str], None]) -> None:
    """Build the sonic mixes as the ``sonic_mixes`` asset does, from the running store."""
    from datetime import UTC, datetime

    from navembed_pipeline.lib.library import NavidromeHistory, NavidromeLibrary, playlist_file_name
    from navembed_pipeline.lib.models import tag_names
    from navembed_pipeline.lib.recommend import MixOptions, Recommender, VectorCache, build_and_write
    from navembed_pipeline.lib.store import VectorStore, ensure_running

    store = VectorStore(ensure_running(settings.milvus_data_dir))
    cache = VectorCache(store, background=False)
    try:
        tracks = NavidromeLibrary(library.db_path)
        engine = Recommender(cache, tracks.get, default_models=models, tag_names=tag_names(settings.musicnn_variant))
        run = build_and_write(engine, tracks, NavidromeHistory(library.db_path), settings.mixes_dir,
                              now=datetime.now(UTC), options=MixOptions(size=min(settings.mix_size, 10)))
    finally:
        cache.close()
        store.close()
    folder = run.report.directory
    say(f"==> sonic mixes: {len(run.mixes)} playlists ({run.users} of {run.users_total} users have listening "
        f"history) written to {folder}")
    written = {path.name for path in run.report.written}
    for mix in run.mixes:
        if playlist_file_name(mix.slug) in written:
            say(f"    {playlist_file_name(mix.slug)}: {mix.title} ({_count(len(mix.track_ids), 'track')})")
    music = library.root / "music"
    say(f"    Navidrome finds them on its next scan with ND_MUSICFOLDER={music} and "
        f"ND_PLAYLISTSPATH={folder.relative_to(music)} (the folder lies inside its 'Music' library); "
        "the sonic_mixes asset rewrites them after every run")
    if not run.report.written or run.users != 3:
        raise DemoFailed(f"expected mixes for the sample's 3 listeners, got {run.users} and {run.report}")


def _upload_duplicate(socket_path: Path, upload: Path, seed: Any, say: Callable[[str], None]) -> None:
    """Ask the upload socket about the seed's MP3 re-encode, as Navidrome does for an upload."""
    request = {"music_file": str(upload), "name": upload.name,
               "settings": {"similaritySearchEnabled": True, "dedupThreshold": 0.85}}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(120)
        client.connect(str(socket_path))
        client.sendall(json.dumps(request).encode() + b"\n")
        client.shutdown(socket.SHUT_WR)
        with client.makefile("rb") as reply:
            answer = json.loads(reply.readline() or b"{}")
    say(f"==> upload socket {socket_path}: is {upload.name!r} already in the library?")
    if answer.get("status") != "ok" or seed.display_name not in (answer.get("duplicates") or []):
        raise DemoFailed(f"the upload socket did not flag the MP3 re-encode of {seed.display_name!r}: {answer}")
    say(f"    yes: duplicate of {', '.join(map(repr, answer['duplicates']))} (the same recording, re-encoded)")


def _print_tracks(playlist: dict[str, Any], say: Callable[[str], None]) -> None:
    for number, track in enumerate(playlist["tracks"], 1):
        say(f"    {number}. {track['score']:+.3f}  {track['artist']} - {track['title']}  [{track['album']}]")
    for note in playlist.get("notes") or ():
        say(f"    note: {note}")


def _ok(response: httpx.Response, what: str) -> dict[str, Any]:
    if response.status_code != 200:
        raise DemoFailed(f"{what} answered {response.status_code}: {response.text[:500]}")
    return response.json()
