"""`scratchlm`: the home of user commands (profiles now; generate, audit, export as they land)."""

from __future__ import annotations

from pathlib import Path

import typer

from scratchlm import profiles
from scratchlm.config import ConfigError

app = typer.Typer(help="scratchlm: a reproducible GPT pipeline from raw text to benchmark scores.",
                  no_args_is_help=True, add_completion=False)
profile_app = typer.Typer(help="Named parameter overrides in pipelines/profiles/.", no_args_is_help=True)
app.add_typer(profile_app, name="profile")

PROFILES_DIR = Path("pipelines/profiles")


@profile_app.command("list")
def profile_list(profiles_dir: Path = typer.Option(PROFILES_DIR, help="where profiles live")) -> None:
    """List the available profiles."""
    for name in profiles.available(profiles_dir):
        typer.echo(name)


@profile_app.command("use")
def profile_use(
    name: str = typer.Argument(..., help="profile name (pipelines/profiles/NAME.yaml) or a path to a YAML file"),
    params_file: Path = typer.Option(Path("params.yaml"), "--params", help="params file to rewrite"),
    profiles_dir: Path = typer.Option(PROFILES_DIR, help="where profiles live"),
) -> None:
    """Merge a profile's overrides into params.yaml (comments and key order are kept)."""
    profile_file = Path(name) if name.endswith((".yaml", ".yml")) else profiles_dir / f"{name}.yaml"
    try:
        sections = profiles.apply_profile(params_file, profile_file)
    except ConfigError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"applied {profile_file} to {params_file}: {', '.join(sections)}")


def main() -> None:
    app()


if __name__ == "__main__":
    main()
