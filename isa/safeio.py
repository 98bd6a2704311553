"""Reading user files within budgets: YAML (size, alias expansion and nesting bounded, safe tags
only) and .npz archives (every array's header checked before its data is read)."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from spikeforge.isa.errors import SpikeforgeError
from spikeforge.isa.limits import check_memory, elements

MAX_TEXT_BYTES = 16 * 2**20  # a YAML or IR text file
MAX_YAML_NODES = 100_000  # scalars, lists and mappings, every alias expanded


class Loader(yaml.SafeLoader):
    """The safe loader, reading `1e-5` (exponent, no dot) as a number as YAML 1.2 does."""


Loader.add_implicit_resolver("tag:yaml.org,2002:float",
                             re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
                             list("-+0123456789"))


def read_text(path: str | Path, where: str, what: str) -> str:
    """A regular UTF-8 text file of at most MAX_TEXT_BYTES; `what` names the expected content."""
    p = Path(path)
    if not p.exists():
        raise SpikeforgeError("file not found", where)
    if not p.is_file():
        raise SpikeforgeError("not a file", where)
    try:
        if p.stat().st_size > MAX_TEXT_BYTES:
            raise SpikeforgeError(f"larger than {MAX_TEXT_BYTES >> 20} MiB: not {what}", where)
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise SpikeforgeError(f"not a text file (expected {what})", where) from None
    except OSError as e:
        raise SpikeforgeError(f"cannot read ({e.strerror})", where) from None


def load_yaml(text: str, where: str, what: str = "YAML") -> Any:
    """Parse one YAML document with the safe loader, refusing documents that expand (aliases
    included) to more than MAX_YAML_NODES nodes or that nest too deeply."""
    try:
        loader = Loader(text)
    except yaml.reader.ReaderError:
        raise SpikeforgeError(f"not a text file (expected {what})", where) from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, where)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as e:
        at = f"{where}: line {e.problem_mark.line + 1}" if e.problem_mark else where
        raise SpikeforgeError(f"invalid YAML ({_problem(e)})", at) from None
    except (yaml.YAMLError, ValueError, TypeError) as e:  # a tagged or timestamp-like scalar that does not convert
        raise SpikeforgeError(f"invalid YAML ({str(e)[:200]})", where) from None
    except RecursionError:
        raise SpikeforgeError("invalid YAML (nested too deeply)", where) from None
    finally:
        loader.dispose()


def _problem(e: yaml.MarkedYAMLError) -> str:
    """yaml's problem, and where the construct it was reading began if on another line."""
    problem = e.problem or "syntax error"
    if e.context and e.context_mark and e.problem_mark and e.context_mark.line != e.problem_mark.line:
        return f"{problem} {e.context} from line {e.context_mark.line + 1}"
    return problem


def _check_size(root: yaml.Node, where: str) -> None:
    """Count the nodes of the document with every alias expanded, without expanding it."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        kids = _children(node)
        if done:
            open_.discard(id(node))
            sizes[id(node)] = min(1 + sum(sizes[id(k)] for k in kids), MAX_YAML_NODES + 1)
            if sizes[id(node)] > MAX_YAML_NODES:
                raise SpikeforgeError(f"YAML document expands (aliases included) to more than {MAX_YAML_NODES} "
                                      "values: refused", where)
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_:
            raise SpikeforgeError("invalid YAML (an alias refers to a value that contains it)", where)
        open_.add(id(node))
        stack.append((node, True))
        stack.extend((k, False) for k in kids if id(k) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return node.value
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def load_npz(path: str | Path, where: str) -> dict[str, np.ndarray]:
    """The arrays of the .npz archive `path`, for `where` (what names it, e.g. `--input`). Each
    array's header is read first: real dtypes only (no pickled objects), the total size within
    the memory budget."""
    p = Path(path)
    if not p.is_file():
        raise SpikeforgeError(f"{'not a file' if p.exists() else 'file not found'}: {p}", where)
    bad = SpikeforgeError(f"{p} is not an .npz archive of numeric arrays", where)
    if not zipfile.is_zipfile(p):
        raise bad
    try:
        with zipfile.ZipFile(p) as z:
            total = sum(_header_bytes(z, n, where) for n in z.namelist())
        check_memory(f"{where}: the arrays of {p}", total)
        with np.load(p, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError):
        raise bad from None


def _header_bytes(z: zipfile.ZipFile, name: str, where: str) -> int:
    """The size in bytes of one archive member's array, from its header; non-real dtypes refused."""
    if not name.endswith(".npy"):
        raise ValueError(name)
    with z.open(name) as f:
        version = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _, dtype = read(f)
    if dtype.hasobject or dtype.kind not in "biuf":
        raise SpikeforgeError(f"key {name[:-4]!r}: must be a numeric array, got dtype {dtype}", where)
    return elements(shape) * dtype.itemsize
