from __future__ import annotations

from docker_mirror_testutil.pants_repo import without_toml_tables

TOML = """[GLOBAL]
pants_version = "2.17.1"

[changed]
# comment
dependents = "direct"

[docker.registries.mirror]
address = "127.0.0.1:5501"
[changed.sub]
x = 1
"""


def test_without_toml_tables_drops_a_table_up_to_the_next_and_keeps_the_rest() -> None:
    assert without_toml_tables(TOML, ["changed"]) == (
        '[GLOBAL]\npants_version = "2.17.1"\n\n'
        '[docker.registries.mirror]\naddress = "127.0.0.1:5501"\n[changed.sub]\nx = 1\n'
    )
    assert without_toml_tables(TOML, []) == TOML
    assert without_toml_tables(TOML, ["absent"]) == TOML
