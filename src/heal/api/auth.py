"""Bearer-token authentication, scope and role checks.

Two kinds of token, both compared as SHA-256 hashes and never stored plain:
``HEAL_API_TOKENS`` (service tokens for Alertmanager and automation: the scopes their
entry names, ``ingest`` by default; they never sign approvals) and per-user tokens made
with ``heal users token new NAME`` (the user's role and groups, the scopes the role
allows or fewer; refused once revoked or expired, or when the user is disabled).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from heal.domain.access import Scope, token_refusal
from heal.domain.approvals import Role, Signer, person
from heal.engine.engine import utcnow
from heal.settings import hash_token
from heal.store import users_repo

_bearer = HTTPBearer(
    auto_error=False, description="a token from HEAL_API_TOKENS or `heal users token new NAME`"
)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Signer:
    """Who is calling: a user (from their token) or a service token."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing or invalid bearer token")
    presented = hash_token(credentials.credentials)
    heal = request.app.state.heal
    # Compare against every hash so timing does not reveal which one was close.
    service_scopes: frozenset[Scope] | None = None
    for known, scopes in heal.token_hashes.items():
        if hmac.compare_digest(presented, known):
            service_scopes = scopes
    if service_scopes is not None:
        name = "token:" + presented.removeprefix("sha256:")[:8]
        return Signer(name, Role.ADMIN, frozenset(), service=True, scopes=service_scopes)
    async with heal.db.read() as connection:
        token = await users_repo.token_of(connection, presented)
    if token is None:
        raise _unauthorized("missing or invalid bearer token")
    refused = token_refusal(
        token["name"],
        disabled=token["disabled"],
        revoked_at=token["revoked_at"],
        expires_at=token["expires_at"],
        now=utcnow(),
    )
    if refused is not None:
        raise _unauthorized(refused)
    narrowed = token["scopes"]
    return person(token, None if narrowed is None else frozenset(map(Scope, narrowed)))


def allowed(scope: Scope, role: Role) -> Callable[..., object]:
    """A dependency: the caller's token has ``scope`` and (a person's) role is ``role``+."""

    async def check(caller: Annotated[Signer, Depends(authenticate)]) -> Signer:
        if not caller.may(scope):
            raise HTTPException(
                status.HTTP_403_FORBIDDEN, f"{caller.name}'s token lacks the {scope} scope"
            )
        if caller.role < role:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"{caller.name} is {caller.role.a_label}; this needs {role.label} or above",
            )
        return caller

    return check


# Whoever presented a valid token; signing checks the rest (people only, role, scope).
Caller = Annotated[Signer, Depends(authenticate)]
Viewer = Annotated[Signer, Depends(allowed(Scope.READ, Role.VIEWER))]
Ingester = Annotated[Signer, Depends(allowed(Scope.INGEST, Role.OPERATOR))]
Operator = Annotated[Signer, Depends(allowed(Scope.OPERATE, Role.OPERATOR))]
# What the playbook tier may propose (approve, edit, import, delete a playbook) is an
# approver's call, as signing an approval is.
Curator = Annotated[Signer, Depends(allowed(Scope.OPERATE, Role.APPROVER))]
