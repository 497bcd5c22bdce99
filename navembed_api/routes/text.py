"""``/embed_text``: a text prompt into a model's joint audio-text space."""

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from navembed_api.deps import ServicesDep
from navembed_api.errors import Unprocessable
from navembed_api.routes import ModelName

router = APIRouter(tags=["text"])
MAX_TEXT_CHARS = 2000


class EmbedTextRequest(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_TEXT_CHARS, examples=["upbeat dance music"])
    model: ModelName = Field(
        "muq", description="Only models with a text tower can embed text: muq.")


@router.post("/embed_text", responses={422: {"description": "unknown model, or a model without a text tower"},
                                       503: {"description": "the model's weights are not on this machine"}})
def embed_text(body: EmbedTextRequest, services: ServicesDep) -> dict[str, Any]:
    """Embed ``text`` with MuQ-MuLan's text tower (the 512-d space of the stored ``mulan`` vectors).

    Models without a text tower answer 422; a zero vector is never returned as a result.
    """
    if not body.text.strip():
        raise Unprocessable("text is blank")
    model = services.models.get(body.model)
    vector = model.embed_text([body.text])[0]  # TextNotSupportedError -> 422 for models without text
    return {"embedding": [float(x) for x in vector], "model": body.model, "dimension": int(vector.shape[0]),
            "is_stub": False}
