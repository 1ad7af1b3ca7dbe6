"""Configuration: read once from the environment, typed, secrets kept out of logs.

Every variable is listed in README's configuration table; a test checks that the
table and `VARIABLES` below agree.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


class Secret:
    """A string that never shows itself in repr() or logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __bool__(self) -> bool:
        return bool(self._value)


# name -> (default, description); the README table is generated from the same words.
VARIABLES: dict[str, tuple[str, str]] = {
    "DATABASE_URL": ("", "PostgreSQL URL the web and worker processes connect with: a role that owns nothing "
                     "(`kith migrate` grants it its rights; it cannot change audit rows). Unset: an embedded "
                     "PostgreSQL is started under KITH_DATA_DIR, the application connecting as role kith_app."),
    "DATABASE_DIRECT_URL": ("", "URL of the role that owns the schemas, bypassing PgBouncer: `kith migrate` "
                            "(session advisory lock), backups and restores. Default: DATABASE_URL."),
    "REDIS_URL": ("", "Redis/Valkey URL for arq. Unset: an embedded Valkey is started under KITH_DATA_DIR."),
    "KITH_ENV": ("dev", "dev, test or production. production refuses to start without KITH_SECRET_KEY."),
    "KITH_DATA_DIR": (".kith", "Folder for embedded PostgreSQL/Valkey data and the dev secret (git-ignored)."),
    "KITH_SECRET_KEY": ("", "Key for signing cookies and tokens. Unset in dev: generated once into KITH_DATA_DIR."),
    "KITH_AUDIT_KEY": ("", "HMAC key that chains the audit log; keep it outside the database. Unset in dev/test: "
                       "derived from KITH_SECRET_KEY. production refuses to start without it."),
    "KITH_ENCRYPTION_KEYS": ("", "Keys for encryption at rest (AES-256-GCM) as id1:base64key,id2:base64key: the first "
                             "encrypts, all decrypt (`kith keys rotate` re-encrypts with the first). Unset in "
                             "dev/test: derived from KITH_SECRET_KEY. production refuses to start without it."),
    "KITH_BASE_URL": ("http://127.0.0.1:8000", "Public URL of the web app; https makes cookies Secure."),
    "KITH_LOGIN_MAX_FAILURES": ("5", "Failed sign-ins for one email within KITH_LOGIN_LOCKOUT_MINUTES that lock "
                                "it for KITH_LOGIN_LOCKOUT_MINUTES."),
    "KITH_LOGIN_MAX_FAILURES_PER_IP": ("50", "Failed sign-ins from one client IP within KITH_LOGIN_LOCKOUT_MINUTES "
                                       "that lock that IP out likewise."),
    "KITH_LOGIN_LOCKOUT_MINUTES": ("15", "Window in which failed sign-ins are counted, and how long a lock lasts."),
    "KITH_DB_POOL_MAX": ("20", "Maximum database connections per process (a worker's campaign senders hold one "
                         "each while they send)."),
    "KITH_DB_STATEMENT_CACHE": ("100", "asyncpg prepared-statement cache size; 0 behind PgBouncer < 1.21."),
    "KITH_DB_MAX_SCHEMAS_PER_CONN": ("400", "Recycle a pooled connection after it touched this many tenant "
                                     "schemas (~0.5 MB catalog cache each)."),
    "KITH_MIGRATE_CONCURRENCY": ("4", "Tenant schemas migrated at once by `kith migrate`."),
    "KITH_CANARY_TENANTS": ("", "Comma-separated slugs migrated first, one by one, before the rest."),
    "KITH_QUEUE_NAME": ("arq:kith", "arq queue name (separate names keep test runs and deployments apart)."),
    "KITH_LOG_LEVEL": ("info", "debug, info, warning or error."),
    "KITH_LOG_FORMAT": ("json", "json (one line per event) or console."),
    "SENTRY_DSN": ("", "Sentry DSN; unset disables Sentry."),
    "SENTRY_ENVIRONMENT": ("", "Sentry environment tag. Default: KITH_ENV."),
    "SMTP_HOST": ("", "SMTP server. Unset: emails go to the dev outbox (viewable at /dev/outbox)."),
    "SMTP_PORT": ("587", "SMTP port."),
    "SMTP_USERNAME": ("", "SMTP user name."),
    "SMTP_PASSWORD": ("", "SMTP password."),
    "SMTP_STARTTLS": ("true", "Use STARTTLS (true/false)."),
    "MAIL_FROM": ("Kith <no-reply@kith.localhost>", "From address of emails Kith sends."),
    "STRIPE_SECRET_KEY": ("", "Stripe secret API key. Unset: a local billing provider lets workspaces change plan "
                          "offline (no payments)."),
    "STRIPE_WEBHOOK_SECRET": ("", "Signing secret of the /webhooks/stripe endpoint (whsec_...)."),
    "STRIPE_API_BASE": ("", "Stripe API URL (tests point it at a local fake). Unset: Stripe's own."),
    "STRIPE_PRICES": ("", "Stripe price ids as plan_interval=price_id, comma-separated (starter_monthly, "
                      "starter_yearly, pro_monthly, pro_yearly, enterprise_...). Unset: price_kith_<plan>_<interval>."),
    "KITH_TRIAL_DAYS": ("14", "Length of the free trial a new workspace starts with."),
    "KITH_BILLING_GRACE_DAYS": ("14", "Days a workspace with a failed payment stays usable (past due) before it "
                                "turns read-only."),
    "KITH_CANCELLED_RETENTION_DAYS": ("30", "Days a cancelled workspace's data is kept (export offered) before a "
                                      "job deletes it."),
    "KITH_INVITE_DAYS": ("7", "Days an invitation link stays valid."),
    "KITH_PASSWORD_RESET_MINUTES": ("60", "Minutes a password reset link stays valid."),
    "KITH_IMPERSONATION_MINUTES": ("30", "Minutes a support operator's impersonation of a workspace member lasts."),
    "KITH_BACKUP_S3_BUCKET": ("", "S3 bucket that keeps backups (credentials: the AWS_* variables or boto3's usual "
                              "chain). Unset: backups are kept in KITH_DATA_DIR/backups."),
    "KITH_BACKUP_S3_PREFIX": ("", "Key prefix for backups inside KITH_BACKUP_S3_BUCKET, e.g. kith/prod/."),
    "KITH_S3_ENDPOINT_URL": ("", "URL of an S3-compatible service (MinIO, Ceph...). Unset: AWS S3."),
    "KITH_S3_REGION": ("", "Region of KITH_BACKUP_S3_BUCKET. Unset: boto3's (AWS_REGION, AWS_DEFAULT_REGION or "
                       "~/.aws/config)."),
    "KITH_BACKUP_KEEP_DAILY": ("7", "Scheduled backups kept per workspace on plans with daily backups (Pro, "
                               "Enterprise); older ones are deleted after each backup."),
    "KITH_BACKUP_KEEP_WEEKLY": ("4", "Scheduled backups kept per workspace on plans with weekly backups (Free, "
                                "Starter)."),
    "KITH_BACKUP_KEEP_MANUAL": ("5", "On-demand backups (Back up now, the API, the ops console) kept per workspace, "
                                "counted apart from scheduled ones."),
    "KITH_IMPORT_MAX_MB": ("500", "Largest file an import takes, in MB (uploads stream to disk; memory stays flat)."),
    "KITH_BACKUP_STALE_MINUTES": ("10", "Minutes without a heartbeat after which a running backup or restore counts "
                                  "as abandoned (its worker died), so another may start."),
    "KITH_EXPORT_KEEP_DAYS": ("7", "Days a background export's file is kept for download (in KITH_DATA_DIR/exports) "
                              "before a daily job deletes it."),
    "KITH_SES_REGION": ("", "Amazon SES region campaign emails go through (e.g. eu-west-1; credentials: the AWS_* "
                        "variables or boto3's usual chain), even when SMTP_HOST is set. Unset: campaigns go through "
                        "SMTP_HOST, or to the dev outbox."),
    "KITH_SES_ENDPOINT_URL": ("", "URL of the SES API (tests point it at moto). Unset: AWS's own for "
                              "KITH_SES_REGION."),
    "KITH_CAMPAIGN_SENDERS": ("8", "Campaign emails one worker process sends at once (each sender keeps its own "
                              "SMTP connection)."),
    "KITH_WORKSPACE_SMTP_PRIVATE": ("", "Whether a workspace's own SMTP server (Settings › Email sending) may be at "
                                    "a loopback, private, link-local or other non-public address: true or false. "
                                    "Unset: allowed in dev and test, refused in production (no probing of the "
                                    "internal network through Check connection)."),
    "KITH_CAMPAIGN_RATE_PER_MINUTE": ("60000", "Most campaign emails one workspace sends per minute, across all "
                                      "workers."),
    "KITH_SNS_CERT_HOSTS": ("", "Extra hosts (host or host:port, comma-separated) allowed to serve SNS signing "
                            "certificates and subscription URLs for /webhooks/ses, over http too (tests). Unset: "
                            "only https://sns.<region>.amazonaws.com."),
}


def _env(name: str) -> str:
    return os.environ.get(name, VARIABLES[name][0])


def _bool(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


@dataclass(frozen=True)
class Settings:
    env: str
    data_dir: Path
    database_url: str
    database_direct_url: str
    redis_url: str
    secret_key: Secret
    audit_key: Secret
    encryption_keys: Secret
    base_url: str
    login_max_failures: int
    login_max_failures_per_ip: int
    login_lockout_minutes: int
    db_pool_max: int
    db_statement_cache: int
    db_max_schemas_per_conn: int
    migrate_concurrency: int
    canary_tenants: tuple[str, ...]
    queue_name: str
    log_level: str
    log_format: str
    sentry_dsn: Secret
    sentry_environment: str
    smtp_host: str
    smtp_port: int
    smtp_username: str
    smtp_password: Secret
    smtp_starttls: bool
    mail_from: str
    stripe_secret_key: Secret
    stripe_webhook_secret: Secret
    stripe_api_base: str
    stripe_prices: str
    trial_days: int
    billing_grace_days: int
    cancelled_retention_days: int
    invite_days: int
    password_reset_minutes: int
    impersonation_minutes: int
    backup_s3_bucket: str
    backup_s3_prefix: str
    s3_endpoint_url: str
    s3_region: str
    backup_keep_daily: int
    backup_keep_weekly: int
    backup_keep_manual: int
    backup_stale_minutes: int
    import_max_mb: int
    export_keep_days: int
    ses_region: str
    ses_endpoint_url: str
    campaign_senders: int
    campaign_rate_per_minute: int
    workspace_smtp_private: bool
    sns_cert_hosts: tuple[str, ...]

    @property
    def secure_cookies(self) -> bool:
        return self.base_url.startswith("https://")

    @property
    def is_dev(self) -> bool:
        return self.env in {"dev", "test"}


def _secret_key(env: str, data_dir: Path) -> Secret:
    given = _env("KITH_SECRET_KEY")
    if given:
        return Secret(given)
    if env == "production":
        raise RuntimeError("KITH_SECRET_KEY must be set when KITH_ENV=production")
    # dev/test: one key per data folder, so sessions survive a restart of `make dev`.
    path = data_dir / "secret_key"
    if path.exists():
        return Secret(path.read_text().strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    path.write_text(key)
    path.chmod(0o600)
    return Secret(key)


def _audit_key(env: str, secret_key: Secret) -> Secret:
    given = _env("KITH_AUDIT_KEY")
    if given:
        return Secret(given)
    if env == "production":
        # A key derived from (or equal to) the cookie key would fall with it; in production the
        # audit chain's key must be its own and held outside the database.
        raise RuntimeError("KITH_AUDIT_KEY must be set when KITH_ENV=production")
    # dev/test: stable for one KITH_SECRET_KEY, so `kith audit verify` passes across restarts
    derived = hmac.new(secret_key.reveal().encode(), b"kith-audit-key-v1", hashlib.sha256).hexdigest()
    return Secret(derived)


def _encryption_keys(env: str, secret_key: Secret) -> Secret:
    from kith.platform.crypto import derived_keys, parse_keys  # crypto reads settings: import late

    given = _env("KITH_ENCRYPTION_KEYS")
    if given:
        parse_keys(given)  # a malformed keyring stops the process at start, not at the first decrypt
        return Secret(given)
    if env == "production":
        # Derived from the cookie key, encrypted data would fall with it and could never rotate away.
        raise RuntimeError("KITH_ENCRYPTION_KEYS must be set when KITH_ENV=production")
    return Secret(derived_keys(secret_key.reveal()))


def _backup_prefix(value: str) -> str:
    """'kith/prod' and '/kith/prod/' both mean the folder kith/prod/ (S3 keys have no leading slash)."""
    value = value.strip().strip("/")
    return f"{value}/" if value else ""


def load_settings() -> Settings:
    """Read the environment once into typed settings."""
    env = _env("KITH_ENV")
    data_dir = Path(_env("KITH_DATA_DIR")).resolve()
    database_url = _env("DATABASE_URL")
    secret_key = _secret_key(env, data_dir)
    return Settings(
        env=env,
        data_dir=data_dir,
        database_url=database_url,
        database_direct_url=_env("DATABASE_DIRECT_URL") or database_url,
        redis_url=_env("REDIS_URL"),
        secret_key=secret_key,
        audit_key=_audit_key(env, secret_key),
        encryption_keys=_encryption_keys(env, secret_key),
        base_url=_env("KITH_BASE_URL").rstrip("/"),
        login_max_failures=max(1, int(_env("KITH_LOGIN_MAX_FAILURES"))),
        login_max_failures_per_ip=max(1, int(_env("KITH_LOGIN_MAX_FAILURES_PER_IP"))),
        login_lockout_minutes=max(1, int(_env("KITH_LOGIN_LOCKOUT_MINUTES"))),
        db_pool_max=int(_env("KITH_DB_POOL_MAX")),
        db_statement_cache=int(_env("KITH_DB_STATEMENT_CACHE")),
        db_max_schemas_per_conn=int(_env("KITH_DB_MAX_SCHEMAS_PER_CONN")),
        migrate_concurrency=max(1, int(_env("KITH_MIGRATE_CONCURRENCY"))),
        canary_tenants=tuple(s.strip() for s in _env("KITH_CANARY_TENANTS").split(",") if s.strip()),
        queue_name=_env("KITH_QUEUE_NAME"),
        log_level=_env("KITH_LOG_LEVEL"),
        log_format=_env("KITH_LOG_FORMAT"),
        sentry_dsn=Secret(_env("SENTRY_DSN")),
        sentry_environment=_env("SENTRY_ENVIRONMENT") or env,
        smtp_host=_env("SMTP_HOST"),
        smtp_port=int(_env("SMTP_PORT")),
        smtp_username=_env("SMTP_USERNAME"),
        smtp_password=Secret(_env("SMTP_PASSWORD")),
        smtp_starttls=_bool(_env("SMTP_STARTTLS")),
        mail_from=_env("MAIL_FROM"),
        stripe_secret_key=Secret(_env("STRIPE_SECRET_KEY")),
        stripe_webhook_secret=Secret(_env("STRIPE_WEBHOOK_SECRET")),
        stripe_api_base=_env("STRIPE_API_BASE").rstrip("/"),
        stripe_prices=_env("STRIPE_PRICES"),
        trial_days=max(0, int(_env("KITH_TRIAL_DAYS"))),
        billing_grace_days=max(0, int(_env("KITH_BILLING_GRACE_DAYS"))),
        cancelled_retention_days=max(0, int(_env("KITH_CANCELLED_RETENTION_DAYS"))),
        invite_days=max(1, int(_env("KITH_INVITE_DAYS"))),
        password_reset_minutes=max(5, int(_env("KITH_PASSWORD_RESET_MINUTES"))),
        impersonation_minutes=max(1, int(_env("KITH_IMPERSONATION_MINUTES"))),
        backup_s3_bucket=_env("KITH_BACKUP_S3_BUCKET").strip(),
        backup_s3_prefix=_backup_prefix(_env("KITH_BACKUP_S3_PREFIX")),
        s3_endpoint_url=_env("KITH_S3_ENDPOINT_URL").strip().rstrip("/"),
        s3_region=_env("KITH_S3_REGION").strip(),
        backup_keep_daily=max(1, int(_env("KITH_BACKUP_KEEP_DAILY"))),
        backup_keep_weekly=max(1, int(_env("KITH_BACKUP_KEEP_WEEKLY"))),
        backup_keep_manual=max(1, int(_env("KITH_BACKUP_KEEP_MANUAL"))),
        backup_stale_minutes=max(2, int(_env("KITH_BACKUP_STALE_MINUTES"))),
        import_max_mb=max(1, int(_env("KITH_IMPORT_MAX_MB"))),
        export_keep_days=max(1, int(_env("KITH_EXPORT_KEEP_DAYS"))),
        ses_region=_env("KITH_SES_REGION").strip(),
        ses_endpoint_url=_env("KITH_SES_ENDPOINT_URL").strip().rstrip("/"),
        campaign_senders=max(1, int(_env("KITH_CAMPAIGN_SENDERS"))),
        campaign_rate_per_minute=max(1, int(_env("KITH_CAMPAIGN_RATE_PER_MINUTE"))),
        workspace_smtp_private=_bool(_env("KITH_WORKSPACE_SMTP_PRIVATE") or str(env != "production")),
        sns_cert_hosts=tuple(h.strip().lower() for h in _env("KITH_SNS_CERT_HOSTS").split(",") if h.strip()),
    )


_settings: Settings | None = None


def get_settings() -> Settings:
    """The process's settings, read on first use."""
    global _settings
    if _settings is None:
        _settings = load_settings()
    return _settings


def reset_settings() -> None:
    """Forget the cached settings (tests and `kith dev` change the environment)."""
    global _settings
    _settings = None


@contextmanager
def restored_environment(*names: str) -> Iterator[None]:
    """Let the block change these variables; on exit put them (and the settings) back."""
    saved = {name: os.environ.get(name) for name in names}
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        reset_settings()
