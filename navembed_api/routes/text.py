"""``/embed_text``: a text prompt into a model's joint audio-text space, or into MusiCNN's tag space."""

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from navembed_api.deps import ServicesDep
from navembed_api.errors import Unprocessable
from navembed_api.routes import ModelName
from navembed_api.recommender import tag_vocabulary
from navembed_pipeline.lib.recommend import TAGS_MODEL, TEXT_MODEL, InvalidRequestError, TagVocabulary, UnknownTagError

router = APIRouter(tags=["text"])
MAX_TEXT_CHARS = 2000


class EmbedTextRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, examples=["upbeat dance music"])
    model: ModelName | None = Field(
        None, description="muq (MuQ-MuLan's text tower) or musicnn (the text read as its tags). Left out: "
                          "muq when its weights are here, else musicnn.")


@router.post("/embed_text", responses={422: {"description": "unknown model, a model without a text tower, or "
                                                            "(musicnn) a word that is no tag: the body lists "
                                                            "the vocabulary"},
                                       503: {"description": "the model's weights are not on this machine"}})
def embed_text(body: EmbedTextRequest, services: ServicesDep) -> dict[str, Any]:
    """Embed ``text`` with MuQ-MuLan's text tower (the 512-d space of the stored ``mulan`` vectors), or,
    with ``musicnn`` (the default when MuQ-MuLan's weights are absent), read it as MusiCNN tags: the
    vector weighs the wanted tags +1/n and the avoided ones -1/m, in the order of the stored ``tags``.

    Models without a text tower answer 422; a zero vector is never returned as a result.
    """
    if not body.text.strip():
        raise Unprocessable("text is blank")
    name = body.model or ("muq" if services.models.weights_present("muq") else TAGS_MODEL)
    if name == TAGS_MODEL:
        return _tag_vector(body.text, TagVocabulary(tag_vocabulary(services.settings.model_options)))
    model = services.models.get(name)
    vector = model.embed_text([body.text])[0]  # TextNotSupportedError -> 422 for models without text
    return {"embedding": [float(x) for x in vector], "model": name, "dimension": int(vector.shape[0]),
            "is_stub": False}


def _tag_vector(text: str, vocabulary: TagVocabulary) -> dict[str, Any]:
    try:
        query = vocabulary.parse(text)
    except UnknownTagError as exc:
        raise Unprocessable(str(exc), unknown=list(exc.unknown), vocabulary=list(exc.vocabulary)) from exc
    except InvalidRequestError as exc:
        raise Unprocessable(str(exc)) from exc
    vector = vocabulary.weights(query.positive) if query.positive else 0.0
    vector = vector - (vocabulary.weights(query.negative) if query.negative else 0.0)
    return {"embedding": [float(x) for x in vector], "model": TAGS_MODEL, "dimension": len(vocabulary.names),
            "is_stub": False, "text_model": TEXT_MODEL,
            "tags": {"wanted": list(query.positive), "avoided": list(query.negative)}}
