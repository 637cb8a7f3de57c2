"""Check that the docs name only things that exist in the code.

    python scripts/check_docs.py                  # every doc; one line per problem, exit 1 if any
    python scripts/check_docs.py FILE [--as REL]  # one file, read as if it were REL in the repo

The docs are README.md, every */README.md and */*/README.md, and docs/*.md. What is
checked, and how it is recognised (precise shapes only: a check that cries wolf gets
switched off):

- **Files and folders** written as a path under a top-level folder of the repo
  (`core/alerts.py`, `darkpool/stack/`, `deps/*/pom.xml`, `udfs/jvm/.../X.java`), anywhere
  in the text, must exist; a bare `name.py` in backticks must exist under the doc's own
  folder (the whole repo for README.md and docs/). Folders the repo ignores (`data/`,
  `artifacts/`, `reports/`: outputs) are not checked.
- **Modules and names** written dotted from a project package (`core.features.X`,
  `model.scorer.client.ScorerClient`), or as a file path with a name
  (`core/records.ScoredWindow`), anywhere in the text: the module must exist and each
  further part must be defined in it (module-level, then class members). Exception: a
  name the code itself spells as a string or a Java class (`darkpool.trades` is a topic,
  `darkpool.scorer.access` a logger, `darkpool.flink.StableHash` the JVM parser's class).
  In backticks also: `module.name` relative to the doc's folder (`replay.BAD_KINDS` in
  darkpool/market/README.md), `Class.member` of a class defined in the project
  (`KafkaConfig.partitions`), and a function, class or CONSTANT in backticks on the
  same line as a module (`core/schemas.py` ... `parse_message()`), or in a section whose
  heading names one (`## Features (core/features.py)`), must be defined there. A
  module-level function named either way must be called by the code, not only by the
  tests: docs that present a test-only helper as the program's path are wrong even
  though the name exists.
- **Flags** of command lines (code blocks and code spans): `darkpool CMD [SUB] --flag`
  against the real click commands (everything after `darkpool submit --` against the
  job's parser), and `[python] path/script.py --flag` / `python -m pkg.mod --flag`
  against the script's real argparse parser (taken from the script as it parses, not
  from its --help). A bare `--flag` in backticks must be a flag of the job, of a
  `darkpool` command or of a script the same doc names. Hidden options (click
  `hidden=True`, argparse `help=SUPPRESS`: deprecated aliases) are not valid in docs.
- **Environment variables** `DARKPOOL_*` anywhere in the text must be read by the code:
  `DARKPOOL_<FIELD>` of every config built by `core.config.from_env`, and the names the
  code spells out whole (`"DARKPOOL_CACHE"`, `${DARKPOOL_CACHE:-...}`). `DARKPOOL_X_*`
  must be the prefix of one. The same holds for the code's own messages, comments and
  help texts (a message telling the user to set a variable that nothing reads).

ALLOWED lists the few names that are legitimately not in the code, each with why.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import re
import runpy
import shlex
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from anywhere
    sys.path.insert(0, str(ROOT))

# (kind, name) -> why it may be named although the code does not define it; kind is
# "path", "name", "flag" or "env", name as the problem line shows it. Empty today: the
# shapes above already leave upstream names (Flink keys, Kafka classes) alone. Keep it short.
ALLOWED: dict[tuple[str, str], str] = {}

PIPE = "\x00"  # a `\|` inside a markdown table cell: alternatives in a synopsis
FILE_EXTS = {"py", "md", "json", "jsonl", "parquet", "csv", "png", "txt", "yaml", "yml", "toml", "xml", "sh",
             "log", "zip", "gz", "lock", "pbtxt", "safetensors", "java", "jar", "html", "cfg", "ini"}  # fmt: skip
SHELL_STOP = re.compile(r"\s(?:\||&&|\|\||;|>|>>|2>|2>&1|<)\s|[)`]|\s#")
ENV_RE = re.compile(r"(?<!\w)DARKPOOL_(?:[A-Z0-9]+_)*[A-Z0-9]*\*?")


@dataclasses.dataclass(frozen=True, order=True)
class Problem:
    where: str  # file
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.what}"


# ---- reading markdown ----------------------------------------------------------------
def fenced_lines(text: str) -> list[tuple[int, str]]:
    """(line number, logical line) of the fenced code blocks: `\\` continuations and
    synopsis continuations (an indented line that starts with `[` or `--`) joined.

    >>> fenced_lines("a\\n```\\nx --a \\\\\\n  --b\\ny [--c]\\n   [--d]\\n```\\n`z`")
    [(3, 'x --a  --b'), (5, 'y [--c] [--d]')]
    """
    out: list[tuple[int, str]] = []
    in_block = False
    for no, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_block = not in_block
            continue
        if not in_block:
            continue
        cont = out and (out[-1][1].endswith("\\") or re.match(r"\s+(\[|--)", line))
        if cont:
            start, prev = out.pop()
            out.append((start, (prev[:-1] if prev.endswith("\\") else prev) + " " + line.strip()))
        else:
            out.append((no, line.rstrip()))
    return out


def prose(text: str) -> str:
    """The text with fenced blocks blanked (line numbers kept)."""
    lines, in_block = [], False
    for line in text.splitlines():
        fence = line.lstrip().startswith("```")
        in_block ^= fence
        lines.append("" if in_block or fence else line)
    return "\n".join(lines)


def code_spans(text: str) -> list[tuple[int, str]]:
    """(line number, content) of the inline code spans outside fenced blocks; a span may
    wrap within a paragraph; `\\|` (a pipe in a table cell) reads as PIPE.

    >>> code_spans("`a` and `b\\nc` | `d\\\\|e`\\n```\\n`no`\\n```")
    [(1, 'a'), (1, 'b c'), (2, 'd\\x00e')]
    """
    body = prose(text).replace("\\|", PIPE)
    return [(body.count("\n", 0, m.start()) + 1, " ".join(m.group(1).split()))
            for m in re.finditer(r"`((?:[^`\n]|\n(?![ \t]*\n))+)`", body)]  # fmt: skip


def _spans_by_line(text: str) -> Iterator[tuple[int, list[str]]]:
    """(line, the code spans that start on it), for lines with spans."""
    spans: dict[int, list[str]] = {}
    for no, s in code_spans(text):
        spans.setdefault(no, []).append(s)
    yield from sorted(spans.items())


# ---- shapes of names -----------------------------------------------------------------
def path_mentions(text: str, tops: Iterable[str]) -> list[tuple[int, str]]:
    """(line, path) of every path under one of the `tops` folders, trailing punctuation
    and `:line` suffixes dropped; inside URLs and other paths nothing is taken.

    >>> path_mentions("see core/alerts.py. And https://x.org/core/a, ~/core/x\\n(tests/unit/t.py:71-73)", ["core", "tests"])
    [(1, 'core/alerts.py'), (2, 'tests/unit/t.py')]
    """
    alt = "|".join(re.escape(t) for t in sorted(tops, key=len, reverse=True))
    out = []
    for m in re.finditer(rf"(?<![\w./~:-])(?:{alt})/[\w.*/{{}},-]*", text):
        p = re.sub(r":\d.*$", "", m.group(0)).rstrip(".,:;")
        if re.search(r"\.\w+$", p) and p.rsplit(".", 1)[-1] not in FILE_EXTS:
            continue  # `core/schemas.RULES`: a name in a module, checked as one
        out.append((text.count("\n", 0, m.start()) + 1, p))
    return out


def dotted_mentions(text: str, packages: Iterable[str]) -> list[tuple[int, str]]:
    """(line, name) of `pkg.a.b` or `pkg/a.b` written from a project package.

    >>> dotted_mentions("core.features.X, (core/records.ScoredWindow) x.core.y core.", ["core"])
    [(1, 'core.features.X'), (1, 'core/records.ScoredWindow')]
    """
    alt = "|".join(re.escape(p) for p in packages)
    rx = rf"(?<![\w./~:-])(?:{alt})(?:/\w+)*(?:\.\w+)+"
    return [(text.count("\n", 0, m.start()) + 1, m.group(0)) for m in re.finditer(rx, text)
            if m.group(0).rsplit(".", 1)[-1] not in FILE_EXTS]  # fmt: skip


def env_mentions(text: str) -> list[tuple[int, str]]:
    """(line, name) of every DARKPOOL_* variable named; `DARKPOOL_<FIELD>` and a bare
    `DARKPOOL_*` are patterns, not names.

    >>> env_mentions("DARKPOOL_CACHE=/x $DARKPOOL_RUN_DIR DARKPOOL_<FIELD> DARKPOOL_* DARKPOOL_WINDOW_*")
    [(1, 'DARKPOOL_CACHE'), (1, 'DARKPOOL_RUN_DIR'), (1, 'DARKPOOL_WINDOW_*')]
    """
    out = []
    for m in ENV_RE.finditer(text):
        name = m.group(0)
        if name in ("DARKPOOL_", "DARKPOOL_*") or text[m.end():m.end() + 1] in ("<", "{"):
            continue
        out.append((text.count("\n", 0, m.start()) + 1, name))
    return out


def split_args(rest: str) -> list[str]:
    """Shell words up to the end of one command, synopsis notation undone: `[ ]`
    dropped, `a|b` alternatives -> `a`, `<placeholder>` -> one word, `...` dropped.

    >>> split_args("--preset tiny\\x00default [--plot] <job id> ... | grep x")
    ['--preset', 'tiny', '--plot', 'PLACEHOLDER']
    >>> split_args("[--speed X|Y] --x=1 > out  # c")
    ['--speed', 'X', '--x=1']
    """
    rest = SHELL_STOP.split(" " + rest + " ")[0]
    rest = re.sub(r"<[^<>]*>", "PLACEHOLDER", rest)
    try:
        words = shlex.split(rest, comments=False)
    except ValueError:
        words = rest.split()
    out = []
    for w in words:
        w = w.strip("[]").replace(PIPE, "|").split("|")[0]
        if w and w not in ("...", "…"):
            out.append(w)
    return out


def shell_commands(snippet: str) -> list[str]:
    """A line of shell cut into its commands (`&&`, `;`, ` | `, `$( )`, `( )`).

    >>> shell_commands("eval $(a b); c [x|y] && d | e")
    ['eval', 'a b', 'c [x|y]', 'd', 'e']
    """
    return [c for c in re.split(r"\s*(?:&&|\|\||;|\s\|\s|\$\(|[()])\s*", snippet) if c.strip()]


def darkpool_lines(snippet: str) -> list[list[str]]:
    """The argument lists of every `darkpool ...` command in a snippet.

    >>> darkpool_lines("eval $(.venv/bin/darkpool stack env); darkpool alerts --json > f")
    [['stack', 'env'], ['alerts', '--json']]
    >>> darkpool_lines("topic darkpool.trades in ~/.cache/darkpool")
    []
    """
    rx = r"(?:^|(?<=\s))(?:[\w./-]*/)?darkpool[ \t]+(?=[\w\[-])(.*)"
    return [split_args(m.group(1)) for seg in shell_commands(snippet) for m in re.finditer(rx, seg)]


def script_lines(snippet: str) -> list[tuple[str, list[str]]]:
    """(script, arguments) of every `path/x.py ARGS` or `python -m pkg.mod ARGS`.

    >>> script_lines("flink run -d -py jobs/detect_anomalies.py -pyfs D --k-sigma 3 && python -m a.b --x")
    [('jobs/detect_anomalies.py', ['D', '--k-sigma', '3']), ('a/b.py', ['--x'])]
    """
    out = []
    for m in (m for seg in shell_commands(snippet) for m in re.finditer(r"(?:^|(?<=\s))(?:python3?\s+-m\s+([\w.]+)|([\w./-]+\.py))(?=\s|$)(.*)", seg)):
        script = m.group(1).replace(".", "/") + ".py" if m.group(1) else m.group(2)
        args = split_args(m.group(3))
        if m.string[:m.start()].rstrip().endswith("-py"):  # `flink run -py X.py -pyfs ...`: -x are Flink's
            args = [a for a in args if not re.match(r"-[A-Za-z]", a)]
        out.append((script, args))
    return out


def option_words(args: list[str]) -> list[str]:
    """The option names among arguments (`--x=1` -> `--x`); stops at `--`.

    >>> option_words(["--a", "1", "-b", "--c=2", "x", "-5", "--", "--d"])
    ['--a', '-b', '--c']
    """
    out = []
    for a in args:
        if a == "--":
            break
        if re.match(r"--?[A-Za-z]", a):
            out.append(a.split("=", 1)[0])
    return out


# ---- the code, as the docs may name it -----------------------------------------------
def _ignored_tops(root: Path) -> set[str]:
    ign = set()
    gi = root / ".gitignore"
    for line in gi.read_text().splitlines() if gi.exists() else []:
        m = re.fullmatch(r"/?([\w.-]+)/", line.strip())
        if m:
            ign.add(m.group(1))
    return ign


def _defined_names(body: list[ast.stmt]) -> set[str]:
    names: set[str] = set()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            for t in node.targets:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for part in ("body", "orelse", "finalbody", "handlers"):
                for sub in getattr(node, part, []):
                    names |= _defined_names(sub.body if isinstance(sub, ast.ExceptHandler) else [sub])
    return names


class Code:
    """What the docs may name: files, modules and their names, flags, env variables."""

    def __init__(self, root: Path = ROOT):
        self.root = root
        ignored = _ignored_tops(root)
        self.tops = sorted(p.name for p in root.iterdir()
                           if p.is_dir() and not p.name.startswith(".") and p.name not in ignored)  # fmt: skip
        self.packages = sorted(t for t in self.tops if (root / t / "__init__.py").exists() or t == "bench")
        self.code_dirs = [root / t for t in self.tops if t != "tests"]
        self._trees: dict[Path, ast.Module] = {}
        self._parsers: dict[str, argparse.ArgumentParser | str | None] = {}

    # -- files and modules
    def exists(self, rel: str, base: Path | None = None) -> bool:
        """A path (globs and `...` allowed) relative to `base` (default: the repo)."""
        base = base or self.root
        pattern = rel.rstrip("/").replace("...", "**")
        if any(c in pattern for c in "*?[{"):
            pattern = re.sub(r"\{([^{}]*)\}", lambda m: m.group(1).split(",")[0], pattern)
            return any(base.glob(pattern))
        return (base / pattern).exists() or (base / f"{pattern}.py").is_file()  # `core/pane_normals`

    def py_files(self, under: Iterable[Path] | None = None) -> list[Path]:
        dirs = list(under) if under is not None else self.code_dirs
        return sorted(p for d in dirs for p in d.rglob("*.py") if "__pycache__" not in p.parts)

    def tree(self, path: Path) -> ast.Module:
        if path not in self._trees:
            self._trees[path] = ast.parse(path.read_text(), str(path))
        return self._trees[path]

    def module_file(self, parts: tuple[str, ...]) -> Path | None:
        base = self.root.joinpath(*parts)
        if base.with_suffix(".py").is_file():
            return base.with_suffix(".py")
        return base if base.is_dir() else None

    def names_of(self, target: Path) -> set[str]:
        """Module-level names of a module file, or the modules and __init__ names of a package."""
        if target.is_dir():
            init = target / "__init__.py"
            subs = {p.stem for p in target.glob("*.py")} | {p.name for p in target.iterdir() if p.is_dir()}
            return subs | (_defined_names(self.tree(init).body) if init.exists() else set())
        return _defined_names(self.tree(target).body)

    @functools.cached_property
    def classes(self) -> dict[str, list[ast.ClassDef]]:
        out: dict[str, list[ast.ClassDef]] = {}
        for f in self.py_files():
            for node in ast.walk(self.tree(f)):
                if isinstance(node, ast.ClassDef):
                    out.setdefault(node.name, []).append(node)
        return out

    def class_has(self, name: str, member: str, seen: frozenset = frozenset()) -> bool | None:
        """Whether a project class (or a project base of it) defines `member`; None when a
        base is outside the project (the member may come from there)."""
        unknown = False
        for cls in self.classes.get(name, []):
            if member in _defined_names(cls.body):
                return True
            for b in cls.bases:
                bname = b.id if isinstance(b, ast.Name) else b.attr if isinstance(b, ast.Attribute) else None
                if bname in self.classes and bname not in seen:
                    r = self.class_has(bname, member, seen | {name})
                    if r:
                        return True
                    unknown |= r is None
                elif bname not in (None, "object", "Generic", "Protocol"):
                    unknown = True
        return None if unknown else False

    def resolve(self, name: str, base: Path | None = None) -> str | None:
        """Why a dotted name (`pkg.mod.attr`, `pkg/mod.attr`, relative to `base`) does not
        resolve, or None when it does."""
        head, _, dotted = name.rpartition("/")
        parts = ((head.split("/") if head else []) + dotted.split("."))
        root = base or self.root
        rel = root.relative_to(self.root).parts if root != self.root else ()
        # the longest prefix that is a module or package
        for i in range(len(parts), 0, -1):
            target = self.module_file((*rel, *parts[:i]))
            if target is not None:
                break
        else:
            return f"no module `{parts[0]}`"
        rest = parts[i:]
        if not rest:
            return None
        shown = "/".join((*rel, *parts[:i])) + (".py" if target.suffix == ".py" else "/")
        if rest[0] not in self.names_of(target):
            return f"`{rest[0]}` is not defined in {shown}"
        if len(rest) > 1 and rest[0] in self.classes and self.class_has(rest[0], rest[1]) is False:
            return f"`{rest[0]}` in {shown} has no `{rest[1]}`"
        if len(rest) == 1 and self.tests_only(target, rest[0]):
            return f"`{rest[0]}` in {shown} is called by tests only: name what the code runs"
        return None

    @functools.cached_property
    def used_names(self) -> set[str]:
        """Every name the project's code (tests aside) refers to: names, attributes, and
        `module:name` strings (the CLI's lazy subcommands)."""
        out: set[str] = set()
        for f in self.py_files():
            for n in ast.walk(self.tree(f)):
                if isinstance(n, ast.Name):
                    out.add(n.id)
                elif isinstance(n, ast.Attribute):
                    out.add(n.attr)
                elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                    out.update(re.findall(r"(?<=:)\w+$", n.value))
        return out

    def tests_only(self, target: Path, name: str) -> bool:
        """Whether `name` is a module-level function of `target` that no code but the
        tests calls (the docs then describe a path the program does not take)."""
        if target.suffix != ".py" or name in self.used_names:
            return False
        return any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name == name
                   for n in self.tree(target).body)  # fmt: skip

    @functools.cached_property
    def strings(self) -> set[str]:
        """String constants of the code and the JVM classes: names that are not modules
        (topics, loggers) but which the code spells out."""
        out = {n.value for f in self.py_files() for n in ast.walk(self.tree(f))
               if isinstance(n, ast.Constant) and isinstance(n.value, str)}  # fmt: skip
        for java in self.root.glob("udfs/jvm/**/*.java"):
            src = java.read_text()
            pkg = re.search(r"^package\s+([\w.]+);", src, re.M)
            for cls in re.findall(r"\b(?:class|interface|enum)\s+(\w+)", src):
                out.add(f"{pkg.group(1)}.{cls}" if pkg else cls)
        return out

    # -- environment variables
    @functools.cached_property
    def env_vars(self) -> set[str]:
        """Every DARKPOOL_* variable the code reads."""
        out: set[str] = set()
        configs: set[str] = set()
        for f in self.py_files():
            tree = self.tree(f)
            for node in ast.walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                        and re.fullmatch(r"DARKPOOL_[A-Z0-9_]+", node.value):
                    out.add(node.value)
            for cls in [n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)] + [tree]:
                for node in ast.walk(cls):
                    if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "from_env" \
                            and node.args and isinstance(node.args[0], ast.Name):
                        arg = node.args[0].id
                        configs.add(cls.name if arg == "cls" and isinstance(cls, ast.ClassDef) else arg)
        # the job builds its nested configs from JobConfig's field types (jobs/job_flags.py)
        from core.job_config import JobConfig

        configs |= {f.type if isinstance(f.type, str) else f.type.__name__ for f in dataclasses.fields(JobConfig)
                    if dataclasses.is_dataclass(getattr(JobConfig(), f.name))}  # fmt: skip
        for name in configs:
            for cls in self.classes.get(name, []):
                out |= {f"DARKPOOL_{n.target.id.upper()}" for n in cls.body
                        if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)
                        and "ClassVar" not in ast.unparse(n.annotation)}  # fmt: skip
        for sh in [*self.root.glob("scripts/*.sh"), *self.root.glob("docker/*.sh"), *self.root.glob("docker/Dockerfile*")]:
            out |= set(re.findall(r"\$\{?(DARKPOOL_[A-Z0-9_]+)", sh.read_text()))
        return out

    def env_problem(self, name: str) -> str | None:
        if name.endswith("*"):
            if any(v.startswith(name[:-1]) for v in self.env_vars):
                return None
            return f"no environment variable starts with `{name[:-1]}`"
        if name in self.env_vars or ("env", name) in ALLOWED:
            return None
        return f"environment variable `{name}` is read nowhere in the code"

    # -- command lines
    @functools.cached_property
    def cli(self):  # noqa: ANN201 - click is imported only when a doc names a command
        from darkpool.cli import cli

        return cli

    def darkpool_problems(self, args: list[str]) -> tuple[str, list[str]]:
        """(the command `darkpool ARGS` runs, why it names a command or option that does
        not exist or is hidden)."""
        import click

        cmd, path = self.cli, "darkpool"
        ctx = click.Context(cmd, info_name="darkpool")
        i = 0
        while isinstance(cmd, click.Group):
            while i < len(args) and args[i].startswith("-"):  # the group's own options
                bad = self._click_option_problem(cmd, args[i], path)
                if bad:
                    return path, [bad]
                i += 1
            if i >= len(args):
                return path, []
            names = args[i].split("/")  # `stack up/down/status`: alternatives
            subs = [cmd.get_command(ctx, n) for n in names]
            if None in subs or any(getattr(s, "hidden", False) for s in subs):
                bad = [n for n, s in zip(names, subs, strict=True) if s is None or s.hidden]
                return path, [f"no command `{path} {bad[0]}`"]
            cmd, path, i = subs[0], f"{path} {names[0]}", i + 1
            ctx = click.Context(cmd, info_name=names[0], parent=ctx)
        rest = args[i:]
        out = [p for w in option_words(rest) if (p := self._click_option_problem(cmd, w, path))]
        if "--" in rest and path == "darkpool submit":  # the job's own flags follow
            out += self.script_problems("jobs/detect_anomalies.py", rest[rest.index("--") + 1:])
        return path, out

    @staticmethod
    def _click_option_problem(cmd, word: str, path: str) -> str | None:  # noqa: ANN001
        import click

        for p in cmd.params:
            if isinstance(p, click.Option) and word in (*p.opts, *p.secondary_opts):
                return f"`{path} {word}` is a hidden option (deprecated alias): show the current one" if p.hidden else None
        if word in ("-h", "--help") or (path == "darkpool" and word == "--version"):
            return None
        return f"`{path}` has no option `{word}`"

    def parser(self, script: str) -> argparse.ArgumentParser | str | None:
        """The argparse parser a project script builds, caught as it parses its arguments
        (the script runs up to that point, with no arguments); None if it uses no
        argparse, why not when it has one but failed before parsing."""
        if script not in self._parsers:
            self._parsers[script] = self._catch_parser(script)
        return self._parsers[script]

    def _catch_parser(self, script: str) -> argparse.ArgumentParser | str | None:
        path = self.root / script
        if not path.is_file() or "argparse" not in path.read_text():
            return None

        class Caught(Exception):
            pass

        def catch(parser, *_a, **_k):  # noqa: ANN001, ANN202
            raise Caught(parser)

        saved = (argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args, sys.argv, sys.path[:])
        argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = catch  # type: ignore[method-assign]
        sys.argv = [str(path)]
        sys.path.insert(0, str(path.parent))  # as `python path/x.py` has it
        try:
            with warnings.catch_warnings():  # the imports' deprecation notices are not ours
                warnings.simplefilter("ignore")
                runpy.run_path(str(path), run_name="__main__")
        except Caught as c:
            return c.args[0]
        except BaseException as exc:  # noqa: BLE001 - reported as the reason
            return f"it stopped before parsing its arguments ({type(exc).__name__}: {exc})"
        finally:
            argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args, sys.argv, sys.path[:] = saved
        return "it finished without parsing any arguments"

    def script_flags(self, script: str) -> tuple[set[str], set[str]] | None:
        """(visible, hidden) option strings of a script's parser (and its subparsers)."""
        p = self.parser(script)
        if not isinstance(p, argparse.ArgumentParser):
            return None
        visible, hidden = set(), set()
        todo = [p]
        while todo:
            q = todo.pop()
            for a in q._actions:
                (hidden if a.help == argparse.SUPPRESS else visible).update(a.option_strings)
                if isinstance(a, argparse._SubParsersAction):
                    todo += list(a.choices.values())
        return visible, hidden - visible

    def script_problems(self, script: str, args: list[str]) -> list[str]:
        flags = self.script_flags(script)
        if flags is None:
            why = self.parser(script)
            return [f"cannot read the flags of `{script}`: {why}"] if why and option_words(args) else []
        visible, hidden = flags
        out = []
        for w in option_words(args):
            if w in hidden:
                out.append(f"`{script} {w}` is a hidden option (deprecated alias): show the current one")
            elif w not in visible:
                out.append(f"`{script}` has no option `{w}`")
        return out

    @functools.cached_property
    def all_darkpool_commands(self) -> list[str]:
        import click

        out, todo = [], [("darkpool", self.cli, click.Context(self.cli, info_name="darkpool"))]
        while todo:
            path, cmd, ctx = todo.pop()
            out.append(path)
            if isinstance(cmd, click.Group):
                for name in cmd.list_commands(ctx):
                    sub = cmd.get_command(ctx, name)
                    if sub is not None and not sub.hidden:
                        todo.append((f"{path} {name}", sub, click.Context(sub, info_name=name, parent=ctx)))
        return out

    def command_flags(self, command: str) -> tuple[set[str], set[str]]:
        """(visible, hidden) flags of `darkpool CMD [SUB]` or a script."""
        if command.endswith(".py"):
            return self.script_flags(command) or (set(), set())
        import click

        cmd, ctx = self.cli, click.Context(self.cli, info_name="darkpool")
        for name in command.split()[1:]:
            sub = cmd.get_command(ctx, name) if isinstance(cmd, click.Group) else None
            if sub is None:
                return set(), set()
            cmd, ctx = sub, click.Context(sub, info_name=name, parent=ctx)
        visible, hidden = set(), set()
        for p in cmd.params:
            if isinstance(p, click.Option):
                (hidden if p.hidden else visible).update((*p.opts, *p.secondary_opts))
        return visible, hidden - visible


# ---- the check -----------------------------------------------------------------------
def _line_modules(code: Code, line_spans: list[str], base: Path) -> list[Path]:
    """Module files named on one line (paths or dotted), for the names beside them."""
    out = []
    for s in line_spans:
        s = s.strip()
        if re.fullmatch(r"[\w/]+\.py", s) and code.exists(s):
            out.append(code.root / s)
        elif re.fullmatch(r"[\w/]+\.py", s) and code.exists(s, base):
            out.append(base / s)
        elif re.fullmatch(r"[\w]+(\.\w+)+", s) and s.split(".")[0] in code.packages:
            target = code.module_file(tuple(s.split(".")))
            if target is not None and target.suffix == ".py":
                out.append(target)
    return out


NAME_SPAN = re.compile(r"(?P<name>[A-Za-z_]\w*)(?P<call>\(.*\))?(?:\s*->.*)?")


def _beside_module_name(span: str) -> str | None:
    """The name a span shows when it is a function call, a CamelCase class or an
    UPPER_CASE constant (plain lower-case words are field names, not checked).

    >>> [_beside_module_name(s) for s in ["pane_features(df)", "RULES", "KafkaConfig", "alert_id", "T", "a b"]]
    ['pane_features', 'RULES', 'KafkaConfig', None, None, None]
    """
    m = NAME_SPAN.fullmatch(span)
    if not m:
        return None
    name = m.group("name")
    if m.group("call") is not None or re.fullmatch(r"[A-Z][A-Z0-9]*_[A-Z0-9_]+|[A-Z]{3,}", name) \
            or re.fullmatch(r"[A-Z][a-z0-9]+[A-Z]\w*", name):
        return name
    return None


def _named(why: str) -> str:
    """The word a problem is about: the last word of its last code span.

    >>> _named("`darkpool replay --bootstrap` is a hidden option")
    '--bootstrap'
    """
    return re.findall(r"`([^`]*)`", why)[-1].split()[-1]


def _line_of(lines: list[str], start: int, why: str) -> int:
    """The line, from `start` on, of the word a problem names (a command may continue
    over several lines).

    >>> _line_of(["x \\\\", "  --a 1 --bb", "--bb"], 1, "`x` has no option `--bb`")
    2
    """
    word = _named(why)
    for i in range(start - 1, min(start + 12, len(lines))):
        if re.search(rf"(?<![\w-]){re.escape(word)}(?![\w-])", lines[i]):
            return i + 1
    return start


def check_text(text: str, rel: str, code: Code, counts: Counter | None = None) -> list[Problem]:
    """Every problem in one doc whose place in the repo is `rel` (`counts`: how many
    mentions of each kind were checked)."""
    base = (code.root / rel).parent
    whole_repo = base == code.root or base.name == "docs"
    out: list[Problem] = []
    counts = Counter() if counts is None else counts

    def bad(line: int, what: str, kind: str, name: str) -> None:
        if (kind, name) not in ALLOWED:
            out.append(Problem(rel, line, what))

    # files and folders
    for no, p in path_mentions(text, code.tops):
        counts["path"] += 1
        if not code.exists(p):
            bad(no, f"`{p}` does not exist", "path", p)
    # dotted names
    for no, name in dotted_mentions(text, code.packages):
        counts["name"] += 1
        if name in code.strings or name.replace("/", ".") in code.strings:
            continue
        why = code.resolve(name)
        if why:
            bad(no, f"`{name}`: {why}", "name", name)
    # environment variables
    for no, name in env_mentions(text):
        counts["env"] += 1
        why = code.env_problem(name)
        if why:
            bad(no, why, "env", name)

    spans = code_spans(text)
    snippets = spans + fenced_lines(text)
    lines = text.splitlines()
    named_commands: set[str] = set()
    for no, snip in snippets:
        for args in darkpool_lines(snip):
            command, whys = code.darkpool_problems(args)
            counts["flag"] += len(option_words(args))
            for why in whys:
                bad(_line_of(lines, no, why), why, "flag", _named(why))
            named_commands.add(command)
        for script, args in script_lines(snip):
            if code.exists(script):
                named_commands.add(script)
                counts["flag"] += len(option_words(args))
                for why in code.script_problems(script, args):
                    bad(_line_of(lines, no, why), why, "flag", _named(why))
            elif code.exists(script, base):
                named_commands.add(str((base / script).relative_to(code.root)))
        if "submit --" in snip:
            named_commands.add("jobs/detect_anomalies.py")

    # in code spans only: bare files, relative and class names, names beside modules, bare flags
    for no, s in spans:
        if re.fullmatch(r"[\w-]+\.py", s):
            under = [code.root / t for t in code.tops] if whole_repo else [base]
            if not any(p.is_file() for d in under for p in d.rglob(s)):
                shown = "the repo" if whole_repo else f"{base.relative_to(code.root)}/"
                bad(no, f"`{s}` does not exist under {shown}", "path", s)
        m = re.fullmatch(r"([A-Za-z_]\w*)\.(\w+)(?:\(\))?", s)
        if m and m.group(1) not in code.packages and m.group(2) not in FILE_EXTS:
            mod, attr = m.groups()
            if not whole_repo and (base / f"{mod}.py").exists():
                why = code.resolve(f"{mod}.{attr}", base)
                if why:
                    bad(no, f"`{s}`: {why}", "name", s)
            elif mod in code.classes and code.class_has(mod, attr) is False:
                bad(no, f"`{s}`: class `{mod}` has no `{attr}`", "name", s)
    # a section whose heading (## or deeper) names a module: its lines without a module of their own
    section: dict[int, list[str]] = {}
    heading: list[str] = []
    all_spans = dict(_spans_by_line(text))
    for no, line in enumerate(prose(text).splitlines(), 1):
        if line.startswith("#"):
            heading = all_spans.get(no, []) if line.startswith("##") else []
        section[no] = heading
    for no, line_spans in all_spans.items():
        modules = _line_modules(code, line_spans, base) or _line_modules(code, section.get(no, []), base)
        if not modules:
            continue
        # defined there, or spelled there (a SQL function the module registers) or a JVM class
        known = set().union(*(code.names_of(m) | set(re.findall(r"\w+", m.read_text())) for m in modules
                              if m.suffix == ".py")) | {n.rsplit(".", 1)[-1] for n in code.strings}
        shown = ", ".join(str(m.relative_to(code.root)) for m in modules)
        for s in line_spans:
            name = _beside_module_name(s)
            counts["name"] += bool(name)
            if name and name not in known:
                bad(no, f"`{name}` is not defined in {shown}", "name", name)
            elif name and any(code.tests_only(m, name) for m in modules):
                bad(no, f"`{name}` in {shown} is called by tests only: name what the code runs", "name", name)
    # a bare flag belongs to a command this doc names, to any `darkpool` command or to the job
    named_commands |= {"jobs/detect_anomalies.py", *code.all_darkpool_commands}
    flags: dict[str, tuple[set[str], set[str]]] = {c: code.command_flags(c) for c in sorted(named_commands)}
    visible = set().union(*(v for v, _ in flags.values())) if flags else set()
    for no, s in spans:
        # `--flag`, `--a/--b`, `--flag VALUE --other V`; short `-x` spans are mostly other tools'
        if not re.fullmatch(r"--[a-z][\w-]*(?:/--[a-z][\w-]*)*(?:[ =]\S+)*", s):
            continue
        for w in option_words(re.split(r"[\s/]", s)):
            counts["flag"] += 1
            if w in visible or ("flag", w) in ALLOWED or w in ("-h", "--help"):
                continue
            hidden_in = [c for c, (_, h) in flags.items() if w in h]
            if hidden_in:
                bad(no, f"`{w}` is a hidden option (deprecated alias) of `{hidden_in[0]}`: show the current one", "flag", w)
            else:
                bad(no, f"`{w}` is not an option of the job, of a `darkpool` command or of a script this doc names",
                    "flag", w)
    return sorted(set(out))


def check_code_text(text: str, rel: str, code: Code) -> list[Problem]:
    """DARKPOOL_* variables named in a code file's own text (messages, help, comments)."""
    return [Problem(rel, no, why) for no, name in env_mentions(text) if (why := code.env_problem(name))]


def check_code_messages(code: Code) -> list[Problem]:
    return [p for f in code.py_files() if f != Path(__file__).resolve()  # not its own examples
            for p in check_code_text(f.read_text(), str(f.relative_to(code.root)), code)]  # fmt: skip


def docs(root: Path = ROOT) -> list[Path]:
    found = {root / "README.md", *root.glob("docs/*.md"), *root.glob("*/README.md"), *root.glob("*/*/README.md")}
    ignored = _ignored_tops(root)
    return sorted(p for p in found if p.exists() and not any(
        part.startswith(".") or part in ignored for part in p.relative_to(root).parts))


def check_all(code: Code | None = None, counts: Counter | None = None) -> list[Problem]:
    code = code or Code()
    out = [p for d in docs(code.root) for p in check_text(d.read_text(), str(d.relative_to(code.root)), code, counts)]
    return out + check_code_messages(code)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", type=Path, help="docs to check (default: all of them)")
    ap.add_argument("--as", dest="as_", metavar="REL", help="with one FILE: read it as if it were REL in the repo")
    a = ap.parse_args(argv)
    if a.as_ and len(a.files) != 1:
        ap.error("--as needs exactly one FILE")
    code = Code()
    if a.files:
        problems = []
        for f in a.files:
            if not f.is_file():
                ap.error(f"{f}: no such file")
            rel = a.as_ or (str(f.resolve().relative_to(ROOT)) if f.resolve().is_relative_to(ROOT) else f.name)
            check = check_code_text if f.suffix == ".py" else check_text
            problems += [dataclasses.replace(p, where=str(f)) for p in check(f.read_text(), rel, code)]
    else:
        problems = check_all(code)
    for p in problems:
        print(p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
