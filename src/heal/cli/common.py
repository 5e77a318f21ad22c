"""Shared plumbing: settings from options and env, running async work, opening the database."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

from heal.cli.console import CliError, fail, show_error, warn
from heal.policy.loader import PolicyError
from heal.settings import Settings
from heal.store import migrate
from heal.store.db import Database

T = TypeVar("T")

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="SQLAlchemy URL of heal's database [default: HEAL_DATABASE_URL, or "
        "sqlite+aiosqlite:///./heal.db]",
        show_default=False,
    ),
]
UPGRADE_HINT = "Create it with `heal db upgrade` (heal serve and heal demo also do it at start)."


def make_settings(**overrides: Any) -> Settings:
    """HEAL_* environment (and .env), with the options the user gave on top."""
    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        lines = ["invalid settings (HEAL_* environment variables or options):"]
        for error in exc.errors():
            where = ".".join(str(part) for part in error["loc"]) or "settings"
            lines.append(f"  HEAL_{where.upper()}: {error['msg']}")
        fail("\n".join(lines), code=2)


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<an invalid URL>"


def policy_problems(error: PolicyError) -> str:
    return "\n".join(f"{error.source}:{problem}" for problem in error.problems)


def run(work: Coroutine[Any, Any, T], database_url: str | None = None) -> T:
    """``asyncio.run`` with expected failures turned into a message and an exit code."""
    where = f" at {safe_url(database_url)}" if database_url else ""
    try:
        return asyncio.run(work)
    except CliError as exc:
        show_error(exc)
        raise typer.Exit(exc.code) from None
    except PolicyError as exc:
        fail(policy_problems(exc), code=2)
    except ArgumentError as exc:
        fail(f"invalid database URL{where}: {exc}", code=2)
    except ImportError as exc:
        fail(f"the database driver is not installed{where}: {exc}", code=2)
    except DBAPIError as exc:
        fail(f"database error{where}: {_first_line(exc.orig)}")
    except SQLAlchemyError as exc:
        fail(f"database error{where}: {_first_line(exc)}")
    except OSError as exc:
        fail(f"cannot reach the database{where}: {exc}")
    except KeyboardInterrupt:
        raise typer.Exit(130) from None


def _first_line(error: BaseException | None) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for other databases and in-memory SQLite)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


@asynccontextmanager
async def open_database(settings: Settings, *, create: bool = False) -> AsyncIterator[Database]:
    """heal's database. Unless ``create``, a SQLite file that does not exist is an error
    (connecting would create an empty one where the user did not mean to)."""
    url = settings.database_url
    path = sqlite_file(url)
    if path is not None:
        if create:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise CliError(f"no heal database at {path} ({safe_url(url)}).", hint=UPGRADE_HINT)
    database = Database(url, pool_size=2)
    try:
        yield database
    finally:
        await database.dispose()


async def require_schema(database: Database) -> None:
    """Stop with a friendly message when the database was never migrated."""
    current = await migrate.current_revision(database)
    if current is None:
        raise CliError(
            f"the database at {safe_url(database.url)} has no heal schema yet.",
            hint=UPGRADE_HINT,
        )
    head = migrate.head_revision()
    if current != head:
        warn(
            f"the database schema is at {current}, this heal expects {head}: run `heal db upgrade`"
        )
