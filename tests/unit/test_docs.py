"""The docs agree with the code: every `darkpool ...` command line in them parses against
the real CLI, the generated parts are up to date, figures are not contradictory, and
user-facing text names no internal work items."""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import click
import pytest

from darkpool.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = sorted(
    {ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("*/README.md"), *ROOT.glob("*/*/README.md")}
    - set(ROOT.glob(".*/**/README.md"))
)
DOCS = [p for p in DOCS if not any(part.startswith(".") for part in p.relative_to(ROOT).parts)]
PIPE = "\x00"  # a `\|` of a markdown table cell: alternatives in a synopsis, not a shell pipe


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- command lines --------------------------------------------------------------------
def _snippets(text: str) -> list[tuple[int, str]]:
    """(line number, shell text) of every code block line (continuations joined) and inline
    code span of a markdown file."""
    out, in_block, pending, start = [], False, "", 0
    for no, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block, pending = not in_block, ""
            continue
        if in_block:
            code = re.sub(r"(^|\s)#.*$", "", line)  # shell comment
            if not pending:
                start = no
            if code.rstrip().endswith("\\"):
                pending += code.rstrip()[:-1] + " "
                continue
            out.append((start, pending + code))
            pending = ""
        else:
            out += [(no, m.group(1)) for m in re.finditer(r"`([^`]+)`", line.replace("\\|", PIPE))]
    return out


def _commands(text: str) -> list[tuple[int, list[str]]]:
    """Each `darkpool ARGS` found, as its argument list (synopsis brackets and `...`
    dropped, the first of `a|b` alternatives taken)."""
    found = []
    for no, snippet in _snippets(text):
        for m in re.finditer(r"(?:^|[\s(;&])(?:[\w./-]*/)?darkpool[ \t]+(.*)", snippet):
            rest = re.split(r"\s(?:\||&&|;|>|2>)\s|\)|`", m.group(1))[0]
            rest = re.sub(r"<[^<>]*>", "PLACEHOLDER", rest)  # <job id>: one value
            try:
                tokens = shlex.split(rest)
            except ValueError:
                tokens = rest.split()
            args = []
            for tok in tokens:
                tok = tok.strip("[]").split(PIPE)[0]
                if tok and tok not in ("...", "…"):
                    args.append(tok)
            found.append((no, args))
    return found


def parse_problem(args: list[str]) -> str | None:
    """Why `darkpool ARGS` would not parse (unknown subcommand or option, extra arguments,
    a required option missing), or None. Parses without invoking and without converting
    values (placeholders like DIR stay valid)."""
    cmd: click.Command = cli
    original = list(args)
    ctx = click.Context(cli, info_name="darkpool", **cli.context_settings)
    while True:
        try:
            opts, rest, _ = cmd.make_parser(ctx).parse_args(list(args))
        except click.UsageError as exc:
            return exc.format_message()
        if any(ctx.help_option_names and k == "help" for k in opts) or "version" in opts:
            return None
        if isinstance(cmd, click.Group):
            if not rest:
                return None if cmd.invoke_without_command else f"`{ctx.command_path}` needs a subcommand"
            # `stack up/down/status`: alternatives, as in a synopsis
            sub = cmd.get_command(ctx, rest[0]) or cmd.get_command(ctx, rest[0].split("/")[0])
            if sub is None:
                return f"no such command `{ctx.command_path} {rest[0]}`"
            ctx = click.Context(sub, info_name=rest[0], parent=ctx)
            cmd, args = sub, rest[1:]
            continue
        if rest and not ctx.allow_extra_args:
            return f"`{ctx.command_path}`: unexpected extra arguments {rest}"
        missing = [p.opts[0] if isinstance(p, click.Option) else p.name for p in cmd.params
                   if p.required and p.name not in opts and not p.envvar]  # fmt: skip
        # a bare name in prose (`darkpool inject` reads ...) is a mention, not a command line
        mention = not any(a.startswith("-") for a in original)
        if missing and not mention and not ({"resume"} & opts.keys()):
            return f"`{ctx.command_path}`: missing required {missing}"
        return None


def _all_commands() -> list[tuple[str, list[str]]]:
    return [(f"{p.relative_to(ROOT)}:{no}", args) for p in DOCS for no, args in _commands(p.read_text())]


def test_the_docs_hold_darkpool_command_lines():
    cmds = _all_commands()
    assert len(cmds) > 30 and {a[0] for _, a in cmds if a} >= {"generate", "train", "evaluate", "alerts"}


def test_every_documented_command_line_parses_against_the_cli():
    bad = [f"{where}: darkpool {' '.join(args)}  -> {why}"
           for where, args in _all_commands() if (why := parse_problem(args))]  # fmt: skip
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(
    "args",
    [["evaluat", "--data", "D", "--out", "O"], ["evaluate", "--data", "D"], ["generate", "--no-such-flag"],
     ["alerts", "extra"], ["stack", "sideways"]],
)  # fmt: skip
def test_the_checker_catches_bad_command_lines(args: list[str]):
    assert parse_problem(args)


def test_synopsis_notation_is_read_as_a_command():
    (_, args), = _commands("| `darkpool generate [--preset tiny\\|default] [--plot]` | x |")  # fmt: skip
    assert args == ["generate", "--preset", "tiny", "--plot"] and parse_problem(args) is None


# ---- generated text ------------------------------------------------------------------
def test_generated_docs_are_up_to_date():
    stale = _gen_docs().stale()
    assert not stale, f"{stale} differ from what the code says: run `python scripts/gen_docs.py`"


def test_the_documented_example_line_is_what_format_line_prints():
    from core import alerts

    gen = _gen_docs()
    alerts.validate(gen.EXAMPLE_ALERT | alerts.iso_times(gen.EXAMPLE_ALERT))
    assert alerts.format_line(gen.EXAMPLE_ALERT) in (ROOT / "docs" / "ALERTS.md").read_text()


def test_every_channel_is_in_the_channel_doc():
    from core.channels import CHANNEL_DESCRIPTIONS, CHANNELS

    text = (ROOT / "docs" / "CHANNELS.md").read_text()
    for c in CHANNELS:
        assert f"| `{c}` |" in text and CHANNEL_DESCRIPTIONS[c] in text


# ---- figures and wording -------------------------------------------------------------
def test_test_count_figures_do_not_contradict_each_other():
    counts = {m.group(1) for p in DOCS for m in re.finditer(r"(\d[\d,]*) passed", p.read_text())}
    assert len(counts) <= 1, f"different test counts in the docs: {sorted(counts)}; keep one (or none)"


INTERNAL = re.compile(r"\bissue[- ]?#?\d+|\bissue's targets|Table \d+\b|Rules of engagement|Targets \(issue", re.I)


def test_user_facing_text_names_no_internal_work_items():
    hits = [f"{p.relative_to(ROOT)}:{no}: {line.strip()}"
            for p in DOCS for no, line in enumerate(p.read_text().splitlines(), 1)
            if INTERNAL.search(line)]  # fmt: skip
    assert not hits, "\n".join(hits)


def test_the_docs_describe_the_scorer_clients_connection_pool_as_it_is():
    import inspect

    from model.scorer.client import ScorerClient

    pool = inspect.signature(ScorerClient.__init__).parameters["max_connections"].default
    if pool > 1:
        hits = [str(p.relative_to(ROOT)) for p in DOCS if re.search(r"one pooled connection", p.read_text(), re.I)]
        assert not hits, f"{hits} say one pooled connection; the client pools up to {pool} (max_connections)"
