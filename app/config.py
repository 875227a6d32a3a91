"""The one typed settings object. Nothing else in pimsync reads ``os.environ``.

Every setting is an environment variable ``PIMSYNC_<NAME>`` (or a line in ``.env``). With no
settings at all pimsync runs on the embedded default: a SQLite file in the working directory,
the bundled sample catalog and the bundled channel configuration.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PACKAGE_DIR = Path(__file__).resolve().parent
SAMPLE_DIR = PACKAGE_DIR / "sample"
# The repository's sibling folder with Akeneo's public demo catalog (never copied into the repo).
DEFAULT_ICECAT_DIR = PACKAGE_DIR.parent.parent / "shared" / "data" / "akeneo-icecat"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PIMSYNC_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        # An empty variable (docker compose passes unset ones as "") means "the default".
        env_ignore_empty=True,
    )

    # --- storage -------------------------------------------------------------------------
    database_url: str = "sqlite:///./pimsync.db"
    db_pool_size: int = Field(5, ge=1, le=100)
    db_echo: bool = False

    # --- broker, locks, shared limits (separate Redis databases, see STYLE rule 10) ---------
    broker_url: str = "redis://127.0.0.1:6379/0"
    # "none": no Redis (one process only; the PIM's call cap is then per process)
    redis_url: str = "redis://127.0.0.1:6379/1"

    # --- the PIM ----------------------------------------------------------------------------
    # "sample" (bundled catalog), a path (JSON lines file, catalog dir, icecat dir) or an
    # http(s) URL of an Akeneo PIM (then the akeneo_* settings apply).
    pim_source: str = "sample"
    akeneo_client_id: str = ""
    akeneo_secret: SecretStr = SecretStr("")
    akeneo_username: str = ""
    akeneo_password: SecretStr = SecretStr("")
    # Akeneo compares `updated` in the PIM server's time zone (UTC on SaaS).
    akeneo_timezone: str = "UTC"
    # Akeneo allows 4 concurrent calls per connection; shared by every worker process.
    akeneo_max_concurrency: int = Field(4, ge=1, le=10)
    akeneo_page_size: int = Field(100, ge=1, le=100)
    akeneo_timeout_seconds: float = Field(30.0, gt=0)
    akeneo_max_retries: int = Field(6, ge=0, le=20)
    akeneo_backoff_base_seconds: float = Field(0.5, ge=0)
    akeneo_backoff_max_seconds: float = Field(30.0, ge=0)
    # A Retry-After up to this long is slept by the worker; a longer one defers the task to
    # the instant the PIM named (the worker is free meanwhile). Any length is honoured.
    akeneo_retry_after_sleep_max_seconds: float = Field(30.0, ge=0)
    # The attribute holding the SKU in `values` (products-uuid items carry no `identifier`
    # field). Unset: discovered from the PIM's attributes at the start of each run (the one of
    # type pim_catalog_identifier, the main identifier where several exist).
    identifier_attribute: str | None = None

    # --- channels and mapping contracts --------------------------------------------------------
    channels_file: Path = SAMPLE_DIR / "channels.yaml"
    contracts_dir: Path = SAMPLE_DIR / "contracts"
    ownership_file: Path | None = None

    # --- sync -------------------------------------------------------------------------------
    delta_interval_seconds: int = Field(600, ge=10)
    # Products updated within this window before the cursor are read again (content-hash
    # dedupe makes that free): covers same-second updates and clock skew with the PIM.
    delta_overlap_seconds: int = Field(120, ge=0)
    full_sync_cron: str = "0 2 * * 0"  # minute hour day-of-month month day-of-week (Sun 02:00)
    reconcile_cron: str = "30 3 * * *"
    publish_batch_size: int = Field(500, ge=1, le=10_000)
    channel_inflight_batches: int = Field(4, ge=1, le=1000)
    # A catch-up (delta, republish) smaller than this many batches is cut into this many
    # publish messages, so that many worker processes decide it side by side: set it to the
    # publish queue's worker processes.
    publish_spread: int = Field(2, ge=1, le=256)
    lock_ttl_seconds: int = Field(600, ge=10)
    publish_max_attempts: int = Field(5, ge=1, le=50)
    retry_backoff_base_seconds: float = Field(2.0, ge=0)
    retry_backoff_max_seconds: float = Field(300.0, ge=0)
    error_budget_max_failed: int = Field(1000, ge=0)
    error_budget_max_failed_ratio: float = Field(0.05, ge=0, le=1)
    ingest_slice_seconds: float = Field(120.0, gt=0)
    sweep_stale_seconds: int = Field(300, ge=10)
    # How often the sweeper runs (beat): lost messages re-sent, dead workers' runs resumed.
    sweep_interval_seconds: int = Field(60, ge=5)
    # A run whose lease expires (its worker died) resumes this many times, then is abandoned.
    max_resumptions: int = Field(3, ge=0, le=100)
    # Done batches of finished runs are deleted after this many days (the runs stay).
    batch_retention_days: float = Field(2.0, ge=0)
    # The PIM's attributes/families/options are re-read at most this often (and on full syncs).
    definitions_refresh_seconds: int = Field(3600, ge=0)

    # --- web / events -----------------------------------------------------------------------
    webhook_secret: SecretStr = SecretStr("")
    webhook_secret_secondary: SecretStr = SecretStr("")
    webhook_max_age_seconds: int = Field(300, ge=1)
    webhook_max_body_bytes: int = Field(1_048_576, ge=1024)
    # A product's first event is applied at once; events within this window of the mirror's
    # last write of it wait for the window's end and are applied once, the newest state.
    event_coalesce_seconds: float = Field(1.0, ge=0, le=300)
    # Event Platform deliveries get 429 (they slow down) past this much pending work.
    event_backlog_limit: int = Field(10_000, ge=1)
    # Threads of the HTTP app for its blocking work (the intakes' database and broker calls):
    # a few serve requests in turn; many interleave under the GIL and all of them slow down.
    web_threads: int = Field(4, ge=1, le=200)
    # Listings of a channel's pages (GET /channels/{c}/products) the database builds at once;
    # more wait in a queue of web_list_queue, then get 503 with Retry-After. Each one keeps a
    # database backend busy for its page: with 2 on two cores the webhook intake still finds a
    # core (bench/events.py, listings phase). Below db_pool_size: single reads keep the rest.
    web_list_concurrency: int = Field(2, ge=1, le=100)
    web_list_queue: int = Field(64, ge=0, le=10_000)
    # A pricing/inventory/media consumer that finds more messages of its task waiting takes
    # up to this many in one transaction (1: one message per transaction).
    event_batch_max: int = Field(200, ge=1, le=5000)
    api_token: SecretStr = SecretStr("")
    # POST /events/{domain}: {source: token}; the token says which system is speaking.
    event_source_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    # Reconciliation snapshots per domain: a JSON lines file or an HTTP URL.
    snapshot_sources: dict[str, str] = Field(default_factory=dict)
    # {domain: token}: each system of record's own credential for its snapshot, sent to that
    # snapshot's origin only (one token for all would hand each system the others')
    snapshot_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    # the single token of earlier releases: refused (reconcile says what to set instead)
    snapshot_token: SecretStr = SecretStr("")

    # --- operations ---------------------------------------------------------------------------
    log_level: str = "INFO"
    log_json: bool = False
    flower_user: str = "admin"
    flower_password: SecretStr = SecretStr("")
    flower_port: int = Field(5555, ge=1, le=65535)
    # The sync-health dashboard (HTTP Basic); /metrics and the dashboard also take
    # `Authorization: Bearer <PIMSYNC_API_TOKEN>`.
    dashboard_user: str = "operator"
    dashboard_password: SecretStr = SecretStr("")
    # Failed sign-ins one address may make within the window before it must wait (429).
    dashboard_max_failed_logins: int = Field(10, ge=1)
    dashboard_failed_login_window_seconds: float = Field(300.0, gt=0)
    # The interactive API docs (/docs): off by default, they load scripts from a CDN on the
    # dashboard's origin (the schema stays at /openapi.json)
    web_docs: bool = False
    # Accepted PIM event ids are kept this long for deduplication, then purged by the sweeper
    # (Akeneo redelivers within hours, not weeks).
    webhook_event_retention_days: float = Field(7.0, gt=0)
    # The highest source version a domain event may carry. A version is compared as "newer
    # wins" for good: one absurdly high (2^63-1) would freeze a page's price for ever, so
    # versions past this are refused (2^53: counters and epoch milliseconds fit many times).
    event_max_source_version: int = Field(2**53, ge=1, le=2**63 - 1)
    # A token that lists product pages (GET /channels/{c}/products) and nothing else; the
    # operator's API token lists them too. Single-product reads need no token.
    read_token: SecretStr = SecretStr("")
    # A token that reads /metrics and nothing else (Prometheus's): it cannot open the
    # dashboard or press Replay, as the API token can.
    metrics_token: SecretStr = SecretStr("")

    # The reference PIM's (development) /_admin endpoints need this bearer token when set.
    reference_admin_token: SecretStr = SecretStr("")

    # --- test data --------------------------------------------------------------------------
    icecat_dir: Path = DEFAULT_ICECAT_DIR

    @field_validator("database_url")
    @classmethod
    def _normalise_pg_driver(cls, value: str) -> str:
        # Accept plain postgresql:// URLs and use psycopg 3, the only driver we ship.
        for prefix in ("postgresql://", "postgres://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        return value

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests and the CLI call this after changing the env)."""
    get_settings.cache_clear()
