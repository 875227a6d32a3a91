"""Development commands: a generated catalog, the reference PIM server, the demo. They are
the only commands that use the development package (``app.dev``)."""

from __future__ import annotations

from pathlib import Path

import typer

from app.cli.demo import run_demo
from app.cli.terminal import CliError, console, friendly
from app.config import get_settings
from app.dev.bad_data import BadData
from app.dev.generator import write_generated_catalog
from app.dev.reference_server import ApiError, Faults, run


@friendly
def generate(
    out: Path = typer.Option(..., help="Folder to write the catalog to."),
    count: int = typer.Option(1000, min=1, help="How many products."),
    seed: int = typer.Option(42, help="Random seed (same seed, same catalog)."),
) -> None:
    """Write a generated catalog (products.jsonl, product_models.jsonl, catalog.json)."""
    path = write_generated_catalog(out, count, seed)
    console.print(f"wrote {count} products to {path}")


@friendly
def reference_pim(
    data: str = typer.Option(..., help="Dataset: a folder, a .jsonl file or generated:N[:SEED]."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8081, help="Port to listen on."),
    latency_ms: float = typer.Option(0.0, help="Added latency per API call."),
    rate_429: float = typer.Option(0.0, help="Share of API calls answered 429."),
    rate_500: float = typer.Option(0.0, help="Share of API calls answered 500."),
    malformed_pages: int = typer.Option(0, help="The next N product pages are malformed."),
    retry_after: float = typer.Option(
        1.0, help="The Retry-After of each 429, in seconds (120: a long one)."
    ),
    retry_after_date: bool = typer.Option(
        False, "--retry-after-date", help="Send Retry-After as an HTTP date."
    ),
    rate_408: float = typer.Option(0.0, help="Share of API calls answered 408."),
    burst_5xx: int = typer.Option(0, help="Bursts of this many 5xx answers in a row."),
    burst_every: int = typer.Option(100, help="A burst every this many API calls."),
    burst_status: int = typer.Option(503, help="The status of a burst."),
    fail_next: str = typer.Option("", help="The next answers' statuses, e.g. 429,408,503."),
    timezone: str = typer.Option("UTC", help="The server's time zone for `updated` searches."),
    identifier_attribute: str = typer.Option(
        None, help="Rename the identifier attribute (the SKU is then in values.<this>)."
    ),
    without_identifier: int = typer.Option(
        0, min=0, help="This many simple products have no identifier (a uuid only)."
    ),
    without_family: int = typer.Option(
        0, min=0, help="This many (other) simple products have no family."
    ),
    identifier_endpoints: bool = typer.Option(
        True, help="Serve /products/{code}; --no-identifier-endpoints answers them 403."
    ),
) -> None:
    """Serve a dataset over the Akeneo REST API (with switchable faults) for tests and demos.

    Faults can also be switched while it runs: POST /_admin/faults (same names, snake_case);
    GET /_admin/requests lists when each API call came, and those that came before a
    Retry-After allowed them."""
    s = get_settings()
    try:
        statuses = [int(x) for x in fail_next.replace(" ", "").split(",") if x]
    except ValueError:
        raise CliError(
            f"--fail-next takes HTTP statuses separated by commas, got {fail_next!r}", 2
        ) from None
    faults = {
        "latency_ms": latency_ms,
        "rate_429": rate_429,
        "rate_500": rate_500,
        "rate_408": rate_408,
        "malformed_pages": malformed_pages,
        "retry_after": retry_after,
        "retry_after_date": retry_after_date,
        "burst_length": burst_5xx,
        "burst_every": burst_every if burst_5xx else 0,
        "burst_status": burst_status,
        "fail_next": statuses,
    }
    try:
        Faults.from_dict(faults)
    except ApiError as exc:
        raise CliError(exc.message, 2) from None
    console.print(f"reference PIM on http://{host}:{port} serving {data}")
    run(
        data,
        host=host,
        port=port,
        timezone=timezone,
        faults=faults,
        client_id=s.akeneo_client_id or "pimsync",
        secret=s.akeneo_secret.get_secret_value() or "pimsync-secret",
        username=s.akeneo_username or "pimsync",
        password=s.akeneo_password.get_secret_value() or "pimsync",
        admin_token=s.reference_admin_token.get_secret_value() or None,
        bad=BadData(identifier_attribute, without_identifier, without_family),
        identifier_endpoints=identifier_endpoints,
    )


@friendly
def demo() -> None:
    """Run a full and a delta sync of the bundled sample catalog, with no servers at all."""
    run_demo(console)
