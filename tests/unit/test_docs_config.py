"""docs/reference/config.md carries the settings table generated from `Settings`."""

import dataclasses
import importlib.util
from pathlib import Path
from types import ModuleType

from hubbub.config import Settings, env_name, flag

ROOT = Path(__file__).resolve().parents[2]


def _gen_config() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_config", ROOT / "docs" / "gen_config.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_contains_the_table_generated_from_settings() -> None:
    gen = _gen_config()
    doc = (ROOT / "docs" / "reference" / "config.md").read_text(encoding="utf-8")
    assert gen.render_block() in doc, (
        "docs/reference/config.md is stale: run `python docs/gen_config.py` and commit it"
    )


def test_generated_table_has_one_row_per_setting_with_flag_and_env_name() -> None:
    table = _gen_config().render_table()
    for f in dataclasses.fields(Settings):
        assert f"| `{flag(f.name)}` | `{env_name(f.name)}` |" in table
    assert len(table.splitlines()) == 2 + len(dataclasses.fields(Settings))
