"""`kith ops create-operator`: a support operator account, with its TOTP enrolment printed once."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from typing import Any

from kith.platform.cli.common import CliError, with_orm
from kith.platform.cli.services import embedded_services


def _password(given: str | None) -> str:
    if given:
        return given
    if not sys.stdin.isatty():
        raise CliError("--password is required when kith is not run from a terminal")
    first = getpass.getpass("Operator password: ")
    if getpass.getpass("Repeat it: ") != first:
        raise CliError("the two passwords differ")
    return first


async def _create(email: str, password: str, name: str) -> int:
    from kith.platform.identity.passwords import PasswordRuleError
    from kith.platform.ops.operators import OperatorError, create_operator

    try:
        enrolment = await create_operator(email, password, display_name=name)
    except (OperatorError, PasswordRuleError) as exc:
        raise CliError(str(exc)) from None
    print(f"operator {enrolment.operator.email} created (id {enrolment.operator.id})")
    print("Add this to an authenticator app now; it is not shown again. The first code you sign in")
    print("with at /ops/login confirms it.")
    print(f"  secret: {enrolment.secret}")
    print(f"  uri:    {enrolment.uri}", flush=True)
    return 0


def run_create_operator(args: argparse.Namespace) -> int:
    """Create an operator and print its TOTP secret and otpauth URI once."""
    password = _password(args.password)
    with embedded_services(redis=False, quiet=True):
        return asyncio.run(with_orm(lambda: _create(args.email, password, args.name)))


def add_ops_parser(commands: Any) -> None:
    """Register `kith ops ...` on the main parser's subcommands."""
    ops = commands.add_parser("ops", help="support operator accounts for the ops console (/ops)",
                              description="Manage support operators, who sign in to the ops console at /ops.")
    actions = ops.add_subparsers(dest="ops_command", metavar="<action>", required=True)
    create = actions.add_parser(
        "create-operator", help="create an operator and print its two-factor enrolment once",
        description="Create a support operator (a platform account, separate from workspace members) and "
                    "print the TOTP secret and otpauth:// URI to add to an authenticator app. Signing in "
                    "at /ops/login needs the password and a code from that app.",
    )
    create.add_argument("--email", required=True, help="the operator's email")
    create.add_argument("--password", help="the operator's password (asked for when not given)")
    create.add_argument("--name", default="", help="a display name")
    create.set_defaults(handler=run_create_operator)
