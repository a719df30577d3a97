"""``camswarm users``: manage the gateway's users file.

The file is ``--users FILE``, else ``$CAMSWARM_USERS``, else ``users.json`` in
the current directory; a running gateway picks changes up without a restart.
Passwords are prompted for twice (no echo) or, with ``--password-stdin``, read
as one line from standard input for scripts; they never appear in argv.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from pathlib import Path

from gateway.users import User, UserError, UserStore, check_password, check_user

USERS_ENV = "CAMSWARM_USERS"
DEFAULT_USERS = "users.json"


def users_path(args: argparse.Namespace) -> Path:
    return Path(args.users or os.environ.get(USERS_ENV) or DEFAULT_USERS)


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = sys.stdin.readline()
        password = line.removesuffix("\n").removesuffix("\r")
        if not line:
            raise UserError("no password on standard input")
        check_password(password)
        return password
    try:
        password = getpass.getpass(f"password for {args.username}: ")
        check_password(password)
        again = getpass.getpass("repeat the password: ")
    except EOFError:
        raise UserError("no password entered") from None
    if again != password:
        raise UserError("the passwords do not match; nothing changed")
    return password


def describe_scope(user: User) -> str:
    """What a user may watch: "all cameras", or factories as "F/*" and cameras as "F/D"."""
    if user.is_admin:
        return "all cameras"
    return ", ".join([f"{factory}/*" for factory in user.factories] + list(user.cameras))


async def _users_add(args: argparse.Namespace) -> int:
    store = UserStore(users_path(args))
    factories, cameras = tuple(args.factory or ()), tuple(args.camera or ())
    # Refuse what cannot succeed before asking for a password.
    check_user(args.username, args.role, factories, cameras)
    if store.get(args.username) is not None:
        raise UserError(f"user {args.username!r} already exists in {store.path}")
    user = store.add(args.username, _read_password(args), args.role, factories, cameras)
    print(f"added {user.role} {user.username} ({describe_scope(user)}) to {store.path}")
    return 0


async def _users_list(args: argparse.Namespace) -> int:
    store = UserStore(users_path(args))
    users = store.list()
    if not users:
        print(f"no users in {store.path}", file=sys.stderr)
        return 0
    width = max(len(u.username) for u in users)
    for user in users:
        print(f"{user.username:<{width}}  {user.role:<6}  {describe_scope(user)}")
    return 0


async def _users_remove(args: argparse.Namespace) -> int:
    store = UserStore(users_path(args))
    store.remove(args.username)
    print(f"removed {args.username} from {store.path}")
    return 0


async def _users_passwd(args: argparse.Namespace) -> int:
    store = UserStore(users_path(args))
    if store.get(args.username) is None:
        raise UserError(f"no user {args.username!r} in {store.path}")
    store.set_password(args.username, _read_password(args))
    print(f"changed the password of {args.username} in {store.path}")
    return 0


def add_users_parser(roles: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``users add|list|remove|passwd`` to the ``camswarm`` command line."""
    users = roles.add_parser(
        "users",
        help="manage who may log in to the gateway and what they may watch",
        description=(
            f"Edit the gateway's users file (--users FILE, else ${USERS_ENV}, else ./{DEFAULT_USERS});"
            " a running gateway picks changes up without a restart."
        ),
    )
    sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")

    def action(name: str, summary: str) -> argparse.ArgumentParser:
        parser = sub.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}.")
        parser.add_argument(
            "--users",
            metavar="FILE",
            default=None,
            help=f"the users file (default: ${USERS_ENV}, else ./{DEFAULT_USERS})",
        )
        return parser

    def password_stdin(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password as one line from standard input instead of prompting twice",
        )

    add = action("add", "add a user; a client sees only the cameras of --factory and --camera")
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=["admin", "client"])
    add.add_argument(
        "--factory", action="append", metavar="F", help="a client sees every camera of factory F (repeatable)"
    )
    add.add_argument(
        "--camera", action="append", metavar="F/D", help="a client sees camera D of factory F (repeatable)"
    )
    password_stdin(add)
    add.set_defaults(handler=_users_add)
    action("list", "list the users: name, role and what each may watch").set_defaults(handler=_users_list)
    remove = action("remove", "remove a user")
    remove.add_argument("username")
    remove.set_defaults(handler=_users_remove)
    passwd = action("passwd", "set a user's password")
    passwd.add_argument("username")
    password_stdin(passwd)
    passwd.set_defaults(handler=_users_passwd)
