"""The Renovate configuration of `docs/reproducible-mirrors.md`, run with Node as Renovate runs
it, on spec files the spec grammar generates: every line with a tag is found with its name, tag
and digest, nothing else is, and Renovate's replacement keeps a valid spec file and the rest of
each line."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import List, Tuple, Union

from docker_mirror.spec_files.parser import parse_spec
from docker_mirror_testutil.machine import REPO_ROOT, unavailable
from docker_mirror_testutil.spec_strategies import (
    GeneratedLine,
    blank_lines,
    comment_lines,
    digests,
    spec_lines,
)
from hypothesis import given, settings
from hypothesis import strategies as st

MARKER = "<!-- renovate-config:"
# The page that documents the configuration (the `//:reproducible-mirrors-doc` target).
CONFIG_DOC = "docs/reproducible-mirrors.md"

# Renovate's regex manager, `matchStringsStrategy: "recursive"` (lib/modules/manager/custom/
# regex/strategies.ts): each match of the first expression (flag `g`) is the content the next one
# is matched in, and the last match is the dependency's `replaceString`. Then auto-replace
# (lib/workers/repository/update/branch/auto-replace.ts): the template, compiled with the
# update's fields, replaces `replaceString` where it was found. Renovate uses RE2 with the `u`
# flag where it can, so the expressions are compiled with `gu` here.
NODE_SCRIPT = r"""
const fs = require("fs");
const { config, content, updates } = JSON.parse(fs.readFileSync(0, "utf8"));
const manager = config.customManagers[0];
const regexes = manager.matchStrings.map((s) => new RegExp(s, "gu"));
function matchAll(regex, text, offset) {
  const found = [];
  regex.lastIndex = 0;
  let m;
  while ((m = regex.exec(text)) !== null) {
    found.push({ m, offset: offset + m.index });
    if (m[0] === "") regex.lastIndex += 1;
  }
  return found;
}
function recurse(text, offset, index, groups) {
  if (index === regexes.length) return [{ groups, replaceString: text, index: offset }];
  return matchAll(regexes[index], text, offset).flatMap(({ m, offset: at }) =>
    recurse(m[0], at, index + 1, { ...groups, ...(m.groups || {}) }));
}
function compile(template, fields) {
  return template
    .replace(/\{\{#if (\w+)\}\}(.*?)\{\{\/if\}\}/g, (_, f, body) => (fields[f] ? body : ""))
    .replace(/\{\{\{(\w+)\}\}\}/g, (_, f) => fields[f] ?? "");
}
const deps = recurse(content, 0, 0, {}).map(({ groups, replaceString, index }) => ({
  depName: groups.depName ?? null,
  currentValue: groups.currentValue ?? null,
  currentDigest: groups.currentDigest ?? null,
  replaceString,
  index,
}));
let updated = content;
for (const [i, update] of [...updates.slice(0, deps.length).entries()].reverse()) {
  const dep = deps[i];
  const fields = { ...dep, ...update };
  const text = compile(manager.autoReplaceStringTemplate, fields);
  if (updated.substr(dep.index, dep.replaceString.length) !== dep.replaceString) throw new Error("moved");
  updated = updated.slice(0, dep.index) + text + updated.slice(dep.index + dep.replaceString.length);
}
process.stdout.write(JSON.stringify({ deps, updated }));
"""


def renovate_config() -> dict:
    page = (REPO_ROOT / CONFIG_DOC).read_text()
    start = page.index(MARKER)
    block = re.search(r"```json\n(.*?)\n```", page[start:], re.S)
    assert block, "no ```json block after the marker"
    return json.loads(block.group(1))


def run_node(content: str, updates: List[dict]) -> dict:
    node = shutil.which("node")
    if node is None:
        unavailable("node is not installed")
    result = subprocess.run(
        [str(node), "-e", NODE_SCRIPT],
        input=json.dumps({"config": renovate_config(), "content": content, "updates": updates}),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_the_expressions_need_nothing_re2_lacks() -> None:
    for expression in renovate_config()["customManagers"][0]["matchStrings"]:
        assert not re.search(r"\(\?[=!]|\(\?<[=!]|\\[1-9]", expression), expression


def test_lines_of_every_form_are_found_and_others_are_not() -> None:
    digest = "sha256:" + "ab" * 32
    content = (
        "# python:3.12 in a comment\r\n"
        "python:3.12\r\n"
        f"  --platform=linux/arm64\tghcr.io/org/app:1.4@{digest}  AS app  # note redis:7\r\n"
        "localhost:5000/team/app:2 as local\n"
        "\n"
        "busybox\n"
        f"alpine@{digest}\n"
        "[::1]:5000/x/y:v1.0-rc.1"
    )
    deps = run_node(content, [])["deps"]
    assert [(d["depName"], d["currentValue"], d["currentDigest"], d["replaceString"]) for d in deps] == [
        ("python", "3.12", None, "python:3.12"),
        ("ghcr.io/org/app", "1.4", digest, f"ghcr.io/org/app:1.4@{digest}"),
        ("localhost:5000/team/app", "2", None, "localhost:5000/team/app:2"),
        ("[::1]:5000/x/y", "v1.0-rc.1", None, "[::1]:5000/x/y:v1.0-rc.1"),
    ]


Line = Union[GeneratedLine, str]


@settings(max_examples=40)
@given(
    st.lists(st.one_of(spec_lines(), blank_lines, comment_lines), min_size=1, max_size=12),
    st.sampled_from(["\n", "\r\n"]),
    st.data(),
)
def test_renovate_finds_every_tagged_line_and_its_update_keeps_the_rest(
    lines: List[Line], eol: str, data: st.DataObject
) -> None:
    content = eol.join(line.text if isinstance(line, GeneratedLine) else line for line in lines) + eol
    expected: List[Tuple[int, GeneratedLine]] = [
        (number, line)
        for number, line in enumerate(lines, start=1)
        if isinstance(line, GeneratedLine) and line.reference.model.tag is not None
    ]
    updates = [{"newValue": "9.9", "newDigest": data.draw(digests)} for _ in expected]

    result = run_node(content, updates)

    found = [(d["depName"], d["currentValue"], d["currentDigest"]) for d in result["deps"]]
    assert found == [
        (
            f"{line.reference.model.registry}/{line.reference.model.repository}"
            if line.reference.model.registry
            else line.reference.model.repository,
            line.reference.model.tag,
            line.reference.model.digest,
        )
        for _, line in expected
    ]
    # Renovate's replacement: a valid spec file, each updated line changed in its reference only.
    updated = result["updated"]
    entries = {entry.line_number: entry for entry in parse_spec(updated.encode(), "images.txt")}
    new_lines = updated.split(eol)
    for (number, line), update in zip(expected, updates):
        entry = entries[number]
        assert entry.reference.tag == "9.9" and entry.reference.digest == update["newDigest"]
        assert entry.platform == line.model.platform and entry.stage_name == line.model.stage_name
        start = line.reference_start
        assert new_lines[number - 1][:start] == line.text[:start]
        end = start + len(line.reference.text)
        assert new_lines[number - 1].endswith(line.text[end:])
    untouched = {number for number, _ in expected}
    for number, other in enumerate(lines, start=1):
        if number not in untouched:
            assert new_lines[number - 1] == (other.text if isinstance(other, GeneratedLine) else other)


def test_the_documented_config_is_where_the_test_reads_it() -> None:
    assert Path(REPO_ROOT / CONFIG_DOC).is_file()
    manager = renovate_config()["customManagers"][0]
    assert manager["customType"] == "regex" and manager["datasourceTemplate"] == "docker"
