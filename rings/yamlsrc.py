"""YAML that remembers where things came from.

Rule authors need errors at `file:line:col`; plain `yaml.safe_load` forgets positions and
silently keeps the last of two duplicate keys. This loader keeps the position of every
mapping, key and list item, and refuses duplicate keys.
"""

from __future__ import annotations

from typing import Any

import yaml

from .errors import SourceError


class LDict(dict):
    """A mapping that knows the position of itself and of each key and value."""

    __slots__ = ("pos", "key_pos", "value_pos")

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.pos: tuple[int, int] = (0, 0)
        self.key_pos: dict[Any, tuple[int, int]] = {}
        self.value_pos: dict[Any, tuple[int, int]] = {}

    def where(self, key: Any = None, value: bool = False) -> tuple[int, int]:
        if key is None:
            return self.pos
        table = self.value_pos if value else self.key_pos
        return table.get(key, self.pos)


class LList(list):
    """A list that knows the position of itself and of each item."""

    __slots__ = ("pos", "item_pos")

    def __init__(self, *a: Any) -> None:
        super().__init__(*a)
        self.pos: tuple[int, int] = (0, 0)
        self.item_pos: list[tuple[int, int]] = []

    def where(self, index: int | None = None) -> tuple[int, int]:
        if index is None or index >= len(self.item_pos):
            return self.pos
        return self.item_pos[index]


def _pos(node: yaml.Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LDict:
    loader.flatten_mapping(node)
    out = LDict()
    out.pos = _pos(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise SourceError("a mapping key must be a scalar", loader.name,
                              *_pos(key_node)) from None
        if key in out:
            first = out.key_pos[key]
            raise SourceError(f"duplicate key {key!r} (first defined at line {first[0]})",
                              loader.name, *_pos(key_node))
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_pos[key] = _pos(key_node)
        out.value_pos[key] = _pos(value_node)
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LList:
    out = LList(loader.construct_object(child, deep=True) for child in node.value)
    out.pos = _pos(node)
    out.item_pos = [_pos(child) for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


def load_yaml_text(text: str, name: str = "<input>") -> Any:
    """Parse YAML text; syntax errors and duplicate keys become SourceError with a position."""
    loader = _Loader(text)
    loader.name = name
    try:
        return loader.get_single_data()
    except SourceError:
        raise
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        context = e.context
        cm = e.context_mark
        if context and cm is not None and mark is not None and cm.line != mark.line:
            # Where the unfinished construct began, often the line to fix.
            context += f" (begun at line {cm.line + 1}, column {cm.column + 1})"
        msg = ": ".join(p for p in (context, e.problem) if p) or "invalid YAML"
        if mark is None:
            raise SourceError(f"YAML syntax error: {msg}", name) from None
        raise SourceError(f"YAML syntax error: {msg}", name, mark.line + 1,
                          mark.column + 1) from None
    except yaml.YAMLError as e:
        raise SourceError(f"YAML error: {e}", name) from None
    finally:
        loader.dispose()


def load_yaml_file(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise SourceError(f"cannot read: {e.strerror}", path) from None
    except UnicodeDecodeError:
        raise SourceError("not UTF-8 text", path) from None
    return load_yaml_text(text, path)


def unknown_keys(d: LDict, allowed: tuple[str, ...], what: str, file: str, err: Any) -> bool:
    """Report every key of `d` not in `allowed` (`err(msg, file, pos)`); True if none."""
    ok = True
    for k in d:
        if k not in allowed:
            err(f"unknown key {k!r} in {what} (expected: {', '.join(allowed)})", file,
                d.where(k))
            ok = False
    return ok
