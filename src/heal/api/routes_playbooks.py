"""Playbooks: what heal learned fixes which symptoms; people approve, deprecate, edit,
delete, and move them between installations (YAML)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, Response, status

from heal.api.auth import Curator, Viewer
from heal.api.schemas import ID_MAX, VALIDATION_ERRORS, IdPath, StoredText
from heal.app import Heal
from heal.decide import playbook_admin as admin
from heal.domain.playbooks import PlaybookStatus

router = APIRouter(prefix="/api/v1", tags=["playbooks"], responses=VALIDATION_ERRORS)
# The YAML document's shape (its items: PlaybookImport's playbooks).
EXPORT_SCHEMA = {
    "type": "object",
    "properties": {"kind": {"type": "string"}, "playbooks": {"type": "array"}},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "no such playbook"}}


@router.get("/playbooks")
async def list_playbooks(
    request: Request,
    _caller: Viewer,
    status_: Annotated[PlaybookStatus | None, Query(alias="status")] = None,
    action: StoredText | None = None,
    after: Annotated[int, Query(ge=0, le=ID_MAX, description="the last id of the page")] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[dict[str, Any]]:
    """Playbooks by id: their signature, action, params, status and stats (runs, verified
    successes, rejections, the lower bound the playbook tier ranks by, MTTR)."""
    heal: Heal = request.app.state.heal
    async with heal.db.read() as connection:
        return await admin.listing(
            connection, status=status_, action=action, after_id=after, limit=limit
        )


@router.get(
    "/playbooks/export",
    response_class=Response,
    responses={200: {"content": {"application/yaml": {"schema": EXPORT_SCHEMA}}}},
)
async def export_playbooks(
    request: Request,
    _caller: Viewer,
    status_: Annotated[PlaybookStatus | None, Query(alias="status")] = None,
) -> Response:
    """Every playbook (of the status) as YAML, for ``POST /playbooks/import`` elsewhere."""
    heal: Heal = request.app.state.heal
    rows: list[dict[str, Any]] = []
    async with heal.db.read() as connection:
        while True:
            page = await admin.listing(
                connection, status=status_, after_id=rows[-1]["id"] if rows else 0, limit=500
            )
            rows += page
            if len(page) < 500:
                break
    return Response(admin.export_yaml(rows), media_type="application/yaml")


@router.post("/playbooks/import")
async def import_playbooks(
    request: Request, body: admin.PlaybookImport, _caller: Curator
) -> dict[str, int]:
    """Create the playbooks missing, replace the fields of those with the same signature,
    action and params (an export's content, as JSON)."""
    heal: Heal = request.app.state.heal
    async with heal.db.write() as connection:
        created, updated = await admin.import_records(
            connection, body.playbooks, heal.engine.clock()
        )
    return {"created": created, "updated": updated}


@router.get("/playbooks/{playbook_id}", responses=NOT_FOUND)
async def show_playbook(request: Request, playbook_id: IdPath, _caller: Viewer) -> dict[str, Any]:
    heal: Heal = request.app.state.heal
    async with heal.db.read() as connection:
        try:
            return await admin.show(connection, playbook_id)
        except admin.PlaybookNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


async def _set_status(
    request: Request, playbook_id: int, new_status: PlaybookStatus
) -> dict[str, Any]:
    heal: Heal = request.app.state.heal
    async with heal.db.write() as connection:
        try:
            return await admin.set_status(connection, playbook_id, new_status, heal.engine.clock())
        except admin.PlaybookNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.post("/playbooks/{playbook_id}/approve", responses=NOT_FOUND)
async def approve_playbook(
    request: Request, playbook_id: IdPath, _caller: Curator
) -> dict[str, Any]:
    """The playbook tier may propose it from now on."""
    return await _set_status(request, playbook_id, PlaybookStatus.APPROVED)


@router.post("/playbooks/{playbook_id}/deprecate", responses=NOT_FOUND)
async def deprecate_playbook(
    request: Request, playbook_id: IdPath, _caller: Curator
) -> dict[str, Any]:
    """Never proposed again; kept with its stats (learning still counts for it)."""
    return await _set_status(request, playbook_id, PlaybookStatus.DEPRECATED)


@router.patch(
    "/playbooks/{playbook_id}",
    responses={**NOT_FOUND, 409: {"description": "another playbook has this key"}},
)
async def edit_playbook(
    request: Request, playbook_id: IdPath, body: admin.PlaybookEdit, _caller: Curator
) -> dict[str, Any]:
    """Change its name, annotation text, params or status."""
    heal: Heal = request.app.state.heal
    async with heal.db.write() as connection:
        try:
            return await admin.edit(connection, playbook_id, body, heal.engine.clock())
        except admin.PlaybookNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
        except admin.PlaybookInvalid as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


@router.delete("/playbooks/{playbook_id}", status_code=204, responses=NOT_FOUND)
async def delete_playbook(request: Request, playbook_id: IdPath, _caller: Curator) -> None:
    """Delete it; the incidents it learned from are not learned again."""
    heal: Heal = request.app.state.heal
    async with heal.db.write() as connection:
        try:
            await admin.delete(connection, playbook_id)
        except admin.PlaybookNotFound as exc:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
