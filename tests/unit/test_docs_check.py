"""scripts/check_docs.py: the docs name only modules, names, flags and environment
variables that exist. It passes on the tree as it is, and a wrong name planted in a copy
of a real doc fails it, named, at its line: one planted fault per kind."""

from __future__ import annotations

import doctest
import importlib.util
import re
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load():
    spec = importlib.util.spec_from_file_location("check_docs", ROOT / "scripts" / "check_docs.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["check_docs"] = mod  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


check_docs = _load()


@pytest.fixture(scope="module")
def code():
    return check_docs.Code()


def test_the_extraction_rules_hold_their_examples():
    # scripts/ is not among the packages `make test` runs doctests for: run them here
    failures, tried = doctest.testmod(check_docs)
    assert tried >= 10 and failures == 0


def test_the_docs_as_they_are_pass_and_every_kind_of_mention_is_read(code):
    counts: Counter = Counter()
    problems = check_docs.check_all(code, counts)
    assert not problems, "\n".join(map(str, problems))
    # today: ~190 paths, ~80 names, ~350 flags, ~12 variables; a broken extractor reads 0
    assert counts["path"] > 100 and counts["name"] > 40 and counts["flag"] > 150 and counts["env"] > 5, counts


# (doc, text in it, the wrong text planted instead, what the one new problem must name)
PLANTED = [
    # module paths
    ("darkpool/market/README.md", "`tests/unit/test_simulator_varied.py`", "`tests/unit/test_simulator_variety.py`",
     "tests/unit/test_simulator_variety.py"),
    ("darkpool/market/README.md", "`core.schemas.LABELED_SCHEMA`", "`core.schema.LABELED_SCHEMA`", "core.schema"),
    ("darkpool/market/README.md", "of `invariants.py`", "of `invariant.py`", "invariant.py"),
    # functions, classes, constants
    ("darkpool/market/README.md", "(`SimConfig.close_utc`)", "(`core.features.SESSION_CLOSE_UTC_S`)",
     "SESSION_CLOSE_UTC_S"),
    ("darkpool/market/README.md", "`model.windows.time_split`", "`model.windows.time_splits`", "time_splits"),
    ("darkpool/market/README.md", "`replay.BAD_KINDS`", "`replay.BAD_KIND`", "BAD_KIND"),
    ("darkpool/market/README.md", "`SimConfig.marked_close_share`", "`SimConfig.marked_close_shares`",
     "marked_close_shares"),
    ("docs/ARCHITECTURE.md", "`SCENARIOS`, `RULES` (validation", "`SCENARIOS`, `RULEZ` (validation", "RULEZ"),
    # names that exist but that only the tests call, shown as the program's path
    ("docs/ARCHITECTURE.md", "`pane_features_by_key(df, keys)`", "`pane_features(df)`", "`pane_features`"),
    ("model/README.md", "`assemble_raw(raw, end_panes, slide_ns, normals)`",
     "`window_tensor(panes, end_pane, T, slide_ns, normal)`", "`window_tensor`"),
    # flags: unknown, hidden deprecated alias, abbreviated, bare, of a script
    ("darkpool/market/README.md", "--rate-scale 10", "--rate-scaling 10", "--rate-scaling"),
    ("darkpool/market/README.md", "[--bootstrap-servers host:port]", "[--bootstrap host:port]", "--bootstrap"),
    ("jobs/README.md", "--scorer-url http://localhost:8500", "--scorer http://localhost:8500", "--scorer`"),
    ("darkpool/market/README.md", "(`--skip-weekends`: weekdays", "(`--skip-weekend`: weekdays", "--skip-weekend"),
    ("darkpool/market/README.md", "--repeat 3 --replay-events 0` times", "--repeats 3 --replay-events 0` times",
     "--repeats"),
    # environment variables
    ("darkpool/market/README.md", "`DARKPOOL_DATA_DIR`", "`DARKPOOL_DATA_DIRS`", "DARKPOOL_DATA_DIRS"),
    ("README.md", "override with `DARKPOOL_CACHE`", "override with `DARKPOOL_WINDOW_*`", "DARKPOOL_WINDOW_"),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "old", "new", "named"), PLANTED, ids=[p[2] for p in PLANTED])
def test_a_planted_wrong_name_fails_the_check_and_is_named(code, doc, old, new, named):
    text = (ROOT / doc).read_text()
    assert old in text, f"{doc} no longer holds {old!r}: pick another place to plant the fault"
    planted = text.replace(old, new, 1)
    line = planted[:planted.index(new)].count("\n") + 1
    before = set(check_docs.check_text(text, doc, code))
    new_problems = sorted(set(check_docs.check_text(planted, doc, code)) - before)
    assert len(new_problems) == 1 and named in new_problems[0].what and new_problems[0].line == line, new_problems


def test_the_command_reports_file_and_line_and_exits_1(tmp_path, capsys):
    doc = "darkpool/market/README.md"
    copy = tmp_path / "README.md"
    copy.write_text((ROOT / doc).read_text().replace("[--bootstrap-servers host:port]", "[--bootstrap host:port]"))
    assert check_docs.main([str(copy), "--as", doc]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert f"{copy}:8: `darkpool replay --bootstrap` is a hidden option (deprecated alias): show the current one" in out


def test_the_codes_own_messages_name_only_variables_it_reads(code):
    msg = 'raise ValueError("... set the window config (DARKPOOL_WINDOW_*) to match")\n'
    assert [str(p) for p in check_docs.check_code_text(msg, "x.py", code)] == [
        "x.py:1: no environment variable starts with `DARKPOOL_WINDOW_`"]
    fixed = msg.replace("DARKPOOL_WINDOW_*", "DARKPOOL_SLIDE_S and DARKPOOL_SIZE_S")
    assert check_docs.check_code_text(fixed, "x.py", code) == []


def test_an_allowed_name_is_not_a_problem(code, monkeypatch):
    text = "Point `DARKPOOL_NO_SUCH_VAR` at it.\n"
    assert len(check_docs.check_text(text, "README.md", code)) == 1
    monkeypatch.setitem(check_docs.ALLOWED, ("env", "DARKPOOL_NO_SUCH_VAR"), "read by an upstream tool")
    assert check_docs.check_text(text, "README.md", code) == []


def test_a_hand_edited_generated_block_is_stale():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    planted = re.sub(r"(<!-- generated: packages -->\n).*?(<!-- end generated -->)",
                     r"\1The scorer image gets `core` and `model`.\n\2", text, flags=re.S)  # fmt: skip
    assert planted != text and gen._fill(planted, "packages", gen.packages_block(), "docs/ARCHITECTURE.md") == text


def test_hidden_options_are_known_as_hidden(code):
    visible, hidden = code.command_flags("darkpool replay")
    assert "--bootstrap" in hidden and "--bootstrap-servers" in visible
