"""Reads YAML safely (SafeLoader only), rejects duplicate keys and tabs, and remembers each key's line.

Owns parsing only: it never validates meaning (config.py does) and never constructs arbitrary objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError

KeyPath = tuple[str | int, ...]


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


def load_yaml_text(text: str, path: str = "<string>") -> tuple[Any, dict[KeyPath, int]]:
    """Parse YAML text into plain data plus a map from key path to line number."""
    lines: dict[KeyPath, int] = {}
    loader = yaml.SafeLoader(text)
    try:
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
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{p}: cannot read: {exc}") from None
    return load_yaml_text(text, str(p))


def parse_value(text: str) -> Any:
    """Parse the value of a `--set key=value` override as a YAML scalar or flow collection."""
    data, _ = load_yaml_text(text, "--set")
    return data
