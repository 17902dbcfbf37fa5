"""Settings (PROTOCOL §Running the server): flags, HUBBUB_* environment, precedence."""

import argparse
import dataclasses

import pytest

from hubbub import cli, config
from hubbub.config import Settings
from hubbub.errors import ConfigError

# PROTOCOL §Running the server: these flags must keep working.
CONTRACT_FLAGS = (
    "--host", "--port", "--store", "--redis", "--jwt-secret", "--admin-token",
    "--allowed-origin", "--ring-timeout", "--typing-timeout", "--presence-grace",
    "--heartbeat", "--max-frame", "--workers",
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_are_those_of_the_protocol() -> None:
    s = config.load(env={})
    assert (s.host, s.port, s.store, s.redis, s.jwt_secret, s.admin_token) == (
        "127.0.0.1", 8080, "sqlite:///hubbub.db", None, None, None)
    assert s.allowed_origin == []
    assert (s.ring_timeout, s.typing_timeout, s.presence_grace, s.heartbeat) == (30, 3, 5, 20)
    assert (s.max_frame, s.workers) == (65536, 1)


def test_no_jwt_secret_means_dev_identity_mode() -> None:
    assert config.load(env={}).dev_identity
    assert not config.load(env={}, jwt_secret="s").dev_identity


@pytest.mark.parametrize("flag", CONTRACT_FLAGS)
def test_every_contract_flag_is_accepted_by_hubbub_serve(flag: str) -> None:
    value = "http://a.example" if flag == "--allowed-origin" else "7"
    args = cli.build_parser().parse_args(["serve", flag, value])
    assert getattr(args, flag[2:].replace("-", "_")) in ("7", ["http://a.example"])


def test_every_settings_field_has_a_flag_and_an_env_name() -> None:
    for f in dataclasses.fields(Settings):
        assert config.flag(f.name) == "--" + f.name.replace("_", "-")
        assert config.env_name(f.name) == "HUBBUB_" + f.name.upper()
    assert config.env_name("jwt_secret") == "HUBBUB_JWT_SECRET"


def test_flags_are_converted_to_the_field_types() -> None:
    s = config.load(parse("--port", "0", "--typing-timeout", "1.5", "--max-frame", "1024",
                          "--jwt-secret", "sekrit"), env={})
    assert (s.port, s.typing_timeout, s.max_frame, s.jwt_secret) == (0, 1.5, 1024, "sekrit")
    assert isinstance(s.port, int) and isinstance(s.typing_timeout, float)


def test_environment_variables_set_settings() -> None:
    env = {"HUBBUB_PORT": "0", "HUBBUB_HOST": "0.0.0.0", "HUBBUB_JWT_SECRET": "sekrit",
           "HUBBUB_PRESENCE_GRACE": "0.5", "HUBBUB_MAX_FRAME": "4096",
           "HUBBUB_STORE": "sqlite://:memory:", "HUBBUB_ADMIN_TOKEN": "adm"}
    s = config.load(env=env)
    assert (s.port, s.host, s.jwt_secret, s.presence_grace, s.max_frame, s.store,
            s.admin_token) == (0, "0.0.0.0", "sekrit", 0.5, 4096, "sqlite://:memory:", "adm")


def test_repeatable_flag_collects_every_value() -> None:
    s = config.load(parse("--allowed-origin", "http://a", "--allowed-origin", "http://b"), env={})
    assert s.allowed_origin == ["http://a", "http://b"]


def test_repeatable_setting_from_the_environment_is_comma_separated() -> None:
    s = config.load(env={"HUBBUB_ALLOWED_ORIGIN": "http://a, http://b,,"})
    assert s.allowed_origin == ["http://a", "http://b"]


def test_a_flag_wins_over_the_environment() -> None:
    s = config.load(parse("--port", "9000"), env={"HUBBUB_PORT": "7000"})
    assert s.port == 9000


def test_the_environment_wins_over_the_default() -> None:
    s = config.load(parse(), env={"HUBBUB_PORT": "7000"})
    assert s.port == 7000


def test_keyword_overrides_win_over_flags_and_environment() -> None:
    s = config.load(parse("--port", "9000"), env={"HUBBUB_PORT": "7000"}, port=1234)
    assert s.port == 1234


def test_load_reads_os_environ_when_no_env_is_given(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBBUB_RING_TIMEOUT", "12")
    assert config.load().ring_timeout == 12.0


def test_empty_optional_environment_value_means_unset() -> None:
    assert config.load(env={"HUBBUB_REDIS": ""}).redis is None
    assert config.load(env={"HUBBUB_ADMIN_TOKEN": ""}).admin_token is None


@pytest.mark.parametrize("blank", ["", " ", "\t"])
def test_an_empty_jwt_secret_is_refused_not_taken_for_dev_identity_mode(blank: str) -> None:
    # `--jwt-secret "$JWT_SECRET"` with JWT_SECRET unset: fail closed, not open.
    with pytest.raises(ConfigError, match="--jwt-secret is set but empty"):
        config.load(env={"HUBBUB_JWT_SECRET": blank})
    with pytest.raises(ConfigError, match="--jwt-secret is set but empty"):
        config.load(parse("--jwt-secret", blank), env={})


def test_empty_environment_value_keeps_the_default() -> None:
    # `HUBBUB_HOST=${HOST}` with HOST unset must not leave the server without a host.
    assert config.load(env={"HUBBUB_HOST": "", "HUBBUB_STORE": ""}).host == "127.0.0.1"
    assert config.load(env={"HUBBUB_STORE": ""}).store == "sqlite:///hubbub.db"


def test_an_empty_numeric_or_boolean_variable_keeps_the_default() -> None:
    st = config.load(env={"HUBBUB_PORT": "", "HUBBUB_PRESENCE_GRACE": "", "HUBBUB_WORKERS": "",
                          "HUBBUB_MAX_FRAME": "", "HUBBUB_REUSE_PORT": ""})
    assert (st.port, st.presence_grace, st.workers, st.max_frame, st.reuse_port) == (
        8080, 5.0, 1, 65536, False)


def test_a_boolean_flag_alone_means_true_and_takes_a_value_too() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    assert config.load(parser.parse_args(["--reuse-port"]), env={}).reuse_port is True
    assert config.load(parser.parse_args(["--reuse-port", "false"]), env={}).reuse_port is False
    assert config.load(parser.parse_args([]), env={}).reuse_port is False


def test_the_help_shows_each_default() -> None:
    parser = argparse.ArgumentParser()
    config.add_arguments(parser)
    text = parser.format_help()
    assert "(default 8080)" in text and "(default 65536)" in text


def test_non_numeric_value_is_a_config_error_naming_the_flag() -> None:
    with pytest.raises(ConfigError, match="--port"):
        config.load(env={"HUBBUB_PORT": "eighty"})


def test_choice_from_the_environment_is_checked() -> None:
    with pytest.raises(ConfigError, match="--log-level"):
        config.load(env={"HUBBUB_LOG_LEVEL": "loud"})
    with pytest.raises(ConfigError, match="--log-format"):
        config.load(env={"HUBBUB_LOG_FORMAT": "xml"})


def test_valid_choice_from_the_environment_is_accepted() -> None:
    assert config.load(env={"HUBBUB_LOG_FORMAT": "json"}).log_format == "json"


def test_choice_flag_is_checked_by_the_parser() -> None:
    with pytest.raises(SystemExit):
        parse("--log-format", "xml")


def test_workers_above_one_need_redis() -> None:
    with pytest.raises(ConfigError, match="--redis"):
        config.load(env={}, workers=2)


def test_workers_from_the_environment_need_redis() -> None:
    with pytest.raises(ConfigError, match="--redis"):
        config.load(env={"HUBBUB_WORKERS": "4"})


def test_workers_must_be_at_least_one() -> None:
    with pytest.raises(ConfigError, match="--workers"):
        config.load(env={}, workers=0)


@pytest.mark.parametrize("port", [-1, 65536])
def test_port_outside_0_to_65535_is_refused(port: int) -> None:
    with pytest.raises(ConfigError, match="--port"):
        config.load(env={}, port=port)


def test_max_frame_below_256_bytes_is_refused() -> None:
    with pytest.raises(ConfigError, match="--max-frame"):
        config.load(env={}, max_frame=255)


@pytest.mark.parametrize(("name", "value"), [
    ("heartbeat", "-5"), ("rate_limit", "-1"), ("presence_grace", "nan"),
    ("ring_timeout", "inf"), ("max_connections", "-3")])
def test_a_negative_or_not_finite_number_is_refused(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=config.flag(name)):
        config.load(env={config.env_name(name): value})


@pytest.mark.parametrize("name", ["ring_timeout", "auth_timeout", "max_queue", "max_rooms",
                                  "max_content", "backlog", "turn_ttl"])
def test_zero_is_refused_where_it_means_nothing_useful(name: str) -> None:
    with pytest.raises(ConfigError, match=f"{config.flag(name)} must be more than 0"):
        config.load(env={}, **{name: 0})


@pytest.mark.parametrize("name", ["heartbeat", "rate_limit", "chat_rate", "max_connections",
                                  "presence_grace", "recovery_limit", "port"])
def test_zero_is_accepted_where_it_means_off_or_no_limit(name: str) -> None:
    assert getattr(config.load(env={}, **{name: 0}), name) == 0


@pytest.mark.parametrize("url", ["redis://localhost:6379/abc", "redis://h/1x",
                                 "redis://h/\u0661"])
def test_a_redis_database_that_is_not_a_number_is_refused(url: str) -> None:
    with pytest.raises(ConfigError, match="--redis: the database"):
        config.load(env={}, redis=url, store="sqlite:///x.db")


@pytest.mark.parametrize("url", ["redis://localhost:6379/2", "redis://localhost:6379",
                                 "redis://localhost:6379/", "unix:///tmp/r.sock?db=3"])
def test_a_redis_url_with_a_numeric_database_or_none_is_accepted(url: str) -> None:
    assert config.load(env={}, redis=url, store="sqlite:///x.db").redis == url


def test_hubbub_serve_with_workers_but_no_redis_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("HUBBUB_")]:
        monkeypatch.delenv(name)
    assert cli.main(["serve", "--workers", "2"]) == 2
    assert "--redis" in capsys.readouterr().err
