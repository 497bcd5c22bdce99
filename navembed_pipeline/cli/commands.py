"""`navembed` command line. Every command has --help; errors print one line and exit non-zero."""

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from navembed_pipeline.cli import run_commands, stack_commands
from navembed_pipeline.lib.errors import NavembedError

LOGGER = logging.getLogger("navembed.cli")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `navembed` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except NavembedError as exc:
        print(f"navembed: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("navembed: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="navembed", description="Sonic features for Navidrome: embed a "
                                     "library with music models into Milvus, serve search and recommendations.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for register in _REGISTRARS:
        register(commands)
    return parser


# ----- embed -------------------------------------------------------------------------------------
def _register_embed(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("embed", help="print the vector(s) of one audio file",
                              description="Embed one file with one model and print its vector(s). A CUE "
                                          "sheet beside the file (same name, .cue) splits it into tracks.")
    cmd.add_argument("path", type=Path, help="audio file (FLAC, MP3, OGG/Opus, WAV, M4A/AAC)")
    cmd.add_argument("--model", default="dsp", help="muq | mert | latent | dsp (default: dsp)")
    cmd.add_argument("--segment", metavar="START:END", help="only this part, in seconds (END may be empty)")
    cmd.add_argument("--json", action="store_true", help="print JSON with the full vectors")
    cmd.add_argument("--device", default="auto", help="auto | cuda | cpu")
    cmd.add_argument("--models-dir", type=Path, default=None, help="where downloaded weights live")
    cmd.set_defaults(handler=_embed)


def _embed(args: argparse.Namespace) -> int:
    from navembed_pipeline.lib.engine import embed_file
    from navembed_pipeline.lib.models import ModelOptions, create_model

    model = create_model(args.model, ModelOptions(device=args.device, models_dir=args.models_dir))
    try:
        result = embed_file(model, args.path, segment=_parse_segment(args.segment))
    finally:
        model.shutdown()
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.path}: model {result['model']}, {result['dimension']} dimensions")
    for seg in result["segments"]:
        head = ", ".join(f"{v:+.4f}" for v in seg["embedding"][:6])
        print(f"  #{seg['index']} {seg['title']!r} at {seg['offset_seconds']:.1f}s "
              f"for {seg['duration_seconds']:.1f}s: [{head}, ...]")
    return 0


def _parse_segment(text: str | None) -> tuple[float, float | None] | None:
    if not text:
        return None
    start, _, end = text.partition(":")
    try:
        begin = float(start or 0)
        finish = float(end) if end else None
    except ValueError:
        raise NavembedError(f"--segment must look like START:END in seconds, got {text!r}") from None
    if begin < 0 or (finish is not None and finish <= begin):
        raise NavembedError(f"--segment END must be after START and START >= 0, got {text!r}")
    return begin, (finish - begin if finish is not None else None)


# ----- sample-library --------------------------------------------------------------------------
def _register_sample_library(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("sample-library", help="write a small generated music library + navidrome.db",
                              description="Write generated tracks in several formats, a CUE album, a "
                                          "near-duplicate pair, one corrupt file and a navidrome.db with "
                                          "Navidrome's real schema pointing at them.")
    cmd.add_argument("dir", type=Path, help="target directory (created)")
    cmd.add_argument("--seconds", type=float, default=20.0, help="length of each generated track")
    cmd.set_defaults(handler=_sample_library)


def _sample_library(args: argparse.Namespace) -> int:
    from navembed_pipeline.sample_data.sample_library import write_sample_library

    summary = write_sample_library(args.dir, seconds=args.seconds)
    print(f"sample library in {summary.root}: {summary.track_count} tracks "
          f"({summary.format_summary}), navidrome.db at {summary.db_path}")
    return 0


# ----- models ----------------------------------------------------------------------------------
def _register_models(commands: argparse._SubParsersAction) -> None:
    cmd = commands.add_parser("models", help="list models or download their weights",
                              description="List the models, or download weights (an explicit act: "
                                          "MuQ-MuLan, MERT and Music2Latent weights are CC BY-NC 4.0).")
    sub = cmd.add_subparsers(title="actions", metavar="ACTION")
    listing = sub.add_parser("list", help="models, dimensions, weights present?")
    listing.add_argument("--models-dir", type=Path, default=None)
    listing.set_defaults(handler=_models_list)
    download = sub.add_parser("download", help="download weights into --models-dir",
                              description="Download the weights of the named deep models (default: all) "
                                          "from the Hugging Face hub into --models-dir.")
    download.add_argument("names", nargs="*", help="muq mert latent (default: all three)")
    download.add_argument("--models-dir", type=Path, required=True, help="target directory")
    download.add_argument("--yes", action="store_true", help="accept the licences without asking")
    download.set_defaults(handler=_models_download)


def _models_list(args: argparse.Namespace) -> int:
    from navembed_pipeline.lib.models import MODEL_NAMES, model_class, weights_present

    for name in MODEL_NAMES:
        cls = model_class(name)
        present = weights_present(cls.weights_repos, args.models_dir)
        print(f"{name:7} {cls.sample_rate:>6} Hz  weights: {'present' if present else 'missing':8} "
              f"licence: {cls.licence}")
    return 0


def _models_download(args: argparse.Namespace) -> int:
    from navembed_pipeline.lib.models import DEEP_MODEL_NAMES, download, model_class

    names = args.names or list(DEEP_MODEL_NAMES)
    for name in names:
        cls = model_class(name)
        if not cls.weights_repos:
            print(f"{name}: no weights needed")
            continue
        print(f"{name}: {', '.join(cls.weights_repos)}\n  licence: {cls.licence}")
        if not args.yes and input("  download and accept this licence? [y/N] ").strip().lower() != "y":
            print("  skipped")
            continue
        for repo in cls.weights_repos:
            print(f"  -> {download(repo, args.models_dir)}")
    return 0


_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [
    _register_embed, _register_sample_library, _register_models,
    run_commands.register_reembed, run_commands.register_demo,
    stack_commands.register_up, stack_commands.register_api, stack_commands.register_milvus,
]

