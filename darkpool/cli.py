"""`darkpool`: one entry point, one subcommand per concern.

Subcommands live next to the code they drive and are loaded lazily, so `darkpool --help`
is fast and a broken optional part does not take the whole CLI down.
"""

from __future__ import annotations

import importlib

import click

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
    "import": "darkpool.venue.cli:import_",
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


def _unavailable(name: str, module_name: str) -> click.Command:
    """Stand-in listed in --help for a subcommand whose module is not in this build."""

    def fail() -> None:
        raise click.ClickException(f"`darkpool {name}` is not available in this build ({module_name} is missing)")

    return click.Command(name, callback=fail, help="(not available in this build)")


@click.group(cls=LazyGroup)
def cli() -> None:
    """Dark-pool market-abuse surveillance (PyFlink + Kafka + transformer scorer)."""


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
