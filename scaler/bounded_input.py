"""Reading untrusted input files within bounds (edge): regular files of at most N bytes, and
YAML without aliases, duplicate keys, deep nesting or too many nodes.

Plans arrive from ConfigMaps anyone with write access to the scaler namespace can create,
and one process serves every plan: a bound is checked before the work it protects (bytes
before decoding, YAML events before building objects), so a hostile file costs at most a
bounded read and a bounded parse.
"""

from __future__ import annotations

import os
import reprlib
import stat
from pathlib import Path
from typing import Any

import yaml

from scaler.errors import InputBoundExceeded

# libyaml when present: the same documents as the pure-Python loader, several times faster.
_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

REPR_LIMIT = 100  # characters of an input value echoed in an error message


def read_regular_file(path: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes.

    Devices and FIFOs are refused before any read (`/dev/zero` never ends, a FIFO without a
    writer blocks), and at most `limit + 1` bytes are read, so a file growing under us is
    refused too. Raises InputBoundExceeded, or OSError when the file cannot be opened.
    """
    # O_NONBLOCK: opening a FIFO must not wait for a writer; it has no effect on regular files.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise InputBoundExceeded("is not a regular file")
        if st.st_size > limit:
            raise InputBoundExceeded(f"is {st.st_size} bytes; at most {limit} bytes are accepted")
        chunks, total = [], 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > limit:
            raise InputBoundExceeded(f"is more than {limit} bytes; at most {limit} bytes are accepted")
        return b"".join(chunks)
    finally:
        os.close(fd)


def short_repr(value: Any, limit: int = REPR_LIMIT) -> str:
    """repr() for error messages: bounded in work (reprlib stops early) and in length."""
    r = reprlib.Repr()
    r.maxstring = r.maxother = limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 10
    r.maxlevel = 3
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class YamlBoundError(yaml.MarkedYAMLError):
    """A YAML document breaks a bound (aliases, nesting, nodes, duplicate keys); has a mark."""


class _NoDuplicatesLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Safe loader whose mappings refuse a key given twice (last-wins hides typos)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark)
            except TypeError:
                continue  # unhashable: the base constructor reports it
            if first is not key_node.start_mark:
                raise YamlBoundError(
                    "while constructing a mapping", node.start_mark,
                    f"duplicate key {short_repr(key)} (first given at line {first.line + 1})", key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)  # type: ignore[no-any-return]

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            return super().construct_yaml_int(node)  # type: ignore[no-any-return]
        except ValueError:  # Python refuses int() of more than 4300 digits (found by fuzzing)
            raise YamlBoundError(None, None, f"integer of {len(node.value)} characters is too long", node.start_mark) from None


_NoDuplicatesLoader.add_constructor("tag:yaml.org,2002:int", _NoDuplicatesLoader.construct_yaml_int)


def load_yaml_documents(text: str, *, max_depth: int, max_nodes: int) -> list[Any]:
    """Every document of `text`, or YamlBoundError / yaml.YAMLError naming the line.

    Aliases are refused (a few bytes of them expand to billions of nodes, and plans never
    need them); nesting deeper than `max_depth` and more than `max_nodes` nodes in all are
    refused from the parser's events, before any object is built.
    """
    depth = nodes = 0
    loader = _BaseLoader(text)
    try:
        while loader.check_event():
            event = loader.get_event()
            if isinstance(event, yaml.AliasEvent):
                raise YamlBoundError(None, None, f"aliases (*{short_repr(event.anchor)[1:-1]}) are not "
                                     "allowed in plan files; write the value out", event.start_mark)
            if isinstance(event, (yaml.ScalarEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                nodes += 1
                if nodes > max_nodes:
                    raise YamlBoundError(None, None, f"more than {max_nodes} YAML nodes", event.start_mark)
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > max_depth:
                    raise YamlBoundError(None, None, f"nested more than {max_depth} levels deep", event.start_mark)
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    finally:
        loader.dispose()
    return list(yaml.load_all(text, Loader=_NoDuplicatesLoader))
