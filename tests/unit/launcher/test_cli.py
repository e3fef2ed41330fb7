"""`stellaclaw init` and `stellaclaw config check`, as an operator runs them."""

import tomllib

import pytest

from services.launcher import cli
from shared import config as config_file
from shared.errors import ConfigError

MODEL = "default_model = 'm'\n[models.m]\nprovider='openai_chat'\nmodel='x'\n"


def run(*argv: str) -> int:
    """The exit code `stellaclaw <argv>` ends with (0 when it returns)."""
    try:
        cli.main(list(argv))
    except SystemExit as exit_info:
        return exit_info.code if isinstance(exit_info.code, int) else 1
    return 0


def test_init_writes_a_starter_that_config_check_accepts(tmp_path, monkeypatch, capsys):
    path = tmp_path / "stellaclaw.toml"
    assert run("init", "--config", str(path)) == 0
    starter = tomllib.loads(path.read_text())
    assert starter["models"]["main"]["api_key"] == "${OPENAI_API_KEY}"
    assert "telegram" not in starter  # commented out
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret")
    capsys.readouterr()
    assert run("config", "check", str(path)) == 0
    shown = capsys.readouterr().out
    assert 'api_key = "***"' in shown
    assert "sk-very-secret" not in shown
    assert 'default_model = "main"' in shown
    assert "context_window = 128000" in shown  # the effective value


def test_init_never_overwrites(tmp_path, capsys):
    path = tmp_path / "stellaclaw.toml"
    path.write_text("mine")
    assert run("init", "--config", str(path)) == 1
    assert path.read_text() == "mine"
    assert "already exists" in capsys.readouterr().err


def test_a_missing_variable_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys):
    path = tmp_path / "stellaclaw.toml"
    assert run("init", "--config", str(path)) == 0
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    capsys.readouterr()
    assert run("config", "check", str(path)) == 2
    err = capsys.readouterr().err
    assert err == "config: models.main.api_key: environment variable OPENAI_API_KEY is not set\n"


@pytest.mark.parametrize(
    ("text", "line"),
    [
        (
            "default_model = 'm'\n[models.m]\nprovider='openai_chat'\nmodel='x'\ncolour=1\n",
            "config: models.m.colour: unknown key",
        ),
        (
            MODEL + "timeout_s='fast'\n",
            "config: models.m.timeout_s: expected `float`, got `str`",
        ),
        (
            "default_model = 'm'\n[models.m]\nprovider='anthropix'\nmodel='x'\n",
            "config: models.m.provider: expected one of anthropic, codex, openai_chat, "
            "openai_responses, "
            "got 'anthropix'",
        ),
        (
            "default_model = 'n'\n[models.m]\nprovider='openai_chat'\nmodel='x'\n",
            "config: default_model: 'n' is not a configured model (configured: m)",
        ),
        (
            MODEL + "[bus]\nin_partitions=0\n",
            "config: bus.in_partitions: expected `int` >= 1",
        ),
        (
            "default_model = 'm'\n[telegram]\nbot_token='t'\nallowed_user_ids=['me']\n"
            "[models.m]\nprovider='openai_chat'\nmodel='x'\n",
            "config: telegram.allowed_user_ids.0: expected `int`, got `str`",
        ),
        ("default_model = \n", "config: stellaclaw.toml is not valid TOML"),
        (
            MODEL + "capabilities=['tools', 'telepathy']\n",
            "config: models.m.capabilities.1: expected one of audio_in, file_in, image_in, "
            "image_out, pdf_in, reasoning, tools, web_search, got 'telepathy'",
        ),
        (
            MODEL + "prices={input=-1, output=2}\n",
            "config: models.m.prices.input: expected `float` >= 0",
        ),
        (
            MODEL + "prices={input=1}\n",
            "config: models.m.prices.output: missing required key",
        ),
        (
            MODEL + "media={transport='email'}\n",
            "config: models.m.media.transport: expected one of files_api, inline, got 'email'",
        ),
        (
            MODEL + "media={image_types=['png']}\n",
            "config: models.m.media.image_types.0: expected `str` matching",
        ),
        (
            MODEL + "chars_per_token=0\n",
            "config: models.m.chars_per_token: expected `float` > 0",
        ),
        (
            MODEL + "selectable='yes'\n",
            "config: models.m.selectable: expected `bool`, got `str`",
        ),
        (
            MODEL + "[compaction]\nmodel='summarizer'\n",
            "config: compaction.model: 'summarizer' is not a configured model",
        ),
        (
            MODEL + "[compaction]\ntrigger_ratio=1.5\n",
            "config: compaction.trigger_ratio: expected `float` <= 1",
        ),
        (
            MODEL + "auth_file=''\n",
            "config: models.m.auth_file: expected `str` of length >= 1",
        ),
    ],
)
def test_bad_config_is_one_line_naming_the_key(tmp_path, capsys, text, line):
    path = tmp_path / "stellaclaw.toml"
    path.write_text(text)
    assert run("config", "check", str(path)) == 2
    assert capsys.readouterr().err.startswith(line)


def test_dollar_dollar_is_a_literal_and_unknown_top_level_keys_are_refused():
    raw = {"default_model": "m", "models": {"m": {"provider": "openai_chat", "model": "$${x}"}}}
    assert config_file.parse(raw, {}).models["m"].model == "${x}"
    with pytest.raises(ConfigError, match=r"^config: cron: unknown key$"):
        config_file.parse({**raw, "cron": {}}, {})


def test_the_sandbox_table_is_checked(tmp_path):
    raw = {"default_model": "m", "models": {"m": {"provider": "openai_chat", "model": "x"}}}
    assert config_file.parse(raw, {}).sandbox.mode == "auto"
    wrong = [
        ({"mode": "bwrap"}, "sandbox.mode: expected one of auto, bubblewrap, disabled, subproc"),
        ({"software_mount_path": "opt"}, "sandbox.software_mount_path: expected `str` matching"),
        ({"env": {"1BAD": "x"}}, "sandbox.env"),
        ({"software_dir": str(tmp_path / "nope")}, "sandbox.software_dir: "),
    ]
    for table, line in wrong:
        with pytest.raises(ConfigError) as caught:
            config_file.parse({**raw, "sandbox": table}, {})
        assert str(caught.value).startswith(f"config: {line}")
    elsewhere = {**raw, "sandbox": {"software_dir": str(tmp_path / "nope")}}
    assert config_file.parse(elsewhere, {}, "session").sandbox.software_dir  # not its concern
    (tmp_path / "software").mkdir()
    fine = {**raw, "sandbox": {"software_dir": str(tmp_path / "software"), "env": {"A_B": "1"}}}
    assert config_file.parse(fine, {}, "tools").sandbox.env == {"A_B": "1"}
