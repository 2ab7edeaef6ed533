"""scripts/mini_yaml.py, doctor's YAML reader, against PyYAML's BaseLoader (every scalar a string):
the same result on every YAML file the template renders (several answer combinations), on edge cases
of the subset, on PyYAML's own output for random data, and never a different result on broken input
(it may refuse what it leaves out, with the line, but never misread)."""

from __future__ import annotations

import importlib
import random
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from .conftest import AgeKey, answers, new_monorepo, render

# Answer combinations that change what the YAML files hold: quotes, ': ' and ' #' in a long
# description (copier's to_nice_yaml folds it over lines), lists, numbers, booleans, empty strings.
COMBINATIONS: list[dict[str, Any]] = [
    {},
    {
        "description": "Reads 'invoices': totals # per client, 'quoted' words and more, so long that "
        "the answers file has to fold it over several lines, with unicode: Zürich, café",
        "environments": ["dev", "staging-2", "prod"],
        "any_branch_environments": [],
        "per_environment_env_files": True,
        "cpu": 1.25,
        "min_replicas": 2,
        "max_replicas": 5,
        "platform_module_name": "Invoice Reader v2.0",
        "poetry_version": "2.4.1",
        "python_version": "3.11",
        "local_port": 8123,
    },
    {"environments": ["prod"], "description": "- not a list, [not flow] & {not a map}: 'yes' no", "cpu": 2.0},
]


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory, age_key: AgeKey) -> list[Path]:
    """A monorepo per combination (the first with a second app)."""
    roots = [new_monorepo(tmp_path_factory.mktemp("yaml"), answers(age_key, **data)) for data in COMBINATIONS]
    render(roots[0], {"app_name": "second_app", "environments": ["qa"]})
    return roots


@pytest.fixture(scope="module")
def rendered(roots: list[Path]) -> list[Path]:
    """Every YAML file of those monorepos."""
    files = [p for root in roots for p in sorted(root.rglob("*")) if p.is_file() and ".git" not in p.parts]
    return [p for p in files if p.suffix in (".yml", ".yaml")]


@pytest.fixture(scope="module")
def mini_yaml(roots: list[Path]) -> Iterator[ModuleType]:
    """The reader as a generated monorepo ships it."""
    scripts = str(roots[0] / "scripts")
    sys.path.insert(0, scripts)
    try:
        yield importlib.import_module("mini_yaml")
    finally:
        sys.path.remove(scripts)
        sys.modules.pop("mini_yaml", None)


def base_load(text: str) -> Any:
    return yaml.load(text, Loader=yaml.BaseLoader)  # BaseLoader builds only str, list and dict


def test_every_rendered_yaml_file_reads_as_pyyaml_reads_it(rendered: list[Path], mini_yaml: ModuleType) -> None:
    names = {p.name for p in rendered}
    assert {".copier-answers.yml", "apps.ci.yaml", "app.checks.yaml", "docker-compose.yaml", ".sops.yaml"} <= names
    assert len([p for p in rendered if p.name.endswith(".deploy.yaml")]) == 2 + 1 + 3 + 1
    for path in rendered:
        text = path.read_text()
        assert mini_yaml.load(text) == base_load(text), path
    folded = [
        p
        for p in rendered
        if p.name == ".copier-answers.yml" and re.search(r"^description: '.*\n    ", p.read_text(), re.M)
    ]
    assert folded, "no answers file folds a long value: the combinations no longer test multi-line scalars"


EDGE_CASES = [
    "",
    "# only a comment\n",
    "---\n",
    "a: b\n...\n",
    "--- |\n literal\n",
    "a:\n",
    "a: b # comment\nc: 'd' # comment\ne: \"f\"#g\n",
    "a:\n- b\n- c\nd: e\n",
    "- \n- a\n-\n  b: c\n",
    "- - a\n  - b\n- c\n",
    "-   a: 1\n    b: 2\n-   c\n",
    'steps:\n  - name: a\n    uses: b@c # v1\n    with:\n      k: "v"\n  - run: |\n      echo 1\n      echo 2\n',
    "a: plain text\n  continued here\n\n  after a blank line\nb: 2\n",
    "- a\n  - b\n",
    "a:\n  |\n    x\n",
    "a:\n    foo\n  bar\n",
    "a: |\n  foo",
    "a: |\n  foo\n",
    "a: |+\n  foo\n\n",
    "a: |-\n  x\n\n",
    "a: |2\n    indented\n  x\n",
    "a: >\n  a\n  b\n\n  c\n   d\n  e\n",
    "a: >-\n  folded\n  text\n\n\n",
    "a: >\n\n  first\n",
    "a: |\n\n\n  text\n\n",
    "a: >\n  x\n\n   y\n\n  z\n",
    "- |\n  a\n- >\n  b\n",
    "a: [x, \"y, z\", 'w']\nb: {}\nc: []\n",
    "a: [a, b,]\n",
    "a: [\n  x,  # comment\n  y\n]\n",
    'a: {b: [c, d], e: "f"}\n',
    "{a, b: }\n",
    '"on":\n  push: {branches: [main]}\n',
    "on:\n  workflow_dispatch:\n",
    'a: "\\u00e9\\t\\x41 \\" \\\\"\n',
    'a: "x\\\n   y"\n',
    "k: 'a\n\n  b  \n c'\n",
    'a: "multi\n  line"\n',
    "a: 'it''s'\n",
    "a: ''\nb: \"\"\n",
    "a: ${{ github.ref }}\nb: ci-${{ x }}\nc: http://x:80/y\n",
    "key with spaces: v\n",
    "a: -x\nb: ?x\nc: x#y\n",
    'a: "  spaced  "\nb: x  \n',
    "a:\n  # comment\n  b: 1\n# top\nc: 2\n",
    "a   : b\n",
]


@pytest.mark.parametrize("text", EDGE_CASES)
def test_edge_cases_read_as_pyyaml_reads_them(mini_yaml: ModuleType, text: str) -> None:
    assert mini_yaml.load(text) == base_load(text)


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a: 1\nb: &anchor 2\n", 2, "anchors"),
        ("a: 1\nb: *alias\n", 2, "aliases"),
        ("x-defaults: &defaults\n  a: 1\n", 1, "anchors"),
        ("a: !!str 1\n", 1, "tags"),
        ("? a\n: b\n", 1, "not supported"),
        ("%YAML 1.1\n---\na: 1\n", 1, "directives"),
        ("a: 1\n---\nb: 2\n", 2, "second document"),
        ("a: [a: b]\n", 1, "not supported"),
        ("a:\n\tb: 1\n", 2, "tab"),
        ("a: x\ty\n", 1, "tab"),
        ("a: b: c\n", 1, "quote the value"),
        ("a:\n  b: 1\n   c: 2\n", 3, "quote the value"),
        ("a: 'unclosed\n", 1, "unclosed"),
        ("a: [1, 2\n", 1, "unclosed"),
        ("a: 1\n  b: 2\n", 2, "quote the value"),
        ("a: |x\n  y\n", 1, "block scalar header"),
        ("a: 'x' y\n", 1, "unexpected text"),
    ],
)
def test_what_it_leaves_out_is_refused_with_the_line(mini_yaml: ModuleType, text: str, line: int, words: str) -> None:
    with pytest.raises(mini_yaml.YamlError, match=words) as refused:
        mini_yaml.load(text)
    assert refused.value.line == line


ALPHABET = [*"abcxyz ABC019_-.:#'\"\\/,[]{}!&*?|>%@`~=+$()", "  ", "\t", "\n", "\n\n", " \n", "\n ", "é"]
ALPHABET += ["${{ x }}", ": ", " #", "- ", "true", "null", "1.5", "0x1F", "---", "..."]


class StyledDumper(yaml.SafeDumper):
    """Writes multi-line strings in any style, block scalars included (keys stay single-line)."""


def dumps(data: Any, rng: random.Random) -> str:
    def represent(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
        style = rng.choice([None, "|", ">"]) if "\n" in text else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)

    StyledDumper.add_representer(str, represent)
    return yaml.dump(
        data,
        Dumper=StyledDumper,
        default_flow_style=rng.choice([False, None, True]),
        width=rng.choice([20, 40, 80, 1000]),
        indent=rng.choice([2, 4]),
        allow_unicode=rng.choice([True, False]),
        default_style=rng.choice([None, None, "'", '"']),
        explicit_start=rng.choice([True, False]),
    )


def random_data(rng: random.Random, depth: int = 0) -> Any:
    def text(least: int, alphabet: list[str]) -> str:
        return "".join(rng.choice(alphabet) for _ in range(rng.randint(least, rng.choice([12, 40]))))

    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return text(0, ALPHABET)
    if roll < 0.75:
        return [random_data(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = [c for c in ALPHABET if "\n" not in c]  # PyYAML writes multi-line or empty keys as '? ' keys
    return {text(1, keys): random_data(rng, depth + 1) for _ in range(rng.randint(0, 4))}


def test_pyyamls_output_for_random_data_reads_back(mini_yaml: ModuleType) -> None:
    rng = random.Random(20260411)
    for _ in range(600):
        text = dumps(random_data(rng), rng)
        assert mini_yaml.load(text) == base_load(text), text


def test_broken_files_are_refused_or_read_right_never_misread(rendered: list[Path], mini_yaml: ModuleType) -> None:
    """Random small edits of the rendered files (what a hand edit or a bad merge does)."""
    rng = random.Random(7)
    texts = [p.read_text() for p in rendered]
    snippets = [" ", "  ", "-", "- ", ":", ": ", "#", " #", "'", '"', "[", "]", "{", "}", ",", "|", ">", "\t", "\n"]
    snippets += ["x", "\\", "---", "?", "&", "*", "!"]
    agreed = refused_valid = 0
    for _ in range(800):
        lines = rng.choice(texts).split("\n")
        for _ in range(rng.randint(1, 3)):
            at, roll = rng.randrange(len(lines)), rng.random()
            if roll < 0.2:
                del lines[at]
            elif roll < 0.4:
                lines.insert(at, rng.choice(lines))
            elif roll < 0.6:
                lines[at] = " " * rng.randint(1, 3) + lines[at]
            elif roll < 0.7:
                lines[at] = lines[at][rng.randint(1, 3) :]
            else:
                cut = rng.randint(0, len(lines[at]))
                lines[at] = lines[at][:cut] + rng.choice(snippets) + lines[at][cut:]
        text = "\n".join(lines)
        try:
            expected = base_load(text)
        except yaml.YAMLError:
            expected = None
        try:
            got = mini_yaml.load(text)
        except mini_yaml.YamlError:
            refused_valid += expected is not None
            continue
        assert expected is not None, f"read YAML that PyYAML refuses:\n{text}"
        assert got == expected, text
        agreed += 1
    assert agreed > 300, agreed  # the comparison really ran
    assert refused_valid < 20, refused_valid  # it refuses little valid YAML (anchors, tags, '?' keys)
