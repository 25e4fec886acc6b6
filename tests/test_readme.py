"""The root README stays true: its settings table names every variable the services read."""

from pathlib import Path

import pytest

from tests.deploy.settings_env import SETTINGS_MODULES, env_names

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


@pytest.mark.parametrize("service", sorted(SETTINGS_MODULES))
def test_every_setting_is_in_the_readme_table(service):
    missing = [name for name in env_names(service) if f"| `{name}` |" not in README
               and f"`{name}` /" not in README and f"/ `{name}`" not in README]
    assert not missing, f"README settings table lacks {service}'s {missing}"


def test_the_two_commands_are_documented():
    assert "make run" in README and "make test" in README
