"""How a service's bus login reads a creds file and a bus URL (DESIGN §11): a seed file or a JWT
`.creds` file goes to the nats-py option that reads it, anything else is one ConfigError line."""

import re
import secrets

import nkeys
import pytest

from shared.connection import Credential, login_options, servers
from shared.errors import ConfigError


def user_seed() -> str:
    seed: bytes = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
    return seed.decode()


def test_a_seed_file_is_an_nkey_login(tmp_path):
    path = tmp_path / "session.nk"
    path.write_text(user_seed() + "\n")
    options = login_options(Credential(creds_file=str(path)), "session")
    assert options["nkeys_seed"] == str(path)
    assert "user_credentials" not in options


def test_a_jwt_creds_file_is_a_jwt_login(tmp_path):
    path = tmp_path / "session.creds"
    jwt = "eyJ0eXAiOiJKV1QifQ.e30.c2ln"  # the operator mode's user JWT (not checked here)
    path.write_text(
        f"-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{user_seed()}\n------END USER NKEY SEED------\n"
    )
    options = login_options(Credential(creds_file=str(path)), "session")
    assert options["user_credentials"] == str(path)
    assert "nkeys_seed" not in options


def test_a_missing_creds_file_is_a_config_error_naming_it(tmp_path):
    path = tmp_path / "absent.nk"
    where = re.escape(f"cannot read {str(path)!r} (role tools): No such file")
    with pytest.raises(ConfigError, match=rf"^config: bus\.creds_file: {where}"):
        login_options(Credential(creds_file=str(path)), "tools")


def test_a_file_holding_neither_is_a_config_error(tmp_path):
    path = tmp_path / "password.txt"
    path.write_text("hunter2\n")
    with pytest.raises(ConfigError, match=r"holds neither a NATS \.creds file"):
        login_options(Credential(creds_file=str(path)), "tools")


def test_a_password_login_passes_through():
    options = login_options(Credential(user="tools", password="pw"), "tools")
    assert (options["user"], options["password"], options["token"]) == ("tools", "pw", None)


def test_a_bus_url_may_list_a_cluster():
    assert servers("nats://a:4222, nats://b:4222,nats://c:4222") == [
        "nats://a:4222",
        "nats://b:4222",
        "nats://c:4222",
    ]
    assert servers("nats://a:4222") == ["nats://a:4222"]
    with pytest.raises(ConfigError, match="names no NATS server"):
        servers(" , ")
