"""`darkpool`: one entry point, one subcommand per concern.

Subcommands live next to the code they drive and are loaded lazily, so `darkpool --help`
is fast and a broken optional part does not take the whole CLI down.
"""

from __future__ import annotations

import importlib

import click

from core.config import ConfigError

# name -> "module:attribute" of a click.Command / click.Group
SUBCOMMANDS: dict[str, str] = {
    "stack": "darkpool.stack.cli:stack",
    "generate": "darkpool.market.cli:generate",
    "replay": "darkpool.market.cli:replay",
    "inject": "darkpool.market.inject_cli:inject",
    "train": "model.cli:train",
    "scorer": "model.scorer.cli:scorer",
    "submit": "darkpool.submit_cli:submit",
    "alerts": "darkpool.submit_cli:alerts",
    "demo": "darkpool.demo:demo",
    "evaluate": "darkpool.evaluate.cli:evaluate",
    "budget": "darkpool.evaluate.budget_cli:budget",
    "import": "darkpool.venue.cli:import_",
    "explain": "darkpool.explain:explain",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not (exc.name and module_name.startswith(exc.name)):
                raise  # a dependency of the module is missing: show the real error
            return _unavailable(name, module_name)
        return getattr(module, attr)

    def invoke(self, ctx: click.Context):  # noqa: ANN201
        # Every subcommand reads DARKPOOL_* through core.config.from_env: a bad value is
        # one line naming the variable, whichever command met it first.
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None


def _unavailable(name: str, module_name: str) -> click.Command:
    """Stand-in listed in --help for a subcommand whose module is not in this build."""

    def fail() -> None:
        raise click.ClickException(f"`darkpool {name}` is not available in this build ({module_name} is missing)")

    return click.Command(name, callback=fail, help="(not available in this build)")


def version() -> str:
    """The installed package's version, else the one in this clone's pyproject.toml."""
    from importlib import metadata

    try:
        return metadata.version("darkpool-surveillance")
    except metadata.PackageNotFoundError:  # run from the clone (bootstrap does not install it)
        import tomllib

        from core.paths import REPO_ROOT

        with open(REPO_ROOT / "pyproject.toml", "rb") as fh:
            return str(tomllib.load(fh)["project"]["version"])


# -h everywhere (context settings reach every subcommand); defaults shown in every --help
CONTEXT = {"help_option_names": ["-h", "--help"], "show_default": True}


@click.group("darkpool", cls=LazyGroup, context_settings=CONTEXT, invoke_without_command=True)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, help="Show the version and exit.",
              callback=lambda ctx, _param, value: value and (click.echo(f"darkpool {version()}"), ctx.exit()))
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Dark-pool market-abuse surveillance (PyFlink + Kafka + transformer scorer)."""
    if ctx.invoked_subcommand is None:  # bare `darkpool`: the help screen, not a usage error
        click.echo(ctx.get_help())


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
