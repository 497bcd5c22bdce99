"""The deployment examples in deploy/ name only real settings and commands, and publish only on loopback.

Docker cannot run on the test machine, so the image and compose file are checked statically:
every variable they set must be one the settings object reads (a typo would be silently ignored
at run time), and every command they run must exist in the CLI.
"""

import re
from pathlib import Path

import yaml

from navembed_api.settings import ApiSettings
from navembed_pipeline.cli import build_parser
from navembed_pipeline.lib.settings import env_names

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
KNOWN = {name for names in env_names(ApiSettings).values() for name in names}


def is_navembed_variable(name: str) -> bool:
    return name.startswith(("NAVEMBED_", "NAVIDROME_"))


def cli_commands() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(sub.choices)


def test_the_compose_example_sets_real_settings_and_publishes_on_loopback_only() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    navembed = compose["services"]["navembed"]
    variables = [v for v in navembed["environment"] if is_navembed_variable(v)]
    assert variables and set(variables) <= KNOWN, set(variables) - KNOWN
    assert all(port.startswith("127.0.0.1:") for port in navembed["ports"]), navembed["ports"]
    assert (DEPLOY / navembed["build"]["context"] / navembed["build"]["dockerfile"]).resolve() == \
        DEPLOY / "Dockerfile"
    named = {volume.split(":")[0] for volume in navembed["volumes"] if not volume.startswith("/")}
    assert named <= set(compose["volumes"])
    assert "NAVEMBED_ADMIN_TOKEN" in navembed["environment"]  # batch control is off without it


def test_the_dockerfile_sets_real_settings_runs_a_real_command_and_ships_no_weights() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    env_block = re.search(r"^ENV (.+?)(?=^\S)", text, flags=re.M | re.S).group(1)
    variables = re.findall(r"(\w+)=", env_block)
    assert variables and set(variables) <= KNOWN, set(variables) - KNOWN
    command = re.search(r'^CMD \["navembed", "(\w+)"\]', text, flags=re.M).group(1)
    assert command in cli_commands()
    copied = re.findall(r"^COPY (\S+)", text, flags=re.M)
    assert all((ROOT / path).exists() for path in copied), copied
    instructions = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert not any(word in line for line in instructions for word in ("models download", "huggingface", "hf_hub"))
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "var" in ignored  # no local data or downloaded weights in the build context


def test_the_systemd_unit_and_env_example_name_real_commands_and_settings() -> None:
    example = (DEPLOY / "navembed.env.example").read_text()
    variables = [line.split("=", 1)[0] for line in example.splitlines() if line and not line.startswith("#")]
    assert variables and set(variables) <= KNOWN, set(variables) - KNOWN
    unit = (DEPLOY / "navembed.service").read_text()
    command = re.search(r"^ExecStart=\S*navembed (\w+)", unit, flags=re.M).group(1)
    assert command in cli_commands()
