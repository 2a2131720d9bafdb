"""Configuration layering (flag > environment > TOML file > default) and the README table."""

from __future__ import annotations

from pathlib import Path

import pytest

from dfsring.foundation.config import ConfigError, load_config, options_table

ROOT = Path(__file__).resolve().parents[2]


def test_readme_table_matches_the_options() -> None:
    readme = (ROOT / "README.md").read_text()
    assert options_table() in readme, "regenerate the README table from options_table()"


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    conf = tmp_path / "node.toml"
    conf.write_text('data-dir = "/from/file"\nport = 7001\nzone = "file-zone"\nn = 5\n')
    env = {"DFSRING_CONFIG": str(conf), "DFSRING_PORT": "7002", "DFSRING_ZONE": "env-zone"}
    cfg = load_config(["--zone", "flag-zone"], env)
    assert cfg.data_dir == Path("/from/file")  # file only
    assert cfg.port == 7002  # env beats file
    assert cfg.zone == "flag-zone"  # flag beats env
    assert cfg.n == 5 and cfg.r == 2  # file, then default
    assert cfg.advertise == "127.0.0.1:7102"  # peers: the peer listener, --port + 100
    assert cfg.advertise_api == "127.0.0.1:7002"
    assert cfg.seeds == ()


@pytest.mark.parametrize(("argv", "env", "needle"), [
    ([], {}, "--data-dir is required"),
    (["--data-dir", "d", "--port", "70000"], {}, "not a TCP port"),
    (["--data-dir", "d", "--n", "0"], {}, "--n"),
    (["--data-dir", "d", "--w", "4"], {}, "cannot exceed --n"),
    (["--data-dir", "d", "--partitions", "1000"], {}, "power of two"),
    (["--data-dir", "d", "--seeds", "nohost"], {}, "HOST:PORT"),
    (["--data-dir", "d", "--host", "0.0.0.0"], {}, "--advertise is required"),
    (["--data-dir", "d", "--host", "0.0.0.0", "--advertise", "h:1"], {},
     "--advertise-api is required"),
    (["--data-dir", "d", "--advertise-api", "nohost"], {}, "HOST:PORT"),
    (["--data-dir", "d", "--port", "7000", "--peer-port", "7000"], {}, "other than --port"),
    (["--data-dir", "d"], {"DFSRING_LOG_JSON": "perhaps"}, "not a boolean"),
    (["--data-dir", "d"], {"DFSRING_DURABILITY": "sometimes"}, "fsync, none"),
])
def test_bad_configuration_is_one_clear_error(argv: list[str], env: dict[str, str],
                                              needle: str) -> None:
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(")):
        load_config(argv, env)


def test_unknown_or_broken_config_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("colour = 'blue'\n")
    with pytest.raises(ConfigError, match="unknown option"):
        load_config(["--data-dir", "d", "--config", str(bad)], {})
    bad.write_text("port = = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(["--data-dir", "d", "--config", str(bad)], {})
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(["--data-dir", "d", "--config", str(tmp_path / "absent.toml")], {})
