"""Bearer-token authentication and role checks.

Two kinds of token, both compared as SHA-256 hashes and never stored plain:
``HEAL_API_TOKENS`` (service tokens for Alertmanager and automation; admin role) and
per-user tokens made with ``heal users token NAME`` (the user's role and groups).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from heal.domain.approvals import Role, Signer
from heal.settings import hash_token
from heal.store import users_repo

_bearer = HTTPBearer(
    auto_error=False, description="a token from HEAL_API_TOKENS or `heal users token NAME`"
)


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Signer:
    """Who is calling: a user (from their token) or a service token (admin)."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        presented = hash_token(credentials.credentials)
        heal = request.app.state.heal
        # Compare against every hash so timing does not reveal which one was close.
        matched = False
        for known in heal.token_hashes:
            matched |= hmac.compare_digest(presented, known)
        if matched:
            return Signer("token:" + presented.removeprefix("sha256:")[:8], Role.ADMIN, frozenset())
        async with heal.db.read() as connection:
            user = await users_repo.by_token_hash(connection, presented)
        if user is not None:
            return Signer(user["name"], Role.parse(user["role"]), frozenset(user["groups"]))
    raise HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail="missing or invalid bearer token",
        headers={"WWW-Authenticate": "Bearer"},
    )


def at_least(role: Role) -> Callable[..., object]:
    async def check(caller: Annotated[Signer, Depends(authenticate)]) -> Signer:
        if caller.role < role:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"{caller.name} is {caller.role.a_label}; this needs {role.label} or above",
            )
        return caller

    return check


Viewer = Annotated[Signer, Depends(at_least(Role.VIEWER))]
Operator = Annotated[Signer, Depends(at_least(Role.OPERATOR))]
