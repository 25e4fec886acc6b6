"""The documentation stays true.

The settings table of ``docs/operations.md`` names every variable the services read, each under the
service that reads it, with the default the service's settings object really has. The README stays
a guide a newcomer reads through (at most ``README_MAX_LINES`` lines), and every relative link in
it and in ``docs/`` leads to a file that exists (and to a heading there, when it names one).

How a row's default cell is read:

- `` `value` `` (and any words after it): the default under every profile. The text goes through
  the service's own settings validation, so `` `0.25` ``, `` `false` ``, `` `./data` `` and enum
  names compare as the service would read them from the environment.
- ``*(empty...)*``: the empty string.
- ``*the profile's*`` (then words): the default depends on ``PROFILE``; every profile's value must
  appear in the cell, in backticks, or as the word "empty" for an empty one.
- ``*computed*`` (then words): only for a field whose default is None or made by a factory at
  start (it depends on the machine), so no fixed value can be documented.

A default is what the service runs with when the environment sets nothing: the profile's defaults
applied, so a field default that every profile replaces is not what the README may claim.
"""

from __future__ import annotations

import re
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from scene_rpc.profiles import PROFILES
from tests.deploy.settings_env import SETTINGS_MODULES, env_names, parse_as, settings_class

ROOT = Path(__file__).resolve().parent.parent
README_PATH = ROOT / "README.md"
README = README_PATH.read_text()
OPERATIONS = (ROOT / "docs" / "operations.md").read_text()
README_MAX_LINES = 250
TABLE_HEADER = "| variable | service | default | meaning |"
# The one variable that selects the profile: its own default does not vary with itself.
PROFILE_ENV = "PROFILE"
PROFILE_MARK = "*the profile's*"
COMPUTED_MARK = "*computed*"
EMPTY_MARK = "*(empty"


def _cells(line: str) -> list[str]:
    # Split on the table's pipes, not on the escaped ones inside values (`a\|b`).
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def settings_rows() -> list[tuple[str, str, str]]:
    """(variable, service, default cell) of each row of the settings table; a row naming two
    variables (`A` / `B`) with two defaults gives one row each."""
    lines = OPERATIONS.split("\n")
    start = lines.index(TABLE_HEADER) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        names, services, default = _cells(line)[:3]
        names = names.split(" / ")
        defaults = default.split(" / ") if len(names) > 1 else [default]
        assert len(defaults) == len(names), f"{line}: as many defaults as variables"
        for name, value in zip(names, defaults, strict=True):
            for service in services.split(", "):
                rows.append((name.strip("`"), service, value))
    return rows


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def effective_defaults(service: str, env: str) -> dict[str, Any]:
    """Profile name -> the field's value with an otherwise empty environment."""
    cls = settings_class(service)
    field_name = env_names(service)[env]
    if env == PROFILE_ENV or PROFILE_ENV not in env_names(service):
        return {"any": _plain(getattr(cls.model_validate({}), field_name))}
    # model_validate reads no environment: only the profile is set.
    return {name: _plain(getattr(cls.model_validate({PROFILE_ENV: name}), field_name))
            for name in PROFILES}


def _documented(service: str, env: str, text: str) -> Any:
    return parse_as(service, env, text.replace("\\|", "|"))


def default_problem(service: str, env: str, cell: str) -> str | None:
    """Why ``cell`` misstates the default of ``env``, or None when it is right."""
    values = effective_defaults(service, env)
    distinct = []
    for value in values.values():
        if value not in distinct:
            distinct.append(value)
    field = settings_class(service).model_fields[env_names(service)[env]]
    if cell.startswith(COMPUTED_MARK):
        if field.default is None or field.default_factory is not None:
            return None
        return f"has the fixed default {distinct}: write it instead of {COMPUTED_MARK}"
    if cell.startswith(PROFILE_MARK):
        if len(distinct) == 1:
            return f"is {distinct[0]!r} under every profile: write it instead of {PROFILE_MARK}"
        documented = [_documented(service, env, text) for text in re.findall(r"`([^`]*)`", cell)
                      if _parses(service, env, text)]
        if "empty" in cell:
            documented.append("")
        missing = [(name, value) for name, value in values.items() if value not in documented]
        return f"does not name the profiles' values {missing}" if missing else None
    if len(distinct) > 1:
        return f"depends on the profile ({values}): write {PROFILE_MARK} and each value"
    if cell.startswith(EMPTY_MARK):
        text = ""
    else:
        match = re.match(r"`([^`]*)`", cell)
        if match is None:
            return (f"{cell!r} is none of `value`, {EMPTY_MARK}...)*, {PROFILE_MARK}, "
                    f"{COMPUTED_MARK}")
        text = match.group(1)
    documented = _documented(service, env, text)
    return None if documented == distinct[0] else (
        f"documented {text!r} (read as {documented!r}), the code's default is {distinct[0]!r}")


def _parses(service: str, env: str, text: str) -> bool:
    try:
        _documented(service, env, text)
    except ValueError:  # pydantic's ValidationError: a backticked word that is not a value
        return False
    return True


ROWS = settings_rows()


@pytest.mark.parametrize("service", sorted(SETTINGS_MODULES))
def test_every_setting_is_in_the_readme_table(service):
    documented = {name for name, row_service, _ in ROWS if row_service == service}
    missing = sorted(set(env_names(service)) - documented)
    assert not missing, f"docs/operations.md settings table lacks {service}'s {missing}"


def test_every_row_is_a_variable_its_service_reads():
    unknown = [(name, service) for name, service, _ in ROWS
               if (service not in SETTINGS_MODULES or name not in env_names(service))]
    assert not unknown, f"docs/operations.md settings rows no service reads: {unknown}"


@pytest.mark.parametrize(("name", "service", "cell"), ROWS, ids=[f"{r[1]}-{r[0]}" for r in ROWS])
def test_each_documented_default_is_the_codes(name, service, cell):
    if service not in SETTINGS_MODULES or name not in env_names(service):
        pytest.skip("not a variable of this service: test_every_row_is_a_variable_... says so")
    problem = default_problem(service, name, cell)
    assert problem is None, f"docs/operations.md row {name} ({service}): {problem}"


def test_the_rules_catch_drift():
    # Wrong values (SEG_POINTS_PER_BATCH read `64` before issue 18).
    assert "code's default is 0" in default_problem("depth", "DEPTH_BATCH_SIZE", "`2`")
    assert "code's default is 0" in default_problem("segment", "SEG_POINTS_PER_BATCH", "`64`")
    # A value every profile replaces is not the default; nor is one profile's value enough.
    assert "depends on the profile" in default_problem("segment", "SEG_POINTS_PER_SIDE", "`32`")
    assert "does not name" in default_problem("segment", "SEG_POINTS_PER_SIDE",
                                              f"{PROFILE_MARK}: `16`")
    assert "under every profile" in default_problem("segment", "SEG_PORT", PROFILE_MARK)
    assert "fixed default" in default_problem("segment", "SEG_PORT", COMPUTED_MARK)
    assert default_problem("orchestrator", "DATA_DIR", "`./data`") is None
    assert default_problem("imagegen", "IMAGEGEN_QUALITY", "*(empty: the API's default)*") is None


def test_the_two_commands_are_documented():
    assert "make run" in README and "make test" in README


def test_the_readme_is_a_guide_not_a_notebook():
    lines = README.count("\n") + (not README.endswith("\n"))
    assert lines <= README_MAX_LINES, (
        f"README.md has {lines} lines (at most {README_MAX_LINES}): measurements go to "
        "docs/performance.md, settings and operations to docs/operations.md")


# -- links ----------------------------------------------------------------------------------------

LINKED_DOCS = [README_PATH, *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def heading_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped,
    spaces as hyphens, a repeated heading numbered -1, -2, ..."""
    anchors: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", FENCE.sub("", text), re.M):
        plain = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
        slug = re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-")
        anchor, n = slug, 0
        while anchor in anchors:
            n += 1
            anchor = f"{slug}-{n}"
        anchors.add(anchor)
    return anchors


def relative_links(path: Path) -> list[str]:
    return [target for target in LINK.findall(FENCE.sub("", path.read_text()))
            if not re.match(r"[a-z][a-z0-9+.-]*:", target)]  # http:, https:, mailto: ...


def link_problem(source: Path, target: str) -> str | None:
    file_part, _, anchor = target.partition("#")
    linked = (source.parent / file_part).resolve() if file_part else source
    if not linked.exists():
        shown = linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked
        return f"{shown} does not exist"
    if anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked.read_text()):
        return f"{linked.name} has no heading #{anchor}"
    return None


@pytest.mark.parametrize("doc", LINKED_DOCS,
                         ids=[path.relative_to(ROOT).as_posix() for path in LINKED_DOCS])
def test_every_relative_link_leads_somewhere(doc):
    broken = [(target, problem) for target in relative_links(doc)
              if (problem := link_problem(doc, target)) is not None]
    assert not broken, f"{doc.relative_to(ROOT)}: broken links {broken}"


def test_the_link_check_catches_a_broken_link():
    headings = "# Choosing a profile\n## `GET /health`, then\n## Choosing a profile"
    assert heading_anchors(headings) == {
        "choosing-a-profile", "get-health-then", "choosing-a-profile-1"}
    assert link_problem(README_PATH, "docs/operations.md#settings") is None
    assert "does not exist" in link_problem(README_PATH, "docs/no-such-file.md")
    assert "no heading" in link_problem(README_PATH, "docs/operations.md#no-such-heading")
