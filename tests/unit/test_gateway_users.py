from __future__ import annotations

import argparse
import io
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import argon2
import pytest

from gateway import users as users_module
from gateway.users import User, UserError, UserStore, default_hasher
from gateway.users_cli import add_users_parser

PASSWORD = "correct horse battery"


class CountingHasher(argon2.PasswordHasher):
    """Cheap parameters for speed; counts verifications to check the timing guarantee."""

    def __init__(self, time_cost: int = 1) -> None:
        super().__init__(time_cost=time_cost, memory_cost=8, parallelism=1)
        self.verifications = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.verifications += 1
        return super().verify(hash, password)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "users.json"


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def store(path: Path, hasher: CountingHasher) -> UserStore:
    return UserStore(path, hasher=hasher)


@pytest.fixture
def populated(store: UserStore) -> UserStore:
    store.add("root", PASSWORD, "admin")
    store.add("alice", PASSWORD, "client", factories=["factory1"], cameras=["factory2/cam2"])
    return store


def test_default_parameters_are_owasp_argon2id(path: Path) -> None:
    params = default_hasher()
    assert (params.time_cost, params.memory_cost, params.parallelism) == (2, 19456, 1)
    assert params.type is argon2.Type.ID
    store = UserStore(path)
    user = store.add("root", PASSWORD, "admin")
    assert user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert store.authenticate("root", PASSWORD) == user


def test_missing_file_is_an_empty_store(store: UserStore, path: Path) -> None:
    assert store.list() == []
    assert store.get("root") is None
    assert not path.exists()


def test_add_get_list_passwd_remove_round_trip(populated: UserStore, path: Path) -> None:
    alice = populated.get("alice")
    assert alice is not None
    assert (alice.role, alice.factories, alice.cameras) == ("client", ("factory1",), ("factory2/cam2",))
    assert [u.username for u in populated.list()] == ["alice", "root"]
    assert UserStore(path, hasher=CountingHasher()).list() == populated.list(), "read back from the file"

    populated.set_password("alice", "a new passphrase")
    assert populated.authenticate("alice", PASSWORD) is None
    assert populated.authenticate("alice", "a new passphrase") is not None

    populated.remove("alice")
    assert populated.get("alice") is None
    assert [u.username for u in UserStore(path, hasher=CountingHasher()).list()] == ["root"]


def test_file_is_owner_only_json_without_plain_passwords(populated: UserStore, path: Path) -> None:
    assert path.stat().st_mode & 0o777 == 0o600
    raw = path.read_bytes()
    assert PASSWORD.encode() not in raw
    data = json.loads(raw)
    assert data["version"] == 1
    assert set(data["users"]) == {"alice", "root"}
    assert data["users"]["alice"]["role"] == "client"
    assert data["users"]["alice"]["password_hash"].startswith("$argon2id$")
    leftovers = sorted(p.name for p in path.parent.iterdir())
    assert leftovers == ["users.json", "users.json.lock"], "no temporary files left behind"


def test_repr_hides_the_hash(populated: UserStore) -> None:
    alice = populated.get("alice")
    assert alice is not None
    assert "argon2" not in repr(alice)
    assert "password_hash" not in repr(alice)


@pytest.mark.parametrize(
    ("username", "password", "ok"),
    [
        pytest.param("alice", PASSWORD, True, id="right"),
        pytest.param("alice", "wrong password", False, id="wrong"),
        pytest.param("mallory", PASSWORD, False, id="unknown-user"),
        pytest.param("Alice", PASSWORD, False, id="invalid-username"),
        pytest.param("alice", "short", False, id="too-short"),
        pytest.param("alice", "x" * 5000, False, id="too-long"),
    ],
)
def test_authenticate_always_verifies_once(
    populated: UserStore, hasher: CountingHasher, username: str, password: str, ok: bool
) -> None:
    hasher.verifications = 0
    user = populated.authenticate(username, password)
    assert (user is not None) is ok
    assert hasher.verifications == 1, "a miss must cost what a hit costs"
    if user is not None:
        assert user.username == username


def test_login_rehashes_a_hash_made_with_older_parameters(populated: UserStore, path: Path) -> None:
    stronger = UserStore(path, hasher=CountingHasher(time_cost=2))
    old_hash = json.loads(path.read_bytes())["users"]["alice"]["password_hash"]
    user = stronger.authenticate("alice", PASSWORD)
    assert user is not None
    new_hash = json.loads(path.read_bytes())["users"]["alice"]["password_hash"]
    assert new_hash != old_hash
    assert ",t=2," in new_hash
    assert user.password_hash == new_hash
    assert stronger.authenticate("alice", PASSWORD) is not None
    assert populated.authenticate("alice", PASSWORD) is not None, "other instances reload the new hash"


ADMIN = User("root", "admin", password_hash=CountingHasher().hash("irrelevant"))
BY_FACTORY = User("f1", "client", factories=("factory1",), password_hash=ADMIN.password_hash)
BY_CAMERA = User("c2", "client", cameras=("factory2/cam2",), password_hash=ADMIN.password_hash)


@pytest.mark.parametrize(
    ("user", "factory", "device", "sees"),
    [
        pytest.param(ADMIN, "factory1", "cam1", True, id="admin-factory1"),
        pytest.param(ADMIN, "elsewhere", "camX", True, id="admin-anything"),
        pytest.param(BY_FACTORY, "factory1", "cam1", True, id="factory-client-own-camera"),
        pytest.param(BY_FACTORY, "factory1", "cam9", True, id="factory-client-any-camera-of-factory"),
        pytest.param(BY_FACTORY, "factory2", "cam2", False, id="factory-client-other-factory"),
        pytest.param(BY_CAMERA, "factory2", "cam2", True, id="camera-client-own-camera"),
        pytest.param(BY_CAMERA, "factory2", "cam3", False, id="camera-client-sibling-camera"),
        pytest.param(BY_CAMERA, "factory1", "cam2", False, id="camera-client-same-device-other-factory"),
    ],
)
def test_may_see(user: User, factory: str, device: str, sees: bool) -> None:
    assert user.may_see(factory, device) is sees


Action = Callable[[UserStore], object]


@pytest.mark.parametrize(
    ("action", "message"),
    [
        pytest.param(lambda s: s.add("Bob", PASSWORD, "admin"), "username 'Bob'", id="uppercase-username"),
        pytest.param(lambda s: s.add("", PASSWORD, "admin"), "username ''", id="empty-username"),
        pytest.param(lambda s: s.add("-bob", PASSWORD, "admin"), "username", id="leading-dash"),
        pytest.param(lambda s: s.add("b" * 33, PASSWORD, "admin"), "username", id="username-too-long"),
        pytest.param(lambda s: s.add("bob smith", PASSWORD, "admin"), "username", id="username-space"),
        pytest.param(lambda s: s.add("bob", "1234567", "admin"), "too short", id="short-password"),
        pytest.param(lambda s: s.add("bob", "x" * 1025, "admin"), "too long", id="long-password"),
        pytest.param(lambda s: s.add("bob", PASSWORD, "root"), "role must be admin or client", id="bad-role"),
        pytest.param(lambda s: s.add("bob", PASSWORD, "client"), "at least one factory", id="no-scope"),
        pytest.param(
            lambda s: s.add("bob", PASSWORD, "admin", factories=["factory1"]), "admin sees", id="admin-scope"
        ),
        pytest.param(
            lambda s: s.add("bob", PASSWORD, "client", cameras=["factory1"]),
            "factory/device",
            id="bad-camera",
        ),
        pytest.param(
            lambda s: s.add("bob", PASSWORD, "client", factories=["fac tory"]), "factory", id="bad-factory"
        ),
        pytest.param(
            lambda s: s.add("bob", PASSWORD, "client", factories=["f1", "f1"]),
            "twice",
            id="duplicate-factory",
        ),
        pytest.param(lambda s: s.add("alice", PASSWORD, "admin"), "already exists", id="duplicate-user"),
        pytest.param(lambda s: s.remove("mallory"), "no user 'mallory'", id="remove-missing"),
        pytest.param(lambda s: s.set_password("mallory", PASSWORD), "no user", id="passwd-missing"),
        pytest.param(lambda s: s.set_password("alice", "short"), "too short", id="passwd-short"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    populated: UserStore, path: Path, action: Action, message: str
) -> None:
    before = path.read_bytes()
    with pytest.raises(UserError, match=message):
        action(populated)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["users.json", "users.json.lock"]


def test_user_error_is_a_value_error() -> None:
    assert issubclass(UserError, ValueError)


def _write(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(0o600)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        pytest.param("{not json", "not valid JSON", id="syntax"),
        pytest.param("[]", "must be a JSON object", id="not-an-object"),
        pytest.param('{"version": 2, "users": {}}', "version must be 1", id="version"),
        pytest.param('{"version": 1, "users": {}, "extra": 1}', "unknown keys 'extra'", id="unknown-key"),
        pytest.param('{"version": 1, "users": {"a": {"role": "admin"}}}', "required", id="no-hash"),
        pytest.param(
            '{"version": 1, "users": {"a": {"role": "admin", "password_hash": "x"}}}',
            "not an argon2 hash",
            id="bad-hash",
        ),
        pytest.param('{"version": 1, "users": {"a": {}, "a": {}}}', "appears twice", id="duplicate-user"),
    ],
)
def test_corrupt_file_names_the_path_and_is_never_overwritten(
    path: Path, hasher: CountingHasher, text: str, reason: str
) -> None:
    _write(path, text)
    with pytest.raises(UserError, match=reason) as info:
        UserStore(path, hasher=hasher)
    assert str(path) in str(info.value)
    assert path.read_text() == text  # the operator's file is left as it was


def test_errors_about_a_user_entry_never_show_the_hash(populated: UserStore, path: Path) -> None:
    data = json.loads(path.read_bytes())
    secret_hash = data["users"]["alice"]["password_hash"]
    data["users"]["alice"]["role"] = "superuser"
    _write(path, json.dumps(data))
    with pytest.raises(UserError) as info:
        populated.get("alice")
    assert "superuser" in str(info.value)
    assert secret_hash not in str(info.value)
    assert "argon2" not in str(info.value)


def test_writes_refuse_a_corrupt_file(populated: UserStore, path: Path) -> None:
    _write(path, "{broken")
    with pytest.raises(UserError, match="not valid JSON"):
        populated.add("bob", PASSWORD, "admin")
    assert path.read_bytes() == b"{broken"


def test_refuses_a_file_others_can_read(populated: UserStore, path: Path, hasher: CountingHasher) -> None:
    path.chmod(0o644)
    with pytest.raises(UserError, match="chmod 600"):
        UserStore(path, hasher=hasher)


def test_reload_if_changed_sees_another_instance(populated: UserStore, path: Path) -> None:
    other = UserStore(path, hasher=CountingHasher())
    assert populated.reload_if_changed() is False
    other.add("bob", PASSWORD, "client", cameras=["factory1/cam1"])
    assert populated.reload_if_changed() is True
    assert populated.reload_if_changed() is False
    assert populated.get("bob") is not None

    other.remove("alice")  # lookups reload by themselves
    assert populated.authenticate("alice", PASSWORD) is None
    assert [u.username for u in populated.list()] == ["bob", "root"]


def test_a_deleted_file_means_no_users(populated: UserStore, path: Path) -> None:
    os.unlink(path)
    assert populated.reload_if_changed() is True
    assert populated.list() == []


# -- the `camswarm users` command line ---------------------------------------------------------------


@pytest.fixture
def cheap_default_hasher(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(users_module, "default_hasher", lambda: CountingHasher())


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="camswarm")
    add_users_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["users", *argv])


async def _run(monkeypatch: pytest.MonkeyPatch, *argv: str, stdin: str = "") -> int:
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    args = _parse(*argv)
    return int(await args.handler(args))


@pytest.mark.usefixtures("cheap_default_hasher")
async def test_cli_add_list_passwd_remove(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], path: Path
) -> None:
    users = ("--users", str(path))
    assert (
        await _run(
            monkeypatch, "add", "root", "--role", "admin", "--password-stdin", *users, stdin=PASSWORD + "\n"
        )
        == 0
    )
    assert (
        await _run(
            monkeypatch,
            "add",
            "alice",
            "--role",
            "client",
            "--factory",
            "factory1",
            "--camera",
            "factory2/cam2",
            "--password-stdin",
            *users,
            stdin=PASSWORD + "\n",
        )
        == 0
    )
    capsys.readouterr()
    assert await _run(monkeypatch, "list", *users) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "alice  client  factory1/*, factory2/cam2",
        "root   admin   all cameras",
    ]
    assert "argon2" not in out
    store = UserStore(path, hasher=CountingHasher())
    assert store.authenticate("alice", PASSWORD) is not None

    assert (
        await _run(monkeypatch, "passwd", "alice", "--password-stdin", *users, stdin="another passphrase\n")
        == 0
    )
    assert store.authenticate("alice", PASSWORD) is None
    assert store.authenticate("alice", "another passphrase") is not None

    assert await _run(monkeypatch, "remove", "alice", *users) == 0
    assert store.get("alice") is None
    assert path.stat().st_mode & 0o777 == 0o600


@pytest.mark.usefixtures("cheap_default_hasher")
async def test_cli_default_file_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, path: Path
) -> None:
    monkeypatch.setenv("CAMSWARM_USERS", str(path))
    assert await _run(monkeypatch, "add", "root", "--role", "admin", "--password-stdin", stdin=PASSWORD) == 0
    assert path.exists()
    monkeypatch.delenv("CAMSWARM_USERS")
    monkeypatch.chdir(tmp_path)
    assert await _run(monkeypatch, "add", "bob", "--role", "admin", "--password-stdin", stdin=PASSWORD) == 0
    assert UserStore(tmp_path / "users.json", hasher=CountingHasher()).get("bob") is not None


@pytest.mark.usefixtures("cheap_default_hasher")
async def test_cli_prompts_twice_and_refuses_a_mismatch(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    answers = iter([PASSWORD, PASSWORD + "!"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    with pytest.raises(UserError, match="do not match"):
        await _run(monkeypatch, "add", "root", "--role", "admin", "--users", str(path))
    assert not path.exists()

    answers = iter([PASSWORD, PASSWORD])
    assert await _run(monkeypatch, "add", "root", "--role", "admin", "--users", str(path)) == 0
    assert UserStore(path, hasher=CountingHasher()).authenticate("root", PASSWORD) is not None


@pytest.mark.usefixtures("cheap_default_hasher")
@pytest.mark.parametrize(
    ("argv", "stdin", "message"),
    [
        pytest.param(("add", "bob", "--role", "client"), PASSWORD, "at least one factory", id="no-scope"),
        pytest.param(("add", "root", "--role", "admin"), PASSWORD, "already exists", id="duplicate"),
        pytest.param(("add", "bob", "--role", "admin"), "short\n", "too short", id="short-password"),
        pytest.param(("add", "bob", "--role", "admin"), "", "no password", id="empty-stdin"),
        pytest.param(("passwd", "mallory"), PASSWORD, "no user 'mallory'", id="passwd-missing"),
        pytest.param(("remove", "mallory"), "", "no user 'mallory'", id="remove-missing"),
    ],
)
async def test_cli_bad_input_raises_user_error_and_changes_nothing(
    monkeypatch: pytest.MonkeyPatch, path: Path, argv: tuple[str, ...], stdin: str, message: str
) -> None:
    UserStore(path, hasher=CountingHasher()).add("root", PASSWORD, "admin")
    before = path.read_bytes()
    flags = ("--password-stdin",) if argv[0] in ("add", "passwd") else ()
    with pytest.raises(UserError, match=message):
        await _run(monkeypatch, *argv, *flags, "--users", str(path), stdin=stdin)
    assert path.read_bytes() == before


def test_login_survives_a_failed_rehash(
    populated: UserStore, path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def read_only(path: Path, text: str, **_: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(users_module, "write_atomic", read_only)
    before = path.read_bytes()
    user = UserStore(path, hasher=CountingHasher(time_cost=2)).authenticate("alice", PASSWORD)
    assert user is not None
    assert path.read_bytes() == before
    assert "could not store a rehashed password for alice" in caplog.text
    assert "argon2" not in caplog.text
