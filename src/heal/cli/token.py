"""``heal token new``: an API token for clients and the hash to configure on the server."""

from __future__ import annotations

import secrets

from heal.cli.console import examples, group, out
from heal.settings import hash_token

app = group("API tokens.")


@app.command("new", epilog=examples("heal token new"))
def new() -> None:
    """Make a random service token and its hash.

    Give the token to clients (Alertmanager, `heal alerts send --token`); configure only
    the hash on the server, in HEAL_API_TOKENS (comma-separated, several may be active),
    with its scopes after it: `sha256:<hex>` may only ingest alerts,
    `sha256:<hex>:read+operate` may read and operate (scopes: ingest, read, operate,
    admin). Service tokens never sign approvals: people do, with `heal users token new`.
    """
    token = secrets.token_urlsafe(32)
    digest = hash_token(token)
    console = out()
    console.print(f"token: {token}", soft_wrap=True)
    console.print(f"hash:  {digest}", soft_wrap=True)
    console.print()
    console.print(
        "Configure the hash on the server, e.g. "
        f"[bold]HEAL_API_TOKENS={digest}[/bold] (comma-separate several; this one may "
        f"only send alerts, [bold]{digest}:read+operate[/bold] may read and operate),\n"
        "and give the token to clients as [bold]Authorization: Bearer <token>[/bold]. "
        "heal never stores the token itself: keep it somewhere safe.",
        soft_wrap=True,
    )
