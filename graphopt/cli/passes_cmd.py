"""``graphopt passes`` and ``graphopt zoo``: what can be run, and on what."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from graphopt import __version__, zoo
from graphopt.cli.app import app, console
from graphopt.cli.formatting import human_count
from graphopt.pass_api import get_pass_class, get_preset, pass_names, preset_names
from graphopt.spec import describe_type, option_fields

__all__ = ["passes", "zoo_list"]


def _catalogue() -> dict:
    passes = {}
    for name in pass_names():
        cls = get_pass_class(name)
        passes[name] = {
            "summary": cls.summary or (cls.__doc__ or "").strip().splitlines()[0],
            "lossless": cls.lossless,
            "needs": sorted(cls.needs),
            "options": {
                key: {"type": describe_type(kind), "default": repr(default)}
                for key, (kind, default) in option_fields(cls).items()
            },
        }
    presets = {
        name: {"spec": get_preset(name).spec, "description": get_preset(name).description}
        for name in preset_names()
    }
    return {"graphopt_version": __version__, "passes": passes, "presets": presets}


@app.command()
def passes(
    name: Annotated[str | None, typer.Argument(
        help="A pass to show in full: its options and, for fuse, every rule.",
        show_default=False)] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List the registered passes with their options, and the presets."""
    data = _catalogue()
    if name is not None:
        _show_pass(name, data, json_output=json_output)
        return
    if json_output:
        typer.echo(json.dumps(data, indent=2))
        return
    table = Table(title="passes", title_justify="left")
    for column in ("pass", "lossless", "needs", "what it does", "options"):
        table.add_column(column)
    for name, info in data["passes"].items():
        options = "\n".join(
            escape(f"{key}: {o['type']} = {o['default']}") for key, o in info["options"].items()
        )
        table.add_row(name, "yes" if info["lossless"] else "no",
                      ", ".join(info["needs"]) or "-", info["summary"], options or "-")
    console.print(table)
    presets = Table(title="presets", title_justify="left")
    for column in ("preset", "spec", "description"):
        presets.add_column(column)
    for name, info in data["presets"].items():
        presets.add_row(name, info["spec"], info["description"])
    console.print(presets)
    console.print('spec syntax: "cleanup,fuse(skip=sum_to_add),lossless" (presets expand in place)')


def _show_pass(name: str, data: dict, *, json_output: bool) -> None:
    info = dict(data["passes"].get(name) or {})
    if not info:
        get_pass_class(name)  # raises the one-line "unknown pass" error
    catalogue = getattr(get_pass_class(name), "catalogue", None)
    if catalogue is not None:
        info["rules"] = catalogue()
    if json_output:
        typer.echo(json.dumps({"graphopt_version": __version__, "name": name, **info},
                              indent=2))
        return
    console.print(f"[bold]{name}[/]: {escape(info['summary'])}"
                  f" ({'lossless' if info['lossless'] else 'lossy'})", highlight=False)
    for key, option in info["options"].items():
        console.print(f"  {key}: {escape(option['type'])} = {escape(option['default'])}",
                      highlight=False)
    if "rules" in info:
        table = Table(title=f"{name} rules", title_justify="left")
        for column in ("rule", "kind", "default", "what it does"):
            table.add_column(column)
        for rule, entry in info["rules"].items():
            table.add_row(rule, entry["kind"], "on" if entry["default"] else "off",
                          escape(entry["description"]))
        console.print(table)
        console.print(f'select with {name}(rules=[a,b]) or {name}(skip=[a,b])', highlight=False,
                      markup=False)


@app.command("zoo")
def zoo_list(
    json_output: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    clear_cache: Annotated[bool, typer.Option(
        "--clear-cache", help="Remove the cached zoo models (rebuilt on next use).")] = False,
) -> None:
    """List the built-in models usable as zoo:NAME, the cache folder and its size."""
    if clear_cache:
        freed = zoo.clear_cache()
        console.print(f"removed {zoo.cache_dir()} ({human_count(freed, 'B')})", highlight=False)
        return
    groups = {
        "onnx light zoo (calibrated random weights)": list(zoo.LIGHT_MODELS),
        "generated test models": list(zoo.GENERATED_MODELS),
        "trained (with labelled test data)": list(zoo.TRAINED_MODELS),
    }
    files, size = zoo.cache_size()
    if json_output:
        typer.echo(json.dumps({
            "graphopt_version": __version__,
            "models": {name: {"spec": f"zoo:{name}", "group": title}
                       for title, names in groups.items() for name in names},
            "cache": {"folder": str(zoo.cache_dir()), "files": files, "bytes": size},
        }, indent=2))
        return
    for title, names in groups.items():
        console.print(f"[bold]{title}[/]: " + ", ".join(f"zoo:{n}" for n in names))
    console.print(f"cache: {zoo.cache_dir()} ({files} files, {human_count(size, 'B')});"
                  " GRAPHOPT_CACHE_DIR moves it, `graphopt zoo --clear-cache` empties it",
                  highlight=False)
