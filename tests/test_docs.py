"""The documentation keeps up with the code (the model: datasette's tests/test_docs.py).

Everything a reader looks up by name is derived from the code here, so adding a hook, an adapter method, a
command, a flag, a Result field or a preset without documenting it fails a test, and so does documenting one
that no longer exists:

- docs/plugins.md has a heading with the exact signature of every hook in ``cnnbench.hookspecs`` and of every
  public method and classmethod of ``FrameworkAdapter``, a row for each of its class attributes, and every
  name ``cnnbench.testing`` exports;
- docs/cli.md has a ``## cnnbench COMMAND`` section per command of ``build_parser()`` (a ``###`` one per
  ``env`` action), whose flag table lists exactly that command's option strings, with their defaults;
- docs/results.md's field table lists exactly the fields of ``Result``, with their annotations;
- docs/paper.md names every preset (and the docs name no preset that does not exist);
- relative links in docs/*.md point to files (and headings) that exist.

Nothing here runs a framework or a worker: it reads Markdown and inspects classes and the argument parser.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import re
import types
from pathlib import Path

import pytest

from cnnbench import hookspecs
from cnnbench.adapter import FrameworkAdapter

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def read(name: str) -> str:
    return (DOCS / name).read_text(encoding="utf-8")


def without_code_blocks(text: str) -> str:
    """The text outside ``` fences (a heading-like line inside a code block is not a heading)."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return "\n".join(out)


def headings(text: str) -> list[str]:
    return [line for line in without_code_blocks(text).splitlines() if re.match(r"#{1,6} ", line)]


def section(text: str, heading: str) -> str:
    """The body under the line ``heading`` up to the next heading of the same or a higher level."""
    lines = without_code_blocks(text).splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    try:
        start = lines.index(heading)
    except ValueError:
        return ""
    body = []
    for line in lines[start + 1:]:
        match = re.match(r"(#{1,6}) ", line)
        if match and len(match.group(1)) <= level:
            break
        body.append(line)
    return "\n".join(body)


def first_table(text: str) -> str:
    """The lines of the first Markdown table in ``text``."""
    lines, started = [], False
    for line in text.splitlines():
        if line.strip().startswith("|"):
            started = True
            lines.append(line)
        elif started:
            break
    return "\n".join(lines)


def table_rows(text: str) -> list[list[str]]:
    """The cells of every Markdown table row in ``text`` (header and separator rows included)."""
    rows = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            # a "|" inside a backticked cell (``str | None``) is written "\|" in Markdown
            cells = re.split(r"(?<!\\)\|", line[1:-1])
            rows.append([cell.strip().replace("\\|", "|") for cell in cells])
    return rows


# -- signatures, rendered the way the docs write them ----------------------------------------------------


class _Annotation:
    """An annotation shown as written in the source (the modules use ``from __future__ import annotations``,
    so annotations are strings, which ``inspect`` would otherwise show in quotes)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def render(function) -> str:
    """``name(params) -> return`` with annotations as written, e.g. ``build(self, spec: NetworkSpec, ...)``."""
    signature = inspect.signature(function)

    def shown(annotation):
        if annotation is inspect.Parameter.empty:
            return annotation
        return _Annotation(annotation if isinstance(annotation, str) else inspect.formatannotation(annotation))

    signature = signature.replace(
        parameters=[p.replace(annotation=shown(p.annotation)) for p in signature.parameters.values()],
        return_annotation=shown(signature.return_annotation),
    )
    return f"{function.__name__}{signature}"


def hook_signatures(module: types.ModuleType = hookspecs) -> dict[str, str]:
    """Every hook the module specifies (what pluggy's HookspecMarker tagged), by name."""
    return {
        name: render(function)
        for name, function in vars(module).items()
        if inspect.isfunction(function) and hasattr(function, "cnnbench_spec")
    }


def adapter_signatures(cls: type = FrameworkAdapter) -> dict[str, tuple[str, bool]]:
    """Every public method and classmethod the class defines or inherits from FrameworkAdapter:
    name -> (signature, is a classmethod). Classmethods keep ``cls``, as the source spells them."""
    found = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not issubclass(klass, FrameworkAdapter):
            continue
        for name, raw in vars(klass).items():
            if name.startswith("_"):
                continue
            if isinstance(raw, classmethod):
                found[name] = (render(raw.__func__), True)
            elif isinstance(raw, staticmethod):
                found[name] = (render(raw.__func__), False)
            elif inspect.isfunction(raw):
                found[name] = (render(raw), False)
    return found


def undocumented(signatures, text: str) -> list[str]:
    """The signatures no heading of ``text`` contains (in backticks, exactly)."""
    heads = headings(text)
    return [signature for signature in signatures if not any(f"`{signature}`" in h for h in heads)]


# -- plugins.md: hooks, the adapter contract, the testing kit ---------------------------------------------


def test_every_hook_has_a_heading_with_its_exact_signature():
    missing = undocumented(hook_signatures().values(), read("plugins.md"))
    assert not missing, (
        "hooks in cnnbench/hookspecs.py without a heading in docs/plugins.md; add one per hook, headed "
        f"### `SIGNATURE`: {missing}"
    )


def test_a_hook_added_without_docs_is_caught(monkeypatch):
    @hookspecs.hookspec
    def cnnbench_register_undocumented(register, extra: int = 1):
        """A hook nobody documented."""

    monkeypatch.setattr(hookspecs, "cnnbench_register_undocumented", cnnbench_register_undocumented, raising=False)
    missing = undocumented(hook_signatures().values(), read("plugins.md"))
    assert missing == ["cnnbench_register_undocumented(register, extra: int = 1)"]


def test_no_heading_documents_a_hook_that_does_not_exist():
    names = set(hook_signatures())
    documented = {m.group(1) for h in headings(read("plugins.md")) for m in re.finditer(r"`(cnnbench_\w+)\(", h)}
    assert documented <= names, f"docs/plugins.md documents hooks that do not exist: {sorted(documented - names)}"


def test_every_adapter_method_has_a_heading_with_its_exact_signature():
    signatures = adapter_signatures()
    # the optional single-layer methods and verify are part of the contract, not just the abstract ones
    assert {"capabilities", "availability", "build", "step", "build_layer", "step_layer", "verify"} <= set(signatures)
    text = read("plugins.md")
    missing = undocumented([sig for sig, _ in signatures.values()], text)
    assert not missing, (
        "FrameworkAdapter methods without a heading in docs/plugins.md; add one per method, headed "
        f"### `SIGNATURE` (as inspect.signature renders it, annotations unquoted): {missing}"
    )
    for name, (signature, is_classmethod) in signatures.items():
        heading = next(h for h in headings(text) if f"`{signature}`" in h)
        assert ("classmethod" in heading) == is_classmethod, (
            f"the heading of {name} should say 'classmethod' exactly when it is one: {heading!r}")


def test_an_adapter_method_added_without_docs_is_caught():
    class Grown(FrameworkAdapter):
        def forward_only(self, model, repeats: int = 1) -> None:
            """A method added to the contract and not documented."""

        @classmethod
        def describe(cls, verbose: bool = False) -> str:
            return ""

    signatures = [sig for sig, _ in adapter_signatures(Grown).values()]
    missing = undocumented(signatures, read("plugins.md"))
    assert sorted(missing) == ["describe(cls, verbose: bool = False) -> str",
                               "forward_only(self, model, repeats: int = 1) -> None"]


def test_no_heading_documents_an_adapter_method_that_does_not_exist():
    text = read("plugins.md")
    contract = section(text, "## The adapter contract")
    assert contract, "docs/plugins.md needs a '## The adapter contract' section"
    names = set(adapter_signatures())
    documented = {m.group(1) for h in headings(contract) if h.startswith("### ")
                  for m in re.finditer(r"`(\w+)\(", h)}
    assert documented <= names, f"docs/plugins.md documents adapter methods that do not exist: {sorted(documented - names)}"


def test_every_class_attribute_of_the_contract_is_in_its_table():
    annotations = {name: text for name, text in FrameworkAdapter.__annotations__.items() if "ClassVar" in str(text)}
    assert {"name", "package", "options"} <= set(annotations)
    rows = table_rows(section(read("plugins.md"), "### Class attributes"))
    documented = {row[0].strip("`"): row[1].strip("`") for row in rows if row and row[0].startswith("`")}
    assert set(documented) == set(annotations), (
        f"docs/plugins.md's class attributes table: missing {sorted(set(annotations) - set(documented))}, "
        f"stale {sorted(set(documented) - set(annotations))}")
    for name, annotation in annotations.items():
        assert documented[name] == annotation, f"{name}: the table says {documented[name]!r}, the code {annotation!r}"


def test_every_name_the_testing_kit_exports_is_documented():
    import cnnbench.testing

    text = read("plugins.md")
    missing = [name for name in cnnbench.testing.__all__ if f"`{name}" not in text]
    assert not missing, f"cnnbench.testing exports names docs/plugins.md does not mention: {missing}"


# -- cli.md: commands and flags -----------------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Option string -> action, without -h/--help."""
    return {option: action for action in parser._actions if not isinstance(action, argparse._HelpAction)
            for option in action.option_strings}


def _positionals(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]


def _commands() -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(heading, command line, parser) of every command: ``## cnnbench X``, and ``### cnnbench env ACTION``."""
    from cnnbench.cli import build_parser

    found = []
    for name, parser in _subcommands(build_parser()).items():
        found.append((f"## cnnbench {name}", f"cnnbench {name}", parser))
        for action, sub in _subcommands(parser).items():
            found.append((f"### cnnbench {name} {action}", f"cnnbench {name} {action}", sub))
    return found


def _flag_rows(body: str) -> dict[str, list[str]]:
    """Flag -> its table row, for rows whose first cell holds backticked option strings."""
    rows = {}
    for row in table_rows(body):
        flags = re.findall(r"`(-{1,2}[A-Za-z][\w-]*)", row[0]) if row else []
        for flag in flags:
            rows[flag] = row
    return rows


def _own_body(text: str, heading: str) -> str:
    """A command's section without the sections of its sub-commands (``env``'s actions)."""
    body = section(text, heading)
    first_sub = re.search(r"^### ", body, flags=re.MULTILINE)
    return body[: first_sub.start()] if first_sub and heading.startswith("## ") else body


def test_every_command_has_a_section_in_the_cli_reference():
    text = read("cli.md")
    heads = headings(text)
    missing = [heading for heading, _, _ in _commands() if heading not in heads]
    assert not missing, f"docs/cli.md lacks sections for: {missing}"
    documented = {h for h in heads if re.match(r"#{2,3} cnnbench \w", h)}
    stale = documented - {heading for heading, _, _ in _commands()}
    assert not stale, f"docs/cli.md documents commands that do not exist: {sorted(stale)}"


@pytest.mark.parametrize("heading,command,parser", _commands(), ids=[c for _, c, _ in _commands()])
def test_every_flag_of_a_command_is_in_its_table_and_nothing_stale(heading, command, parser):
    body = _own_body(read("cli.md"), heading)
    rows = _flag_rows(body)
    options = _options(parser)
    missing = sorted(set(options) - set(rows))
    stale = sorted(set(rows) - set(options))
    assert not missing, f"{command}: flags missing from its table in docs/cli.md: {missing}"
    assert not stale, f"{command}: docs/cli.md lists flags '{command} --help' does not have: {stale}"
    for option, action in options.items():
        default = action.default
        if default in (None, False, [], argparse.SUPPRESS):
            continue
        row = rows[option]
        assert len(row) >= 3 and f"`{default}`" in row[1], (
            f"{command} {option}: its default is {default!r}; the Default column says {row[1:2]}")
    for action in _positionals(parser):
        name = action.metavar or action.dest
        assert f"`{name}`" in body, f"{command}: the positional argument {name} is not described"


def test_global_options_are_documented():
    from cnnbench.cli import build_parser

    rows = _flag_rows(section(read("cli.md"), "## Global options"))
    assert set(_options(build_parser())) <= set(rows)


# -- results.md: the Result record ---------------------------------------------------------------------------


def test_every_result_field_is_in_the_field_table_with_its_type():
    from cnnbench.results.record import Result

    rows = table_rows(first_table(section(read("results.md"), "## The Result record")))
    documented = {row[0].strip("`"): row[1].strip("`") for row in rows if row and row[0].startswith("`")}
    fields = {f.name: str(f.type) for f in dataclasses.fields(Result)}
    assert set(documented) == set(fields), (
        f"docs/results.md's field table: missing {sorted(set(fields) - set(documented))}, "
        f"stale {sorted(set(documented) - set(fields))}")
    for name, annotation in fields.items():
        assert documented[name] == annotation, f"Result.{name}: the table says {documented[name]!r}, the code {annotation!r}"


def test_the_documented_schema_versions_are_the_codes():
    from cnnbench.results.record import SCHEMA_VERSION
    from cnnbench.results.store import SCHEMA_VERSION as STORE_VERSION

    text = read("results.md")
    assert f"`SCHEMA_VERSION = {SCHEMA_VERSION}`" in text
    assert f"store schema version {STORE_VERSION}" in text


# -- paper.md: presets ---------------------------------------------------------------------------------------


def test_every_preset_is_in_the_paper_guide():
    from cnnbench.planning.presets import PRESETS

    text = read("paper.md")
    missing = [name for name, preset in PRESETS.items() if f"cnnbench {preset.command} --preset {name}" not in text]
    assert not missing, f"docs/paper.md lacks the command of presets: {missing}"


def test_no_page_names_a_preset_that_does_not_exist():
    from cnnbench.planning.presets import PRESETS

    for page in PAGES:
        named = set(re.findall(r"--preset ([a-z][\w-]*)", page.read_text(encoding="utf-8")))
        assert named <= set(PRESETS), f"{page.name} names presets that do not exist: {sorted(named - set(PRESETS))}"


# -- links ---------------------------------------------------------------------------------------------------


def github_anchors(text: str) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens,
    repeats numbered."""
    anchors, seen = set(), {}
    for heading in headings(text):
        title = heading.lstrip("#").strip()
        slug = re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def test_github_anchors_follow_githubs_rules():
    assert github_anchors("# Quick start\n## `cnnbench compare`\n## Quick start\n") == {
        "quick-start", "cnnbench-compare", "quick-start-1"}


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_relative_links_point_to_files_that_exist(page):
    text = without_code_blocks(page.read_text(encoding="utf-8"))
    text = re.sub(r"`[^`\n]*`", "", text)  # links are not read inside inline code
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path_part, _, anchor = target.partition("#")
        path = (page.parent / path_part).resolve() if path_part else page
        if not path.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and path.suffix == ".md" and anchor not in github_anchors(path.read_text(encoding="utf-8")):
            broken.append(f"{target} (no such heading)")
    assert not broken, f"{page.name}: broken links: {broken}"


def test_the_docs_exist():
    names = {p.name for p in PAGES}
    expected = {"index.md", "quickstart.md", "concepts.md", "cli.md", "networks.md", "meters.md", "paper.md",
                "results.md", "plugins.md", "tutorial.md"}
    assert expected <= names, f"missing pages: {sorted(expected - names)}"
