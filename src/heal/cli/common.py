"""Shared plumbing: settings from options and env, running async work, opening the database."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from heal.cli.console import CliError, fail, show_error, warn

if TYPE_CHECKING:
    import httpx
    from pydantic_core import ErrorDetails

    from heal.policy.loader import PolicyError
    from heal.settings import Settings
    from heal.store.db import Database

# Heavy modules (SQLAlchemy, the store, the policy loader) are imported inside the functions
# that use them, so that `heal --help`, `heal --version` and commands needing no database
# start at once.

T = TypeVar("T")

# Commands that talk to a running heal over its API (`alerts send`, `approvals approve`).
API_URL = "http://127.0.0.1:8080"
API_TIMEOUT_SECONDS = 15.0

DatabaseUrl = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        metavar="URL",
        envvar="HEAL_DATABASE_URL",
        show_envvar=True,
        help="SQLAlchemy URL of heal's database [default: sqlite+aiosqlite:///./heal.db]",
        show_default=False,
    ),
]
JsonOutput = Annotated[
    bool, typer.Option("--json", help="print JSON for scripts instead of tables")
]
UPGRADE_HINT = "Create it with `heal db upgrade` (heal serve and heal demo also do it at start)."


# Settings whose command-line option is not --<setting name>.
_OPTION_OF = {"workers": "--concurrency"}


def make_settings(**overrides: Any) -> Settings:
    """HEAL_* environment (and .env), with the options the user gave on top.

    A bad value ends the command with one line per problem, naming the option or the
    environment variable it came from, and exit 2.
    """
    from pydantic import ValidationError

    from heal.settings import Settings

    given = {name: value for name, value in overrides.items() if value is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        fail("\n".join(_setting_problem(error, given) for error in exc.errors()), code=2)


def _setting_problem(error: ErrorDetails, given: dict[str, Any]) -> str:
    message = error["msg"].removeprefix("Value error, ")
    if not error["loc"]:  # a rule across settings: its message names them
        return f"invalid settings: {message}"
    field = str(error["loc"][0])
    source = f"HEAL_{field.upper()}"
    # An option may also have been filled from its environment variable (envvar=).
    if field in given and os.environ.get(source) != str(given[field]):
        source = _OPTION_OF.get(field, "--" + field.replace("_", "-"))
    return f"invalid {source}: {message}"


def safe_url(url: str) -> str:
    """The URL with any password hidden, for messages."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<an invalid URL>"


def policy_problems(error: PolicyError) -> str:
    return "\n".join(f"{error.source}:{problem}" for problem in error.problems)


def run(work: Coroutine[Any, Any, T], database_url: str | None = None) -> T:
    """``asyncio.run`` with expected failures turned into a message and an exit code."""
    from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError

    from heal.policy.loader import PolicyError

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
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


@asynccontextmanager
async def open_database(settings: Settings, *, create: bool = False) -> AsyncIterator[Database]:
    """heal's database. Unless ``create``, a SQLite file that does not exist is an error
    (connecting would create an empty one where the user did not mean to)."""
    from heal.store.db import Database

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
    from heal.store import migrate

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


def api_error_detail(response: httpx.Response) -> str:
    """What heal said when it refused a request: its ``detail``, validation errors joined."""
    try:
        detail = response.json().get("detail", response.text)
    except (ValueError, AttributeError):
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(detail, list):
        return "; ".join(
            f"{item.get('field', '?')}: {item.get('message', item)}"
            if isinstance(item, dict)
            else str(item)
            for item in detail
        )
    return str(detail)
