"""Every ```python block of README.md and of docs/**/*.md runs, as written, on one device.

The blocks of one file run in order in one shared namespace (a later block may use the names of
an earlier one), in a fresh temporary working directory (examples write files such as
``model.npz``), with ``jax_enable_x64`` off as a user has it (``conftest`` turns it on for the
other tests). A block fenced as ```python no-run is skipped: keep those for what cannot run on a
2-core CPU box (multi-host commands). A divergence warning from ``fit``/``sweep`` is an error
here: an example that diverges does not show what it says.

Pages added to ``docs/`` later are picked up by the glob, nothing to register.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import NamedTuple

import jax
import pytest

import bpjax as bp

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")


class Block(NamedTuple):
    """One fenced code block: its first line's number in the file (1-based) and its code."""

    line: int
    code: str
    info: str


def fenced_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a markdown text, with their info strings (CommonMark fences)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent, info = m["fence"], len(m["indent"]), m["info"].strip()
        body, i = [], i + 1
        start = i + 1
        while i < len(lines):
            close = FENCE.match(lines[i])
            if close and close["fence"][0] == fence[0] and len(close["fence"]) >= len(fence) \
                    and not close["info"].strip():
                break
            line = lines[i]
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))):])
            i += 1
        blocks.append(Block(start, "\n".join(body) + "\n", info))
        i += 1
    return blocks


def python_blocks(text: str) -> list[Block]:
    """The blocks to run: info string ``python`` (or ``py``), not marked ``no-run``."""
    out = []
    for b in fenced_blocks(text):
        words = b.info.split()
        if words and words[0] in ("python", "py") and "no-run" not in words[1:]:
            out.append(b)
    return out


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]


def run_page(path: Path, namespace: dict | None = None) -> dict:
    """Runs a page's python blocks in order in one namespace; tracebacks carry the page's lines."""
    namespace = {"__name__": "__main__"} if namespace is None else namespace
    for block in python_blocks(path.read_text(encoding="utf-8")):
        # Pad with blank lines so that a traceback names the line of the markdown file.
        code = compile("\n" * (block.line - 1) + block.code, str(path), "exec")
        exec(code, namespace)  # noqa: S102 - the documentation's own examples
    return namespace


@pytest.mark.parametrize("path", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_run_as_written(path, tmp_path, monkeypatch):
    assert python_blocks(path.read_text(encoding="utf-8")) or path.name != "README.md"
    monkeypatch.chdir(tmp_path)
    with jax.enable_x64(False), warnings.catch_warnings():
        warnings.simplefilter("error", bp.DivergenceWarning)
        run_page(path)


# --- the runner itself --------------------------------------------------------------------------

PAGE = """\
text
```python
a = 1
```
   ```python
   b = a + 1
   ```
```python no-run
raise SystemExit("must not run")
```
```bash
exit 1
```
````markdown
```python
inside = "a block quoted in a block: not run"
```
````
~~~py
c = b * 10
~~~
"""


def test_the_runner_finds_blocks_in_order_and_skips_no_run(tmp_path):
    blocks = python_blocks(PAGE)
    assert [b.code for b in blocks] == ["a = 1\n", "b = a + 1\n", "c = b * 10\n"]
    assert [b.line for b in blocks] == [3, 6, 20]
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    assert run_page(page)["c"] == 20


def test_a_failing_block_names_the_page_and_its_line(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("# title\n\n```python\nx = 1\ny = undefined_name\n```\n")
    with pytest.raises(NameError) as info:
        run_page(page)
    frame = info.traceback[-1]
    assert Path(frame.path) == page and frame.lineno + 1 == 5
