"""What people do with playbooks (API and CLI alike): list, show, approve, deprecate,
edit, delete, and move them between installations as YAML.

An export carries each playbook's signature, text, action, params, status and stats; an
import creates the ones missing and replaces the fields of those already there (matched
by signature, action and params), so importing the same file twice changes nothing.
"""

from __future__ import annotations

import io
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.domain.bounds import storable_text
from heal.domain.playbooks import PlaybookStatus, Signature, params_key
from heal.store import playbooks_repo as repo

Row = dict[str, Any]
EXPORT_KIND = "heal/playbooks"
COUNT_MAX = 10**9
PARAMS_MAX = 50


def _storable(value: str) -> str:
    return storable_text(value)


def _params(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > PARAMS_MAX:
        raise ValueError(f"at most {PARAMS_MAX} params")
    for key, item in value.items():
        storable_text(key, "a param's name")
        if isinstance(item, str):
            storable_text(item, f"param {key}")
        elif isinstance(item, int) and not isinstance(item, bool) and abs(item) > COUNT_MAX:
            raise ValueError(f"param {key} is out of range")
        elif not isinstance(item, str | int | float | bool) and item is not None:
            raise ValueError(f"param {key}: a playbook's params are plain values")
    return value


Text = Annotated[str, AfterValidator(_storable)]
Name = Annotated[Text, Field(min_length=1, max_length=200)]
LongText = Annotated[Text, Field(max_length=2000)]
Label = Annotated[Text, Field(min_length=1, max_length=200)]
Params = Annotated[dict[str, Any], AfterValidator(_params)]
Count = Annotated[int, Field(ge=0, le=COUNT_MAX)]


class PlaybookNotFound(Exception):
    pass


class PlaybookInvalid(ValueError):
    """An edit or import that cannot be applied; the message says why in plain words."""


def view(row: Row) -> Row:
    """A playbook as the API and ``--json`` show it."""
    return {
        "id": row["id"],
        "name": row["name"],
        "status": row["status"],
        "signature": row["signature"],
        "signature_key": row["signature_key"],
        "annotation_text": row["annotation_text"],
        "action": row["action_name"],
        "params": row["params"],
        "runs": row["runs"],
        "verified_successes": row["verified_successes"],
        "rejections": row["rejections"],
        "lower_bound": round(row["lower_bound"], 4),
        "mttr_seconds": row["mttr_seconds"],
        "learned_from_incident": row["learned_from"],
        "last_used_at": _iso(row["last_used_at"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "version": row["version"],
    }


async def listing(
    connection: AsyncConnection,
    *,
    status: PlaybookStatus | None = None,
    action: str | None = None,
    after_id: int = 0,
    limit: int = 100,
) -> list[Row]:
    rows = await repo.page(
        connection,
        status=status.value if status else None,
        action_name=action,
        after_id=after_id,
        limit=limit,
    )
    return [view(row) for row in rows]


async def show(connection: AsyncConnection, playbook_id: int) -> Row:
    row = await repo.get(connection, playbook_id)
    if row is None:
        raise PlaybookNotFound(f"playbook {playbook_id} not found")
    return view(row)


async def set_status(
    connection: AsyncConnection, playbook_id: int, status: PlaybookStatus, now: datetime
) -> Row:
    row = await repo.set_values(
        connection, playbook_id, {"status": status.value, "updated_at": now}
    )
    if row is None:
        raise PlaybookNotFound(f"playbook {playbook_id} not found")
    return view(row)


class PlaybookEdit(BaseModel):
    """What an edit may change; unset fields stay."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: Name | None = None
    """A name people recognise."""
    annotation_text: LongText | None = None
    """The text similar alerts' annotations are compared with."""
    params: Params | None = None
    """The action's params the playbook proposes (checked again when proposed)."""
    status: PlaybookStatus | None = None
    """draft, approved or deprecated."""


async def edit(
    connection: AsyncConnection, playbook_id: int, changes: PlaybookEdit, now: datetime
) -> Row:
    values: Row = {"updated_at": now}
    if changes.name is not None:
        values["name"] = changes.name
    if changes.annotation_text is not None:
        values["annotation_text"] = changes.annotation_text
    if changes.params is not None:
        values["params"] = changes.params
        values["params_key"] = params_key(changes.params)
    if changes.status is not None:
        values["status"] = changes.status.value
    try:
        row = await repo.set_values(connection, playbook_id, values)
    except repo.PlaybookConflict as exc:
        raise PlaybookInvalid(
            f"{exc} already has this signature, action and params; edit or delete that one"
        ) from None
    if row is None:
        raise PlaybookNotFound(f"playbook {playbook_id} not found")
    return view(row)


async def delete(connection: AsyncConnection, playbook_id: int) -> None:
    if not await repo.delete_playbook(connection, playbook_id):
        raise PlaybookNotFound(f"playbook {playbook_id} not found")


class SignatureRecord(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    alertname: Name
    """The alert's name."""
    severity: Annotated[Text, Field(max_length=50)] = ""
    """The incident's severity."""
    labels: Annotated[dict[Label, Label], Field(max_length=50)] = Field(default_factory=dict)
    """The stable labels."""


class PlaybookRecord(BaseModel):
    """One playbook of an export file."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    name: Name
    """A name people recognise."""
    signature: SignatureRecord
    """The symptoms it fixes."""
    annotation_text: LongText = ""
    """The text similar alerts' annotations are compared with."""
    action: Name
    """The action it proposes, by name."""
    params: Params = Field(default_factory=dict)
    """The action's params."""
    status: PlaybookStatus = PlaybookStatus.DRAFT
    """draft, approved or deprecated."""
    runs: Count = 0
    """Runs counted."""
    verified_successes: Count = 0
    """Runs whose effectiveness was 4 or 5."""
    rejections: Count = 0
    """Proposals people rejected."""
    mttr_seconds: Annotated[float, Field(ge=0, le=1e10, allow_inf_nan=False)] | None = None
    """Mean seconds from an incident's opening to its resolution."""

    @model_validator(mode="after")
    def _successes_within_runs(self) -> PlaybookRecord:
        if self.verified_successes > self.runs:
            raise ValueError(
                f"verified_successes ({self.verified_successes}) is more than runs ({self.runs})"
            )
        return self


class PlaybookImport(BaseModel):
    """An export file's content."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    kind: Literal["heal/playbooks"] = "heal/playbooks"
    """What the file holds."""
    playbooks: Annotated[list[PlaybookRecord], Field(max_length=10_000)]
    """The playbooks."""


def export_yaml(rows: list[Row]) -> str:
    records = [
        {
            "name": row["name"],
            "signature": row["signature"],
            "annotation_text": row["annotation_text"],
            "action": row["action"],
            "params": row["params"],
            "status": row["status"],
            "runs": row["runs"],
            "verified_successes": row["verified_successes"],
            "rejections": row["rejections"],
            "mttr_seconds": row["mttr_seconds"],
        }
        for row in rows
    ]
    stream = io.StringIO()
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.dump({"kind": EXPORT_KIND, "playbooks": records}, stream)
    return stream.getvalue()


def parse_yaml(text: str) -> list[PlaybookRecord]:
    try:
        document = YAML(typ="safe", pure=True).load(text)
    except YAMLError as exc:
        raise PlaybookInvalid(f"not YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(document, dict) or document.get("kind") != EXPORT_KIND:
        raise PlaybookInvalid(f"not a playbook export (kind: {EXPORT_KIND} expected)")
    items = document.get("playbooks") or []
    if not isinstance(items, list):
        raise PlaybookInvalid("playbooks: a list expected")
    records = []
    for number, item in enumerate(items, 1):
        try:
            records.append(PlaybookRecord.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "playbook"
            raise PlaybookInvalid(f"playbook {number}: {where}: {first['msg']}") from None
    return records


async def import_records(
    connection: AsyncConnection, records: list[PlaybookRecord], now: datetime
) -> tuple[int, int]:
    """(created, updated)."""
    created = updated = 0
    for record in records:
        signature = Signature(
            record.signature.alertname, record.signature.severity, record.signature.labels
        )
        values: Row = {
            "name": record.name,
            "signature_key": signature.key,
            "signature": signature.as_record(),
            "alertname": signature.alertname,
            "annotation_text": record.annotation_text,
            "action_name": record.action,
            "params": record.params,
            "params_key": params_key(record.params),
            "status": record.status.value,
            "runs": record.runs,
            "verified_successes": record.verified_successes,
            "rejections": record.rejections,
            "mttr_seconds": record.mttr_seconds,
            "mttr_samples": record.runs if record.mttr_seconds is not None else 0,
            "updated_at": now,
        }
        found = await repo.find_merge(
            connection, values["signature_key"], values["action_name"], values["params_key"]
        )
        if found is None:
            await repo.insert_playbook(connection, {**values, "created_at": now})
            created += 1
        else:
            await repo.set_values(connection, found["id"], values)
            updated += 1
    return created, updated


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
