"""API keys on requests: ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``, checked
against the store's hashed keys. No key, or one that is unknown, wrong or revoked: 401; a key
without the scope the route needs: 403. The key never reaches a log line (its id may)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Annotated

from fastapi import HTTPException, Request, Security, status
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from streams.store import ApiKey, ApiScope, Store
from streams.store.api_keys import parse_key

log = logging.getLogger(__name__)

_HOW = "send it as `Authorization: Bearer <key>` or `X-API-Key: <key>` (`vigil api keys create`)"

bearer = HTTPBearer(
    auto_error=False, scheme_name="bearer", bearerFormat="vgl_<id>_<secret>",
    description="An API key as a bearer token (`vigil api keys create NAME --scope read|write`).")
api_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, scheme_name="apiKey",
    description="The same API key in the X-API-Key header.")


def store_of(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail,
                         headers={"WWW-Authenticate": "Bearer"})


def requires(scope: ApiScope) -> Callable[..., ApiKey]:
    """A dependency: the request's API key, when it has ``scope``."""

    def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
        header: Annotated[str | None, Security(api_key_header)],
    ) -> ApiKey:
        key = header or (credentials.credentials if credentials is not None else None)
        client = request.client.host if request.client else "?"
        if not key:
            raise _unauthorized(f"an API key is needed: {_HOW}")
        found = store_of(request).api_keys.verify(key)
        if found is None:
            parsed = parse_key(key)
            log.warning("refused API key %s from %s: unknown, wrong or revoked",
                        parsed[0] if parsed else "(malformed)", client)
            raise _unauthorized("invalid or revoked API key")
        if not found.scope.allows(scope):
            log.warning("API key %s (%r) from %s lacks scope %s for %s %s", found.key_id,
                        found.name, client, scope.value, request.method, request.url.path)
            raise HTTPException(status.HTTP_403_FORBIDDEN,
                                f"this key's scope is {found.scope.value}; this needs "
                                f"{scope.value} (create a key with --scope {scope.value})")
        return found

    return check


read_key = requires(ApiScope.READ)
write_key = requires(ApiScope.WRITE)
