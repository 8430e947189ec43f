"""`serve` (the HTTP API) and `api-keys` (its keys)."""

from __future__ import annotations

import click

from report_pipelines.cli.base import _app, main


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port.")
def serve(host: str, port: int) -> None:
    """Run the HTTP API (OpenAPI at /v1/openapi.json, docs at /v1/docs) until interrupted."""
    from report_pipelines.api import serve as run

    click.echo(f"report_pipelines API on http://{host}:{port}/v1 (docs: /v1/docs)", err=True)
    run(_app(), host=host, port=port)


@main.group("api-keys")
def api_keys() -> None:
    """Keys of the HTTP API: one per client (its tenant only), or a staff role (sales, operator)."""


@api_keys.command("create")
@click.option("--client", default=None, help="Client slug: a key that sees this tenant only.")
@click.option("--role", default=None, help="operator or sales: a staff key that sees every tenant.")
@click.option("--label", default=None, help="What the key is for (shown in the list).")
def api_keys_create(client, role, label) -> None:
    """Create a key; it is printed once, here, and stored only as a salted hash."""
    from report_pipelines.services.api_keys import create_key

    created = create_key(_app(), client=client, role=role, label=label, by="cli")
    whose = f"client {created.key.client_slug}" if created.key.client_slug else f"role {created.key.role}"
    click.echo(f"created API key {created.key.prefix} ({whose}); it is shown once, keep it now:")
    click.echo(created.token)


@api_keys.command("list")
def api_keys_list() -> None:
    """List keys: prefix, role, tenant, created, revoked (never a secret)."""
    from report_pipelines.services.api_keys import list_keys

    keys = list_keys(_app())
    if not keys:
        click.echo("no API keys (report-pipelines api-keys create --client SLUG | --role operator|sales)")
    for key in keys:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M} UTC" if key.revoked_at else "active"
        whose = key.client_slug or "all tenants"
        click.echo(f"{key.prefix}  {key.role:<8} {whose:<28} created {key.created_at:%Y-%m-%d %H:%M} UTC by "
                   f"{key.created_by}  {state}{'  ' + key.label if key.label else ''}")


@api_keys.command("revoke")
@click.argument("prefix")
def api_keys_revoke(prefix: str) -> None:
    """Revoke a key (by its prefix); refused from the next request on."""
    from report_pipelines.services.api_keys import revoke_key

    key = revoke_key(_app(), prefix, by="cli")
    click.echo(f"revoked API key {key.prefix} ({key.client_slug or key.role})")
