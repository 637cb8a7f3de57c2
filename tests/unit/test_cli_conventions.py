"""One set of command-line conventions across every `darkpool` subcommand."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib

import click
import pytest
from click.testing import CliRunner

from core.paths import REPO_ROOT
from darkpool.cli import SUBCOMMANDS, cli


def _commands() -> list[tuple[str, click.Command]]:
    """Every command under `darkpool`, nested groups included, as ('stack up', command)."""
    ctx = click.Context(cli)
    out: list[tuple[str, click.Command]] = []

    def walk(prefix: str, cmd: click.Command) -> None:
        out.append((prefix, cmd))
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(f"{prefix} {name}".strip(), cmd.get_command(ctx, name))  # type: ignore[arg-type]

    walk("", cli)
    return out


def _option(path: str, name: str) -> click.Option:
    cmd = dict(_commands())[path]
    return next(p for p in cmd.params if isinstance(p, click.Option) and p.name == name)


def test_version_is_the_project_version():
    with open(REPO_ROOT / "pyproject.toml", "rb") as fh:
        version = tomllib.load(fh)["project"]["version"]
    done = subprocess.run([sys.executable, "-m", "darkpool.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0
    assert done.stdout.strip() == f"darkpool {version}"


def test_bare_darkpool_prints_the_help_and_exits_0():
    res = CliRunner().invoke(cli, [])
    assert res.exit_code == 0
    assert "Usage: darkpool" in res.output and "Commands:" in res.output
    assert all(name in res.output for name in SUBCOMMANDS)


@pytest.mark.parametrize("path", [p for p, _ in _commands()])
def test_dash_h_is_help_everywhere(path):
    res = CliRunner().invoke(cli, [*path.split(), "-h"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"Usage: darkpool {path}".rstrip())


def test_defaults_are_shown_one_way():
    """click's `[default: ...]` (show_default), never a default written into the help text."""
    hand_written = [f"{path} {opt.opts[0]}" for path, cmd in _commands()
                    for opt in cmd.params if isinstance(opt, click.Option)
                    if re.search(r"[\[(]default\b", opt.help or "", re.I)]
    assert hand_written == []
    help_text = CliRunner().invoke(cli, ["scorer", "serve", "-h"]).output
    assert "[default: 127.0.0.1]" in help_text  # --host does not ask: the group's setting shows it


@pytest.mark.parametrize(("path", "name"), [("scorer serve", "device"), ("scorer serve", "dtype"),
                                            ("train", "device"), ("train", "dtype"),
                                            ("evaluate", "preset"), ("demo", "preset"), ("generate", "preset")])
def test_closed_sets_are_choices(path, name):
    opt = _option(path, name)
    assert isinstance(opt.type, click.Choice)
    assert opt.default in opt.type.choices


def test_one_spelling_for_the_kafka_brokers():
    visible = {f"{path} {o}" for path, cmd in _commands() for p in cmd.params
               if isinstance(p, click.Option) and not p.hidden for o in p.opts if "bootstrap" in o}
    assert visible and all(v.endswith("--bootstrap-servers") for v in visible), visible
    old = _option("replay", "bootstrap")  # the old spelling still works, unlisted
    assert old.hidden and old.deprecated


def test_demo_default_is_the_makefiles():
    make = (REPO_ROOT / "Makefile").read_text()
    demo_preset = re.search(r"^DEMO_PRESET\s*\?=\s*(\S+)", make, re.M)
    assert demo_preset is not None
    assert "--preset $(DEMO_PRESET)" in make
    assert _option("demo", "preset").default == demo_preset.group(1)


def test_help_shows_the_defaults_that_hide_behind_none():
    """Options whose default is None (filled in later) still say what that default is."""
    from darkpool.evaluate.detectors import EvalConfig

    full, quick = EvalConfig(), EvalConfig.quick()
    assert _option("evaluate", "transformer_minutes").show_default == (
        f"{full.transformer_minutes:g}; --quick: {quick.transformer_minutes:g}")
    assert _option("evaluate", "seq_seconds").show_default == (
        f"{full.seq.max_seconds:g}; --quick: {quick.seq.max_seconds:g}")
    alerts_help = " ".join(CliRunner().invoke(cli, ["alerts", "-h"]).output.split())
    assert "[default: (no limit)]" in alerts_help and "[default: (wait for ever;" in alerts_help
