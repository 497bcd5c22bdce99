"""What routes depend on: the services the lifespan created, and the admin check."""

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from navembed_api.batch import BatchControl
from navembed_api.dagster_client import DagsterClient
from navembed_api.errors import ControlDisabled, Unauthorized
from navembed_api.model_pool import ModelPool
from navembed_api.settings import ApiSettings
from navembed_api.socket_server import UploadSocketServer
from navembed_api.store_handle import StoreHandle


@dataclass
class Services:
    """Everything the app owns between startup and shutdown."""

    settings: ApiSettings
    dagster: DagsterClient
    batch: BatchControl
    models: ModelPool
    store: StoreHandle
    socket: UploadSocketServer | None = None
    uploads: Any = None  # the UploadService behind the socket (its duplicate finder shares the recommender's vectors)


def get_services(request: Request) -> Services:
    return request.app.state.services


_bearer = HTTPBearer(auto_error=False, description="NAVEMBED_ADMIN_TOKEN")


def require_admin(services: Annotated[Services, Depends(get_services)],
                  credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Admin endpoints need ``Authorization: Bearer <NAVEMBED_ADMIN_TOKEN>``; with no token set they are off."""
    expected = services.settings.admin_token_value
    if expected is None:
        raise ControlDisabled("the batch endpoints are disabled: no admin token is configured. Set "
                              "NAVEMBED_ADMIN_TOKEN and send it as 'Authorization: Bearer <token>'")
    given = credentials.credentials if credentials else ""
    if not hmac.compare_digest(given.encode(), expected.encode()):
        raise Unauthorized("missing or wrong admin token (send 'Authorization: Bearer <NAVEMBED_ADMIN_TOKEN>')")


ServicesDep = Annotated[Services, Depends(get_services)]
AdminDep = Depends(require_admin)
