"""``heal users …``: people, their roles, groups, API tokens and chat identities."""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Any

import typer
from rich.table import Table
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from heal.cli.common import (
    DatabaseUrl,
    JsonOutput,
    make_settings,
    open_database,
    require_schema,
    run,
)
from heal.cli.console import CliError, examples, group, out, print_json
from heal.domain.approvals import Role
from heal.engine.engine import utcnow
from heal.settings import hash_token
from heal.store import users_repo


async def existing_user(connection: AsyncConnection, name: str) -> dict[str, Any]:
    """The user named ``name``, or a CLI error that says how to find or add one."""
    user = await users_repo.by_name(connection, name)
    if user is None:
        raise CliError(
            f"no user named {name!r}",
            hint="`heal users list` shows them; `heal users add NAME --role ...` adds one.",
        )
    return user


app = group("Users, roles and tokens.")
ROLES = ", ".join(r.label for r in Role)


class RoleName(StrEnum):
    """--role (tests check it lists every Role)."""

    VIEWER = Role.VIEWER.label
    OPERATOR = Role.OPERATOR.label
    APPROVER = Role.APPROVER.label
    ADMIN = Role.ADMIN.label


@app.command(
    "add",
    epilog=examples(
        "heal users add alice --role approver --group dba --telegram 123456789",
        "heal users add bob --role operator",
    ),
)
def add(
    name: str,
    role: RoleName = typer.Option(
        RoleName.VIEWER, case_sensitive=False, help="What the user may do."
    ),
    group: list[str] = typer.Option([], "--group", "-g", help="Approver group; repeatable."),
    telegram: str | None = typer.Option(None, help="Telegram user id, to approve from chat."),
    slack: str | None = typer.Option(None, help="Slack user id, to approve from chat."),
    database_url: DatabaseUrl = None,
) -> None:
    """Add a user (name, role, groups, chat identities)."""
    try:
        Role.parse(role)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--role") from None
    settings = make_settings(database_url=database_url)

    async def work() -> None:
        async with open_database(settings) as db:
            await require_schema(db)
            try:
                async with db.write() as connection:
                    user_id = await users_repo.add(connection, name, role.lower(), group, utcnow())
                    for provider, external in (("telegram", telegram), ("slack", slack)):
                        if external:
                            await users_repo.link_chat(connection, user_id, provider, external)
            except IntegrityError:
                raise CliError(f"a user named {name!r} exists already") from None

    run(work(), settings.database_url)
    out().print(
        f"added {name} ({role.lower()}" + (f", groups {', '.join(group)}" if group else "") + ")"
    )


@app.command("list", epilog=examples("heal users list", "heal users list --json"))
def list_users(database_url: DatabaseUrl = None, as_json: JsonOutput = False) -> None:
    """Every user with role, groups and linked chat identities."""
    settings = make_settings(database_url=database_url)

    async def work() -> list[tuple[dict[str, object], list[str]]]:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.read() as connection:
                found = []
                for user in await users_repo.all_users(connection):
                    links = await users_repo.chat_identities_of(connection, int(user["id"]))
                    found.append((user, [f"{c['provider']}:{c['external_id']}" for c in links]))
                return found

    rows = run(work(), settings.database_url)
    if as_json:
        print_json([{**user, "chat": links} for user, links in rows])
        return
    table = Table("name", "role", "groups", "chat", "disabled")
    for user, links in rows:
        groups = user["groups"]
        table.add_row(
            str(user["name"]),
            str(user["role"]),
            ", ".join(groups) if isinstance(groups, list) else "",
            ", ".join(links) or "-",
            "yes" if user["disabled"] else "",
        )
    out().print(table if rows else "no users yet: `heal users add NAME --role approver`")


@app.command("token", epilog=examples("heal users token alice --label laptop"))
def token(
    name: str,
    label: str = typer.Option("cli", help="What the token is for."),
    database_url: DatabaseUrl = None,
) -> None:
    """Make an API token for a user. It is shown once; only its hash is stored."""
    settings = make_settings(database_url=database_url)
    value = secrets.token_urlsafe(32)

    async def work() -> None:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.write() as connection:
                user = await existing_user(connection, name)
                await users_repo.add_token(
                    connection, int(user["id"]), hash_token(value), label, utcnow()
                )

    run(work(), settings.database_url)
    out().print(f"token for {name}: [bold]{value}[/bold]")
    out().print("Send it as `Authorization: Bearer <token>`. It is not shown again.")


@app.command("link", epilog=examples("heal users link alice --telegram 123456789 --slack U0123ABC"))
def link(
    name: str,
    telegram: str | None = typer.Option(None, help="Telegram user id."),
    slack: str | None = typer.Option(None, help="Slack user id."),
    database_url: DatabaseUrl = None,
) -> None:
    """Map chat identities to a user, so their chat buttons count as their signature."""
    if not telegram and not slack:
        raise typer.BadParameter("give --telegram and/or --slack")
    settings = make_settings(database_url=database_url)

    async def work() -> None:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.write() as connection:
                user = await existing_user(connection, name)
                for provider, external in (("telegram", telegram), ("slack", slack)):
                    if external:
                        await users_repo.link_chat(connection, int(user["id"]), provider, external)

    run(work(), settings.database_url)
    out().print(f"linked {name}")
