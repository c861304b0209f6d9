"""The README's Python example runs as written and does what it says (fills .grad of encoder and heads)."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs_and_fills_gradients() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    assert blocks, "README has no python example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    assert all(p.grad is not None for p in namespace["encoder"].parameters())
    assert all(p.grad is not None for p in namespace["heads"].parameters())
    assert set(namespace["step"].weights) == {"seg", "depth"}
