"""``heal users …``: people, their roles, groups, API tokens and chat identities."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from heal.cli import render
from heal.cli.common import (
    DatabaseUrl,
    JsonOutput,
    make_settings,
    open_database,
    require_schema,
    run,
)
from heal.cli.console import CliError, examples, fail, group, out, print_json
from heal.domain.access import Scope, check_user_name, role_scopes, token_refusal
from heal.domain.approvals import Role
from heal.settings import hash_token

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection


async def existing_user(connection: AsyncConnection, name: str) -> dict[str, Any]:
    """The user named ``name``, or a CLI error that says how to find or add one."""
    from heal.store import users_repo

    user = await users_repo.by_name(connection, name)
    if user is None:
        raise CliError(
            f"no user named {name!r}",
            hint="`heal users list` shows them; `heal users add NAME --role ...` adds one.",
        )
    return user


app = group("Users, roles and tokens.")
tokens = group("A user's API tokens: new, list, revoke.")
app.add_typer(tokens, name="token")
ROLES = ", ".join(r.label for r in Role)
SCOPES = ", ".join(s.value for s in Scope)


class RoleName(StrEnum):
    """--role (tests check it lists every Role)."""

    VIEWER = Role.VIEWER.label
    OPERATOR = Role.OPERATOR.label
    APPROVER = Role.APPROVER.label
    ADMIN = Role.ADMIN.label


def _valid_name(name: str) -> str:
    try:
        check_user_name(name)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="NAME") from None
    return name


def duration(text: str, option: str) -> timedelta:
    """``30m``, ``12h``, ``90d`` as a timedelta (a usage error otherwise)."""
    units = {"m": 60, "h": 3600, "d": 86400}
    try:
        seconds = int(text[:-1]) * units[text[-1]]
    except (KeyError, ValueError, IndexError):
        raise typer.BadParameter("a duration like 30m, 12h or 90d", param_hint=option) from None
    if seconds <= 0:
        raise typer.BadParameter("must be positive", param_hint=option)
    return timedelta(seconds=seconds)


async def _link(
    connection: AsyncConnection, user: dict[str, Any], links: dict[str, str], force: bool
) -> None:
    """Link chat identities to ``user``; one that is someone else's moves only with force."""
    from heal.store import users_repo

    for provider, external in links.items():
        try:
            await users_repo.link_chat(connection, int(user["id"]), provider, external, move=force)
        except users_repo.IdentityTaken as taken:
            raise CliError(
                str(taken),
                hint=f"`heal users link {user['name']} --{provider} {external} --force` "
                f"moves it from {taken.owner} to {user['name']}.",
            ) from None


def _chat_links(telegram: str | None, slack: str | None) -> dict[str, str]:
    return {p: e for p, e in (("telegram", telegram), ("slack", slack)) if e}


@app.command(
    "add",
    epilog=examples(
        "heal users add alice --role approver --group dba --telegram 123456789",
        "heal users add bob --role operator",
    ),
)
def add(
    name: str = typer.Argument(..., help="1-64 of a-z, 0-9, '.', '_', '-'; e.g. alice"),
    role: RoleName = typer.Option(
        RoleName.VIEWER, case_sensitive=False, help="What the user may do."
    ),
    group: list[str] = typer.Option([], "--group", "-g", help="Approver group; repeatable."),
    telegram: str | None = typer.Option(None, help="Telegram user id, to approve from chat."),
    slack: str | None = typer.Option(None, help="Slack user id, to approve from chat."),
    database_url: DatabaseUrl = None,
) -> None:
    """Add a user (name, role, groups, chat identities)."""
    from sqlalchemy.exc import IntegrityError

    from heal.engine.engine import utcnow
    from heal.store import users_repo

    _valid_name(name)
    settings = make_settings(database_url=database_url)

    async def work() -> None:
        async with open_database(settings) as db:
            await require_schema(db)
            try:
                async with db.write() as connection:
                    await users_repo.add(connection, name, role.lower(), group, utcnow())
                    user = await existing_user(connection, name)
                    await _link(connection, user, _chat_links(telegram, slack), force=False)
            except IntegrityError:
                raise CliError(f"a user named {name!r} exists already") from None

    run(work(), settings.database_url)
    out().print(
        f"added {name} ({role.lower()}" + (f", groups {', '.join(group)}" if group else "") + ")"
    )


@app.command("list", epilog=examples("heal users list", "heal users list --json"))
def list_users(database_url: DatabaseUrl = None, as_json: JsonOutput = False) -> None:
    """Every user with role, groups and linked chat identities."""
    from heal.store import users_repo

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


def _change_user(name: str, database_url: str | None, change: str) -> None:
    from heal.store import users_repo

    settings = make_settings(database_url=database_url)

    async def work() -> None:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.write() as connection:
                user = await existing_user(connection, name)
                if change == "remove":
                    await users_repo.remove(connection, int(user["id"]))
                else:
                    await users_repo.set_disabled(connection, int(user["id"]), change == "disable")

    run(work(), settings.database_url)


@app.command("disable", epilog=examples("heal users disable alice"))
def disable(name: str, database_url: DatabaseUrl = None) -> None:
    """Stop a user: their tokens and chat buttons are refused until `heal users enable`."""
    _change_user(name, database_url, "disable")
    out().print(f"disabled {name}: their tokens and chat buttons are refused")


@app.command("enable", epilog=examples("heal users enable alice"))
def enable(name: str, database_url: DatabaseUrl = None) -> None:
    """Let a disabled user act again (tokens not revoked or expired work again)."""
    _change_user(name, database_url, "enable")
    out().print(f"enabled {name}")


@app.command("remove", epilog=examples("heal users remove alice"))
def remove(name: str, database_url: DatabaseUrl = None) -> None:
    """Delete a user with their tokens and chat identities (signatures keep their name)."""
    _change_user(name, database_url, "remove")
    out().print(f"removed {name}")


@tokens.command(
    "new",
    epilog=examples(
        "heal users token new alice --label laptop --expires-in 90d",
        "heal users token new alice --scope read",
    ),
)
def token_new(
    name: str,
    label: str = typer.Option("cli", help="What the token is for."),
    expires_in: str | None = typer.Option(
        None, "--expires-in", help="Lifetime, e.g. 12h or 90d [default: until revoked]."
    ),
    scope: list[str] = typer.Option(
        [],
        "--scope",
        help=f"Narrow the token to these scopes, repeatable ({SCOPES}) "
        "[default: all the user's role allows].",
    ),
    database_url: DatabaseUrl = None,
) -> None:
    """Make an API token for a user. It is shown once; only its hash is stored."""
    from heal.engine.engine import utcnow
    from heal.store import users_repo

    lifetime = duration(expires_in, "--expires-in") if expires_in else None
    try:
        scopes = sorted({s for item in scope for s in Scope.parse_list(item, ",")})
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--scope") from None
    settings = make_settings(database_url=database_url)
    value = secrets.token_urlsafe(32)
    now = utcnow()
    expires_at = now + lifetime if lifetime else None

    async def work() -> None:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.write() as connection:
                user = await existing_user(connection, name)
                beyond = set(scopes) - role_scopes(Role.parse(user["role"]))
                if beyond:
                    raise CliError(
                        f"{name} is a {user['role']}, whose tokens cannot have "
                        f"{', '.join(sorted(beyond))}"
                    )
                await users_repo.add_token(
                    connection,
                    int(user["id"]),
                    hash_token(value),
                    label,
                    now,
                    scopes=[s.value for s in scopes] if scopes else None,
                    expires_at=expires_at,
                )

    run(work(), settings.database_url)
    out().print(f"token for {name}: [bold]{value}[/bold]", soft_wrap=True)
    until = f"; it expires at {render.when(expires_at)} UTC" if expires_at else ""
    out().print(f"Send it as `Authorization: Bearer <token>`. It is not shown again{until}.")


@tokens.command(
    "list", epilog=examples("heal users token list alice", "heal users token list alice --json")
)
def token_list(name: str, database_url: DatabaseUrl = None, as_json: JsonOutput = False) -> None:
    """A user's tokens (never the tokens themselves): id, label, scopes, state."""
    from heal.engine.engine import utcnow
    from heal.store import users_repo

    settings = make_settings(database_url=database_url)

    async def work() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.read() as connection:
                user = await existing_user(connection, name)
                return user, await users_repo.tokens_of(connection, int(user["id"]))

    user, rows = run(work(), settings.database_url)
    now = utcnow()
    if as_json:
        print_json([{**row, "state": _token_state(user, row, now)} for row in rows])
        return
    table = Table("id", "label", "scopes", "created (UTC)", "expires (UTC)", "state")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["label"],
            ", ".join(row["scopes"]) if row["scopes"] else f"all of a {user['role']}",
            render.when(row["created_at"]),
            render.when(row["expires_at"]) if row["expires_at"] else "-",
            _token_state(user, row, now),
        )
    out().print(table if rows else f"{name} has no tokens: `heal users token new {name}`")


def _token_state(user: dict[str, Any], token: dict[str, Any], now: datetime) -> str:
    refused = token_refusal(
        user["name"],
        disabled=False,  # said once for the user, in `heal users list`
        revoked_at=token["revoked_at"],
        expires_at=token["expires_at"],
        now=now,
    )
    return "live" if refused is None else refused.removeprefix("this token ")


@tokens.command(
    "revoke",
    epilog=examples("heal users token revoke alice 3", "heal users token revoke alice --all"),
)
def token_revoke(
    name: str,
    token_id: int | None = typer.Argument(
        None, help="The token's id from `heal users token list NAME`.", show_default=False
    ),
    all_tokens: bool = typer.Option(False, "--all", help="Revoke every token of the user."),
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke a user's token (or all with --all): it is refused from now on."""
    from heal.engine.engine import utcnow
    from heal.store import users_repo

    if (token_id is None) == (not all_tokens):
        raise typer.BadParameter("give a token id or --all", param_hint="TOKEN_ID")
    settings = make_settings(database_url=database_url)

    async def work() -> int:
        async with open_database(settings) as db:
            await require_schema(db)
            async with db.write() as connection:
                user = await existing_user(connection, name)
                return await users_repo.revoke_tokens(
                    connection, int(user["id"]), utcnow(), token_id
                )

    revoked = run(work(), settings.database_url)
    if token_id is not None and not revoked:
        fail(f"{name} has no live token {token_id}")
    out().print(f"revoked {revoked} token{'s' if revoked != 1 else ''} of {name}")


@app.command(
    "link",
    epilog=examples(
        "heal users link alice --telegram 123456789 --slack U0123ABC",
        "heal users link alice --telegram 123456789 --force",
    ),
)
def link(
    name: str,
    telegram: str | None = typer.Option(None, help="Telegram user id."),
    slack: str | None = typer.Option(None, help="Slack user id."),
    force: bool = typer.Option(
        False, "--force", help="Move an identity that is linked to another user."
    ),
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
                await _link(connection, user, _chat_links(telegram, slack), force)

    run(work(), settings.database_url)
    out().print(f"linked {name}")
