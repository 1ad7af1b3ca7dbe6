"""What every `kith` command shares: the error that ends a command, and the database session."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

EXIT_FAILED = 1  # the command ran and something did not work (a tenant failed to migrate, ...)
EXIT_BAD_INPUT = 2  # the command was given something it cannot act on (unknown slug, bad email, ...)


class CliError(Exception):
    """Ends a command with a one-line message on stderr and an exit code."""

    def __init__(self, message: str, code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


async def with_orm(action: Callable[[], Awaitable[T]]) -> T:
    """Run `action` with Tortoise initialised for the platform and tenant models, then close it."""
    import dataclasses

    from kith.platform.config import get_settings
    from kith.platform.db import close_db, init_db
    from kith.tenants.registry import TENANT_MODEL_MODULES

    # Admin commands talk to the server directly (DATABASE_DIRECT_URL), never through
    # PgBouncer: they run few, unpooled queries and some need a session.
    settings = get_settings()
    await init_db(TENANT_MODEL_MODULES, dataclasses.replace(settings, database_url=settings.database_direct_url))
    try:
        return await action()
    finally:
        await close_db()


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 ("1_000" and "1,000" read as 1000)."""
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
