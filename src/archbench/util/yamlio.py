"""Reads YAML safely (SafeLoader only), rejects duplicate keys and tabs, and remembers each key's line.

Owns parsing only: it never validates meaning (config.py does) and never constructs arbitrary objects.
Bounded: a file over `MAX_FILE_BYTES`, nesting deeper than `MAX_DEPTH`, more than `MAX_ALIASES` aliases or
aliases expanding to more than `MAX_NODES` values are refused (file:line) before anything is built, so a
small hostile file cannot take memory, minutes or a RecursionError.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from archbench.util.errors import ConfigError

KeyPath = tuple[str | int, ...]

MAX_FILE_BYTES = 256 * 1024  # a sweep file is a few KB; pure-Python PyYAML is slow on large files
MAX_DEPTH = 64
MAX_ALIASES = 1000
MAX_NODES = 200_000
_BRACKETS = re.compile(r"[\[\]{}]")


def _where(path: str, mark: Any) -> str:
    return f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path


def _build(
    node: yaml.Node, loader: yaml.SafeLoader, path: str, key: KeyPath, lines: dict[KeyPath, int]
) -> Any:
    lines[key] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        if node.tag not in ("tag:yaml.org,2002:map",):
            raise ConfigError(f"{_where(path, node.start_mark)}: tag {node.tag!r} is not allowed")
        out: dict[str, Any] = {}
        for k_node, v_node in node.value:
            if k_node.tag == "tag:yaml.org,2002:merge":
                raise ConfigError(
                    f"{_where(path, k_node.start_mark)}: YAML merge keys (<<) are not supported"
                )
            k = loader.construct_object(k_node, deep=True)  # type: ignore[no-untyped-call]
            if not isinstance(k, str | int | float | bool):
                raise ConfigError(f"{_where(path, k_node.start_mark)}: mapping keys must be plain scalars")
            k = str(k)
            if k in out:
                dotted = ".".join(str(p) for p in (*key, k))
                raise ConfigError(
                    f"{_where(path, k_node.start_mark)}: duplicate key '{dotted}' "
                    f"(first given on line {lines[(*key, k)]}); remove one of them"
                )
            out[k] = _build(v_node, loader, path, (*key, k), lines)
        return out
    if isinstance(node, yaml.SequenceNode):
        if node.tag != "tag:yaml.org,2002:seq":
            raise ConfigError(f"{_where(path, node.start_mark)}: tag {node.tag!r} is not allowed")
        return [_build(item, loader, path, (*key, i), lines) for i, item in enumerate(node.value)]
    # Scalars go through SafeConstructor, which refuses python/* and any unknown tag.
    return loader.construct_object(node, deep=True)  # type: ignore[no-untyped-call]


def _check_brackets(text: str, path: str) -> None:
    """PyYAML's scanner slows down quadratically with open flow collections ([[[[…), so deep brackets are
    caught by a plain character scan first (brackets inside quoted strings can only over-count)."""
    depth = 0
    for m in _BRACKETS.finditer(text):
        depth += 1 if m.group() in "[{" else -1
        if depth > MAX_DEPTH:
            line = text.count("\n", 0, m.start()) + 1
            raise ConfigError(
                f"{path}:{line}: YAML nested deeper than {MAX_DEPTH} levels; a sweep file needs a few"
            )


def _alias_size(ev: Any, sizes: dict[str, int], aliases: int, total: int, path: str) -> int:
    """The expanded size of the node an alias repeats, after the alias checks (known anchor, count, total)."""
    if ev.anchor not in sizes:
        raise ConfigError(
            f"{_where(path, ev.start_mark)}: alias *{ev.anchor} refers to a node that contains "
            "it (recursive alias) or to no anchor; write the value out"
        )
    if aliases > MAX_ALIASES:
        raise ConfigError(
            f"{_where(path, ev.start_mark)}: more than {MAX_ALIASES} YAML aliases; write the values out"
        )
    size = sizes[ev.anchor]
    if total + size - 1 > MAX_NODES:
        raise ConfigError(
            f"{_where(path, ev.start_mark)}: YAML aliases expand to more than {MAX_NODES:,} "
            f"values (alias *{ev.anchor} alone is {size:,}); write the values out"
        )
    return size


def _check_bounds(text: str, path: str) -> None:
    """One pass over the event stream (no recursion, nothing built): depth, alias count, expanded size.

    The expanded size of every anchored node is tracked, so an alias's cost is known when it is met and
    a few nested aliases that would expand to billions of values are refused at the alias's line.
    """
    _check_brackets(text, path)
    # libyaml's event stream when present (fast); the same events from the pure-Python parser otherwise.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    sizes: dict[str, int] = {}
    stack: list[tuple[str | None, int]] = []  # (anchor, expanded size so far) of each open collection
    total = aliases = 0
    try:
        while loader.check_event():
            ev = loader.get_event()
            if isinstance(ev, yaml.CollectionStartEvent):
                if len(stack) >= MAX_DEPTH:
                    raise ConfigError(
                        f"{_where(path, ev.start_mark)}: YAML nested deeper than {MAX_DEPTH} levels; "
                        "a sweep file needs a few"
                    )
                stack.append((ev.anchor, 0))
                continue
            if isinstance(ev, yaml.CollectionEndEvent):
                anchor, size = stack.pop()
                size += 1
                if anchor is not None:
                    sizes[anchor] = size
            elif isinstance(ev, yaml.ScalarEvent):
                size = 1
                if ev.anchor is not None:
                    sizes[ev.anchor] = 1
            elif isinstance(ev, yaml.AliasEvent):
                aliases += 1
                size = _alias_size(ev, sizes, aliases, total, path)
                total += size - 1
            else:
                continue
            total += 1
            if stack:
                anchor, parent = stack[-1]
                stack[-1] = (anchor, parent + size)
            if total > MAX_NODES:
                raise ConfigError(
                    f"{_where(path, ev.start_mark)}: more than {MAX_NODES:,} YAML values; "
                    "a sweep file needs far fewer"
                )
    except yaml.YAMLError:
        if type(loader) is yaml.SafeLoader:
            raise
        # libyaml's wording differs: let the pure-Python parser (which stops at the same place before
        # building anything) report the syntax error with its hints.
    finally:
        loader.dispose()


def load_yaml_text(text: str, path: str = "<string>") -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML text into plain data plus a map from key path to line number."""
    lines: dict[KeyPath, int] = {}
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(
            f"{path}: {len(text):,} characters, more than {MAX_FILE_BYTES:,}; not a sweep file?"
        )
    loader = yaml.SafeLoader(text)
    try:
        _check_bounds(text, path)
        node = loader.get_single_node()
        if node is None:
            return None, lines
        return _build(node, loader, path, (), lines), lines
    except ConfigError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        hint = ""
        if "\t" in text and "tab" in str(exc.problem or "").lower() or "found character '\\t'" in str(exc):
            hint = " (YAML does not allow tabs for indentation: use spaces)"
        raise ConfigError(f"{_where(path, mark)}: invalid YAML: {exc.problem or exc}{hint}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> tuple[Any, dict[KeyPath, int]]:
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ConfigError(
                f"{p}: {size:,} bytes, more than the {MAX_FILE_BYTES:,} a sweep file may have; wrong file?"
            )
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    return load_yaml_text(text, str(p))


def fmt_loc(loc: tuple[Any, ...]) -> str:
    """A key path as it reads in YAML: ('bands', 0, 'file') -> bands[0].file."""
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def line_for(lines: dict[KeyPath, int], loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest key of `loc` that the file has (a missing key points at its parent)."""
    for n in range(len(loc), -1, -1):
        key = tuple(loc[:n])
        if key in lines:
            return lines[key]
    return None


def located_messages(
    path: str, errors: list[Any], lines: dict[KeyPath, int], prefix: KeyPath = ()
) -> list[str]:
    """pydantic validation errors as `file:line: key.path: what was expected; found what`, one per error."""
    msgs = []
    for err in errors:
        loc = (*prefix, *err["loc"])
        line = line_for(lines, loc)
        where = f"{path}:{line}" if line else path
        found = "" if err["type"] == "missing" else f"; found {err.get('input')!r}"
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the README for valid keys)"
        else:
            msg = err["msg"]
        msgs.append(f"{where}: {fmt_loc(loc)}: {msg}{found}")
    return msgs


def parse_value(text: str) -> Any:
    """Parse the value of a `--set key=value` override as a YAML scalar or flow collection."""
    data, _ = load_yaml_text(text, "--set")
    return data
