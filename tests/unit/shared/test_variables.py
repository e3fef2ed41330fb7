"""Secrets per service (DESIGN §11): which `${VAR}`s a process resolves, and what it inherits."""

import msgspec
import pytest

from shared import config as config_file
from shared import redaction, variables
from shared.errors import ConfigError

RAW = {
    "default_model": "m",
    "workdir": "${STATE_DIR}/stellaclaw",
    "models": {"m": {"provider": "openai_chat", "model": "x", "api_key": "${MODEL_KEY}"}},
    "telegram": {"bot_token": "${BOT_TOKEN}", "allowed_user_ids": [1]},
    "bus": {
        "url": "nats://bus:4222",
        "password": "${BUS_PASSWORD}",
        "services": {"tools": {"user": "tools", "password": "${TOOLS_PASSWORD}"}},
    },
}
ENV = {
    "STATE_DIR": "/srv",
    "MODEL_KEY": "sk-model-secret",
    "BOT_TOKEN": "123:bot-secret",
    "BUS_PASSWORD": "bus-secret",
    "TOOLS_PASSWORD": "tools-secret",
}


@pytest.mark.parametrize(
    ("service", "has_model_key", "has_bot_token"),
    [
        ("session", True, False),
        ("delivery", False, True),
        ("ingress_telegram", False, True),
        ("tools", False, False),
        ("conversation", False, False),
        (None, True, True),  # up and config check: every reference
    ],
)
def test_a_service_resolves_only_the_sections_it_uses(service, has_model_key, has_bot_token):
    config = config_file.parse(RAW, ENV, service)
    assert (config.models["m"].api_key == "sk-model-secret") is has_model_key
    assert config.telegram is not None
    assert (config.telegram.bot_token == "123:bot-secret") is has_bot_token
    assert config.workdir == "/srv/stellaclaw"  # everyone resolves the shared keys
    assert config.bus.password == "bus-secret"
    held = config_file.secret_values(config)
    assert ("sk-model-secret" in held) is has_model_key
    assert ("123:bot-secret" in held) is has_bot_token


def test_an_unresolved_reference_stays_as_written():
    config = config_file.parse(RAW, ENV, "tools")
    assert config.models["m"].api_key == "${MODEL_KEY}"
    assert config.bus.services["tools"].password == "tools-secret"


def test_a_missing_variable_stops_only_the_services_that_use_it():
    env = {name: value for name, value in ENV.items() if name != "BOT_TOKEN"}
    assert config_file.parse(RAW, env, "session").models["m"].api_key == "sk-model-secret"
    with pytest.raises(
        ConfigError, match=r"^config: telegram\.bot_token: .* BOT_TOKEN is not set$"
    ):
        config_file.parse(RAW, env, "delivery")
    with pytest.raises(ConfigError, match="BOT_TOKEN"):
        config_file.parse(RAW, env, None)


def test_a_malformed_reference_is_an_error_even_where_it_is_not_resolved():
    raw = {**RAW, "models": {"m": {"provider": "openai_chat", "model": "x", "api_key": "${KEY"}}}
    with pytest.raises(ConfigError, match=r"^config: models\.m\.api_key: malformed reference"):
        config_file.parse(raw, ENV, "tools")


def test_a_literal_dollar_brace_stays_literal():
    raw = {**RAW, "workdir": "/srv/$${HOME}"}
    assert config_file.parse(raw, ENV, "tools").workdir == "/srv/${HOME}"


def test_bus_credentials_of_an_unknown_role_are_refused():
    raw = {**RAW, "bus": {"services": {"toolz": {"user": "x"}}}}
    with pytest.raises(ConfigError, match=r"^config: bus\.services\.toolz: expected one of"):
        config_file.parse(raw, ENV, None)


@pytest.mark.parametrize(
    ("service", "expected"),
    [
        ("session", {"STATE_DIR", "MODEL_KEY", "BUS_PASSWORD"}),
        ("delivery", {"STATE_DIR", "BOT_TOKEN", "BUS_PASSWORD"}),
        ("tools", {"STATE_DIR", "BUS_PASSWORD", "TOOLS_PASSWORD"}),
        ("conversation", {"STATE_DIR", "BUS_PASSWORD"}),
    ],
)
def test_a_child_inherits_only_its_own_variables_and_the_basics(service, expected):
    env = {**ENV, "PATH": "/bin", "HOME": "/root", "LC_ALL": "C", "AWS_SECRET": "x", "TZ": "UTC"}
    child = variables.child_environment(RAW, service, env)
    assert set(child) == expected | {"PATH", "HOME", "LC_ALL", "TZ"}


def test_scrubbing_masks_every_secret_in_text_and_in_encoded_messages():
    secrets = ["sk-model-secret", 'quote"d\\secret', "short"]
    text = 'key sk-model-secret, again sk-model-secret, quote"d\\secret, short'
    assert redaction.scrub(text, secrets) == "key ***, again ***, ***, short"
    encoded = msgspec.json.encode({"text": text})
    scrubbed = redaction.scrub_json(encoded, redaction.json_forms(secrets))
    assert msgspec.json.decode(scrubbed) == {"text": "key ***, again ***, ***, short"}
