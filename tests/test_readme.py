"""The README's configuration table and the settings object list exactly the same variables."""

import re
from pathlib import Path

from navembed_api.settings import ApiSettings
from navembed_pipeline.lib.settings import env_names

README = Path(__file__).resolve().parents[1] / "README.md"
DAGSTER_OWN = {"DAGSTER_HOME", "DAGSTER_POSTGRES_URL"}


def readme_variables() -> set[str]:
    text = README.read_text(encoding="utf-8")
    return set(re.findall(r"`((?:NAVEMBED|NAVIDROME|TEXT_EMBEDDING|OPENAI|DAGSTER)_[A-Z_]+)`", text))


def settings_variables() -> set[str]:
    return {name for names in env_names(ApiSettings).values() for name in names}


def test_every_setting_is_documented_in_the_readme() -> None:
    assert settings_variables() - readme_variables() == set()


def test_every_variable_the_readme_mentions_is_a_setting() -> None:
    assert readme_variables() - settings_variables() - DAGSTER_OWN == set()


def test_readme_opens_with_the_two_commands() -> None:
    first_block = README.read_text(encoding="utf-8").split("```")[1]
    commands = [line.split("#")[0].strip() for line in first_block.strip().splitlines()[1:]]
    assert commands == ["make demo", "make test"]
