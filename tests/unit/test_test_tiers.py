"""Where each test runs, as the README says: the markers match what the tests use.

Markers (pyproject.toml): `integration` = needs the local stack (its Kafka broker, its
Flink cluster, or an isolated stack the test starts); `cluster` = runs Flink jobs on the
project's standalone Flink cluster; `minicluster` = runs Flink jobs on PyFlink's local
mini cluster. For every test function of tests/ (read from the source, with the module
fixtures and helpers it reaches), a marker is set exactly when the test shows the sign of
it below; and README "Tests" lists, per marker expression, exactly the files that have
such tests.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from _pytest.mark.expression import Expression

ROOT = Path(__file__).resolve().parents[2]
TIERS = ("integration", "cluster", "minicluster")
STACK_FIXTURES = {"stack", "kafka_topic", "flink_job", "own_flink"}
# the sign of each tier in a test's source (its own, and that of the module fixtures and
# helpers it reaches); a fixture of tests/conftest.py counts by name
SIGNS = {
    # an isolated stack of its own (unit tests call these on fakes: tests/integration only)
    "integration": re.compile(r'\bcore\.up\(|\bcore\.restart_kafka\(|"stack", "up"'),
    # `flink run` to a standalone cluster
    # ... or a benchmark's smoke run (tests/integration/test_bench_smoke.py: bench/soak.py
    # submits to a cluster of its own, the job benchmarks use the mini cluster)
    "cluster": re.compile(r'\bjobs\.submit\(|(?<![\w.])submit\((?:stack|own_flink)\b|\bchaos\.run\(|"--smoke"'),
    "minicluster": re.compile(
        r'JobProcess\(|"jobs/detect_anomalies\.py", "--backtest"|StreamExecutionEnvironment|TableEnvironment\.create'
        r'|"--smoke"'
    ),
}
FIXTURE_SIGNS = {"integration": STACK_FIXTURES, "cluster": {"flink_job", "own_flink"}, "minicluster": set()}


def _marks(node: ast.AST) -> set[str]:
    """`pytest.mark.X` names in an expression (a decorator, a pytestmark value)."""
    return {
        n.attr
        for n in ast.walk(node)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Attribute) and n.value.attr == "mark"
    }


def tiers_of(path: Path) -> dict[str, tuple[set[str], set[str]]]:
    """Per test function of a module: (its tier markers, the tiers its source shows)."""
    tree = ast.parse(path.read_text())
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef)}
    module_marks: set[str] = set()
    for n in tree.body:
        if isinstance(n, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in n.targets):
            module_marks |= _marks(n.value)

    def reach(fn: ast.AST) -> tuple[str, set[str]]:
        """Source and argument names of `fn` and the module functions it names, transitively."""
        seen, todo, text, args = set(), [fn], [], set()
        while todo:
            node = todo.pop()
            if id(node) in seen:
                continue
            seen.add(id(node))
            text.append(ast.get_source_segment(path.read_text(), node) or "")
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args |= {a.arg for a in node.args.args}
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | (
                {a.arg for a in node.args.args} if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) else set()
            )
            todo += [defs[n] for n in names if n in defs]
        return "\n".join(text), args

    out = {}
    for name, node in defs.items():
        if not name.startswith("test_") or not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        marks = (module_marks | set().union(*map(_marks, node.decorator_list))) & set(TIERS)
        text, args = reach(node)
        shown = {t for t in TIERS if args & FIXTURE_SIGNS[t]}
        shown |= {t for t in TIERS if SIGNS[t].search(text) and (t != "integration" or "integration" in path.parts)}
        if shown & {"cluster", "minicluster"} and args & STACK_FIXTURES:
            shown.add("integration")
        out[name] = (marks, shown)
    return out


def _modules() -> list[Path]:
    return sorted(p for p in (ROOT / "tests").rglob("test_*.py") if p.name != Path(__file__).name)


def test_every_test_carries_the_markers_of_where_it_runs() -> None:
    wrong = []
    for path in _modules():
        for name, (marks, shown) in tiers_of(path).items():
            if marks != shown:
                wrong.append(f"{path.relative_to(ROOT)}::{name}: marked {sorted(marks)}, uses {sorted(shown)}")
    assert not wrong, "\n".join(wrong)


def _readme_tiers() -> dict[str, set[str]]:
    """README "Tests": marker expression -> the test files its table row names."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Tests\n", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        m = re.match(r"\| `-m (.+?)` \|", line)
        if m:
            rows[m.group(1).strip("'\"")] = set(re.findall(r"`(test_\w+\.py)`", line))
    return rows


def test_the_readme_names_the_files_of_each_tier() -> None:
    rows = _readme_tiers()
    assert len(rows) >= 4, rows
    tiers = {p.name: tiers_of(p) for p in _modules()}
    for expr, listed in rows.items():
        compiled = Expression.compile(expr)
        files = {
            f for f, tests in tiers.items()
            if any(compiled.evaluate(lambda m, _marks=marks: m in _marks) for marks, _ in tests.values())
        }  # fmt: skip
        assert listed == files, f"README row `-m {expr}`: lists {sorted(listed)}, the markers say {sorted(files)}"


def test_the_check_sees_a_missing_marker(tmp_path: Path) -> None:
    bad = tmp_path / "test_x.py"
    bad.write_text("import pytest\n\ndef test_a(stack, flink_job):\n    flink_job('x.py')\n")
    assert tiers_of(bad) == {"test_a": (set(), {"integration", "cluster"})}
    bad.write_text("import pytest\npytestmark = pytest.mark.integration\n\n"
                   "def test_a(tmp_path):\n    JobProcess(['--x'], tmp_path)\n")  # fmt: skip
    assert tiers_of(bad) == {"test_a": ({"integration"}, {"minicluster"})}
