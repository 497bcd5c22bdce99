"""Suggest a name for an uploaded file: from its tags, or from an OpenAI-compatible chat endpoint.

Nothing here touches the file; the name goes back to Navidrome as ``renamedFile``. A failing or
slow endpoint never blocks the upload: the call has a timeout, and on any failure the tag-based
(or original) name is used and the reason reported.
"""

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mutagen

from navembed_pipeline.lib.library import safe_file_name

LOGGER = logging.getLogger("navembed.api.rename")
REASONING_LEVELS = ("low", "medium", "high")  # sent as reasoning_effort; "default" sends nothing
_JSON_OBJECT = re.compile(r"\{.*\}", re.DOTALL)
SYSTEM_PROMPT = ("You rename uploaded music files. Answer ONLY with compact JSON: {\"title\": \"...\"}, "
                 "a concise, listener-friendly 'Artist - Title' without a file extension.")


@dataclass(frozen=True)
class RenameRequest:
    """What the upload's settings ask for."""

    enabled: bool
    use_metadata: bool
    endpoint: str = ""
    model: str = ""
    prompt: str = ""
    reasoning_level: str = "default"


@dataclass(frozen=True)
class RenameResult:
    name: str
    error: str | None = None


def read_tags(path: Path) -> dict[str, str]:
    """Title, artist, album, track number and date from the file's tags ({} when unreadable)."""
    try:
        audio = mutagen.File(path, easy=True)
    except (mutagen.MutagenError, OSError):
        return {}
    if audio is None or not audio.tags:
        return {}
    tags: dict[str, str] = {}
    for key in ("title", "artist", "album", "tracknumber", "date", "genre"):
        values = audio.tags.get(key) or []
        text = str(values[0]).strip() if values else ""
        if text:
            tags[key] = text
    return tags


def tag_name(tags: dict[str, str]) -> str | None:
    """``Artist - Title`` when the tags have both, else the title alone, else None."""
    title, artist = tags.get("title"), tags.get("artist")
    if title and artist:
        return f"{artist} - {title}"
    return title


def safe_name(text: str, *, fallback: str = "track", is_title: bool = True) -> str:
    """A title (or, with ``is_title=False``, a client-given name) as a safe file name (the one sanitiser)."""
    return safe_file_name(text, fallback=fallback, is_title=is_title)


class Renamer:
    """Produces ``renamedFile``; ``api_key`` is sent as a bearer token to the chat endpoint."""

    def __init__(self, *, timeout: float, api_key: str | None = None,
                 transport: httpx.BaseTransport | None = None) -> None:
        self.timeout = timeout
        self.api_key = api_key
        self._transport = transport

    def rename(self, name: str, request: RenameRequest, *, music_file: Path) -> RenameResult:
        """The new file name (keeping ``name``'s extension), or ``name`` when renaming is off.

        Whatever the source (the client's ``name``, tags, a chat model), the answer is one safe file
        name: never a path, ``..``, a NUL byte or a control character (``safe_name``).
        """
        original = safe_name(name, fallback=safe_name(music_file.name, is_title=False), is_title=False)
        if not request.enabled:
            return RenameResult(original)
        name = original
        suffix = Path(name).suffix
        tags = read_tags(music_file) if request.use_metadata else {}
        fallback = tag_name(tags)
        if request.endpoint and request.model:
            try:
                title = self._ask(Path(name).stem, tags, request)
                return RenameResult(safe_name(title) + suffix)
            except (httpx.HTTPError, ValueError, KeyError, TypeError, IndexError) as exc:
                error = f"rename via {request.endpoint} failed ({type(exc).__name__}: {exc}); kept " + \
                        ("the tag-based name" if fallback else "the original name")
                LOGGER.warning(error)
                return RenameResult(safe_name(fallback) + suffix if fallback else name, error)
        if fallback:
            return RenameResult(safe_name(fallback) + suffix)
        return RenameResult(name)

    def _ask(self, stem: str, tags: dict[str, str], request: RenameRequest) -> str:
        lines = [f"Uploaded file name: {stem}"]
        if tags:
            lines.append("Tags (may be wrong, treat as hints): " + json.dumps(tags, ensure_ascii=False))
        system = SYSTEM_PROMPT + (f" Additional requirements: {request.prompt.strip()}" if request.prompt.strip()
                                  else "")
        body: dict[str, Any] = {"model": request.model, "temperature": 0.2,
                                "messages": [{"role": "system", "content": system},
                                             {"role": "user", "content": "\n".join(lines)}]}
        if request.reasoning_level in REASONING_LEVELS:
            body["reasoning_effort"] = request.reasoning_level
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        with httpx.Client(timeout=self.timeout, transport=self._transport) as http:
            response = http.post(chat_url(request.endpoint), json=body, headers=headers)
            response.raise_for_status()
            content = response.json()["choices"][0]["message"]["content"]
        title = parse_title(content)
        if not title:
            raise ValueError(f"the answer holds no title: {str(content)[:200]!r}")
        return title


def chat_url(endpoint: str) -> str:
    """Accept a base URL, a ``/v1`` URL or the full ``/v1/chat/completions`` URL."""
    base = endpoint.strip().rstrip("/")
    if base.endswith("/chat/completions"):
        return base
    if base.endswith("/v1"):
        return f"{base}/chat/completions"
    return f"{base}/v1/chat/completions"


def parse_title(content: object) -> str | None:
    """The ``title`` of a JSON answer (possibly wrapped in prose), else the plain text's first line."""
    if not isinstance(content, str):
        return None
    match = _JSON_OBJECT.search(content)
    if match:
        try:
            parsed = json.loads(match.group(0))
            if isinstance(parsed, dict) and isinstance(parsed.get("title"), str):
                return parsed["title"].strip() or None
        except ValueError:
            pass
    first = content.strip().splitlines()[0].strip() if content.strip() else ""
    return first or None
