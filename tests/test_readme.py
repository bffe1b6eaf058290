"""The README's generated sections and quickstart commands stay true to the code."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import update_readme  # noqa: E402


def test_models_table_matches_registry():
    readme = (ROOT / "README.md").read_text()
    assert update_readme.section(readme, "models-table") == update_readme.models_markdown()


def test_weights_table_matches_manifest():
    readme = (ROOT / "README.md").read_text()
    expected = update_readme.weights_markdown(ROOT / "colorjax/weights/manifest.json")
    assert update_readme.section(readme, "weights-table") == expected


def test_quickstart_has_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", quickstart, re.DOTALL)
    assert len(blocks) == 2 and all(len(b.strip().splitlines()) == 1 for b in blocks)
    extracted = subprocess.run(
        ["awk", "/<!-- ci:test-command -->/{getline; getline; print; exit}", "README.md"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert extracted == blocks[1].strip()
    assert "awk '/<!-- ci:test-command -->/" in (ROOT / ".ci/run").read_text()


def test_demo_command_runs_end_to_end(tmp_path, monkeypatch):
    from colorjax import cli

    monkeypatch.chdir(ROOT)
    argv = [
        "demo",
        "--workdir",
        str(tmp_path),
        "--skip-train",
    ]
    assert cli.main(argv) == 0
    argv = [
        "demo",
        "--workdir",
        str(tmp_path),
        "--sample",
        "coffee.png",
        "--set",
        "train.steps=2",
        "--set",
        "train.batch_size=4",
        "--set",
        "data.image_size=32",
        "--set",
        "train.eval_every=0",
        "--set",
        "train.checkpoint_every=2",
        "--set",
        "train.progress=false",
    ]
    assert cli.main(argv) == 0
    trained = tmp_path / "trained-colornet-tiny.png"
    out = np.asarray(Image.open(trained))
    from colorjax.cli.demo import sample_photo

    photo = sample_photo("coffee.png")
    assert out.shape == (photo.shape[0], 3 * photo.shape[1], 3)
    np.testing.assert_array_equal(out[:, 2 * photo.shape[1] :], photo)


def _bash_lines(text: str) -> list[str]:
    """Every command line of the ```bash blocks (comments and continuations joined), and every
    inline `colorjax ...` / `python ....py ...` code span."""
    lines = re.findall(r"`((?:colorjax|python [\w/]+\.py) [^`\n]+)`", text)
    for block in re.findall(r"```bash\n(.*?)```", text, re.DOTALL):
        block = block.replace("\\\n", " ")
        for line in block.splitlines():
            line = line.split("  #", 1)[0].strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _options(parser) -> set[str]:
    return {opt for action in parser._actions for opt in action.option_strings}


def _subparser(parser, name: str):
    for action in parser._actions:
        if isinstance(getattr(action, "choices", None), dict) and name in action.choices:
            return action.choices[name]
    return None


def test_every_command_the_readme_shows_exists_with_its_flags():
    # Each `colorjax COMMAND [ACTION] ... --flag` line names a real command and only flags it
    # takes; each `python PATH.py ... --flag` line names a file in the repo that defines them.
    from colorjax.cli import COMMANDS, build_parser

    docs = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    checked = 0
    for line in (line for doc in docs for line in _bash_lines(doc.read_text())):
        for part in re.split(r"&&|\|", line):
            words = part.split()
            if not words:
                continue
            flags = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", part))
            if words[0] == "colorjax" and len(words) > 1 and not words[1].startswith(("-", "<")):
                assert words[1] in COMMANDS, line
                parser = _subparser(build_parser(words[1]), words[1])
                action = _subparser(parser, words[2]) if len(words) > 2 else None
                known = _options(parser) | (_options(action) if action else set())
                assert flags <= known, (line, sorted(flags - known))
                checked += 1
            elif words[0] == "python" and len(words) > 1 and words[1].endswith(".py"):
                source = (ROOT / words[1]).read_text()
                missing = {f for f in flags if f'"{f}"' not in source}
                assert not missing, (line, sorted(missing))
                checked += 1
    assert checked >= 30
