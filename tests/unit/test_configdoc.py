"""The configuration documents are generated from the settings: they must not drift from them."""

from __future__ import annotations

from core import configdoc
from core.settings import Settings, load


def test_config_toml_is_the_generated_one() -> None:
    text = (configdoc.ROOT / "config.toml").read_text(encoding="utf-8")
    assert text == configdoc.sample_toml(), "config.toml is stale: run `python -m core.configdoc`"


def test_config_toml_holds_the_defaults() -> None:
    assert load(configdoc.ROOT / "config.toml", env={}) == Settings()


def test_readme_table_is_the_generated_one() -> None:
    readme = (configdoc.ROOT / "README.md").read_text(encoding="utf-8")
    assert configdoc.markdown_table() in readme, "README table is stale: run `python -m core.configdoc`"
    assert configdoc.readme_with_table(readme) == readme
