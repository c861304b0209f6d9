"""The README's Python examples run as written and do what they say: the step driver fills .grad of encoder and
heads; a hook of one's own is called by the trainer."""

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


def test_readme_hook_example_runs_the_custom_logger(tmp_path: Path, monkeypatch, capsys) -> None:
    blocks = [b for b in re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
              if "(Hook)" in b]
    assert len(blocks) == 1, "README has one hook example"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("step ")]
    assert [line.split(":")[0] for line in printed] == ["step 10", "step 20"]
    assert namespace["result"].meta["steps"] == 20 and (tmp_path / "runs" / "hook-demo" / "results.json").is_file()
