"""The README's commands cannot rot: every `l2m ...` line of its code blocks parses, and the
quick start (train, resume, edit) runs with tiny settings."""

from __future__ import annotations

import importlib.resources
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT
from PIL import Image

pytestmark = pytest.mark.needs_tensorflow  # the quick start trains here with --backend tensorflow

ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
# Appended to the quick start's train line: seconds instead of minutes.
TINY = ("--preset", "tiny_32", "--steps", "1", "--batch-size", "2", "--num-examples", "8",
        "--sample-every", "1000", "--no-jit")


def code_blocks(text: str) -> list[list[str]]:
    """The lines of each fenced code block, continuation lines (ending in \\) joined."""
    blocks, current = [], None
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
            continue
        if current is not None:
            if current and current[-1].endswith("\\"):
                current[-1] = current[-1][:-1] + " " + line.strip()
            else:
                current.append(line)
    return blocks


def l2m_commands(lines: list[str]) -> list[list[str]]:
    """The argument lists of the `l2m` commands in these shell lines (after `&&`, after
    VAR=value assignments; comments dropped)."""
    commands = []
    for line in lines:
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # not shell (Python, a table)
            continue
        segment: list[str] = []
        for word in [*words, "&&"]:
            if word not in ("&&", "||", ";"):
                segment.append(word)
                continue
            while segment and ENV_ASSIGNMENT.match(segment[0]):
                segment.pop(0)
            if segment and segment[0] == "l2m":
                commands.append(segment[1:])
            segment = []
    return commands


README = (REPO_ROOT / "README.md").read_text()
BLOCKS = code_blocks(README)
COMMANDS = [command for block in BLOCKS for command in l2m_commands(block)]
# The quick start: the first two code blocks with `l2m` commands (install + train, then edits).
QUICK_TRAIN, QUICK_EDIT = [l2m_commands(b) for b in BLOCKS if l2m_commands(b)][:2]

# Parses each command line as `l2m` would (types, ranges, choices, callbacks; nothing runs), in a
# process where keras is never imported (some lines pick another --backend).
_PARSE = """
import json, sys
import click
from keras_l2mgan.cli.main import main

def parse(args):
    ctx = main.make_context("l2m", list(args))
    command = main
    while isinstance(command, click.Group):
        rest = [*ctx._protected_args, *ctx.args]
        name, command, rest = command.resolve_command(ctx, rest)
        ctx = command.make_context(name, rest, parent=ctx)
    return ctx.command_path

failures = []
for args in json.loads(sys.argv[1]):
    try:
        parse(args)
    except click.ClickException as error:
        failures.append([args, error.format_message()])
print(json.dumps({"failures": failures, "keras": "keras" in sys.modules}))
"""


def test_the_readme_has_the_commands_this_test_checks():
    assert len(COMMANDS) >= 25, COMMANDS
    assert QUICK_TRAIN == [["train", "--backend", "tensorflow", "--attrs", "smiling"]]
    assert [command[:3] for command in QUICK_EDIT] == [["edit", "photo.jpg", "--to"]] * 2
    assert ["train", "--resume", "runs/tiny", "--steps", "400"] in COMMANDS
    assert {"train", "edit", "export", "serve", "eval", "data", "classifier"} <= \
        {command[0] for command in COMMANDS}


def test_every_readme_command_parses():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    result = subprocess.run([sys.executable, "-c", _PARSE, json.dumps(COMMANDS)], cwd=REPO_ROOT,
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["failures"] == []
    assert not report["keras"]  # parsing loads nothing heavy


def test_parsing_refuses_what_the_cli_refuses():
    """The checker itself can fail: a rotten line (a renamed option, a bad value) is caught."""
    rotten = [["data", "preview", "--datasett", "synthetic"], ["train", "--lr", "-1"],
              ["edit", "p.png", "--to", "smiling", "--alpha", "9"]]
    result = subprocess.run([sys.executable, "-c", _PARSE, json.dumps(rotten)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert [args for args, _ in report["failures"]] == rotten


def _readme_line(*start: str) -> list[str]:
    return next(c for c in COMMANDS if c[:len(start)] == list(start))


@pytest.mark.slow  # trains, resumes in a fresh process, then edits
def test_quick_start_train_resume_and_edit(tmp_path, monkeypatch):
    """The quick start's train line (tiny settings appended), the Training section's resume line
    in a fresh process whose default backend is another one, and the quick start's edits."""
    from keras_l2mgan.cli.main import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("L2M_DATA_DIR", str(tmp_path / "data"))
    run = tmp_path / "runs" / "tiny"
    train = [*QUICK_TRAIN[0], *TINY, "--run-dir", str(run)]
    result = CliRunner().invoke(main, train)
    assert result.exit_code == 0, result.output
    # stdout: the human summary alone, naming the model and the next commands.
    summary = result.stdout.strip().splitlines()
    assert summary[0].startswith(f"trained {run} on tensorflow") and "steps 0 -> 1" in summary[0]
    assert f"  l2m edit PHOTO --to smiling --model {run}" in summary
    assert f"  l2m export {run} --name NAME" in summary
    assert (run / "model" / "config.json").is_file()

    # `--resume runs/tiny --steps 400` in a process whose default backend is jax: keras loads on
    # tensorflow, the run's backend, restores the checkpoint and finds it at --steps (1 here:
    # one more step would cost another ~20 s of tracing). --json: stdout is one JSON document.
    resume = [arg.replace("runs/tiny", str(run)) for arg in _readme_line("train", "--resume")]
    resume = [*resume[:-1], "1", "--json"]
    env = {**os.environ, "KERAS_BACKEND": "jax", "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-m", "cli.main", *resume], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert (report["backend"], report["start_step"], report["final_step"]) == \
        ("tensorflow", 1, 1)
    # A --backend that disagrees with the run is one line, before keras loads.
    refused = subprocess.run([sys.executable, "-m", "cli.main", "train", "--backend", "jax",
                              "--resume", str(run)], cwd=REPO_ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr.strip().splitlines() == [
        f"Error: --backend jax: the run {run} trained on tensorflow; resume it without "
        "--backend (or with --backend tensorflow)"]

    # The quick start's edits: the shipped model, then the run just trained.
    # A real photograph (its face is found by default): scikit-image's bundled astronaut.
    astronaut = importlib.resources.files("skimage.data") / "astronaut.png"
    Image.open(astronaut).convert("RGB").resize((300, 240)).save(tmp_path / "photo.jpg")
    shipped, own = QUICK_EDIT
    result = CliRunner().invoke(main, shipped)
    assert result.exit_code == 0, result.output
    assert "saved_models/smiling/1" in result.stderr
    assert Image.open(tmp_path / "photo_smiling.png").size == (300, 240)
    (tmp_path / "photo_smiling.png").unlink()
    result = CliRunner().invoke(main, [arg.replace("runs/<run>", str(run)) for arg in own])
    assert result.exit_code == 0, result.output
    assert f"bundle {run / 'model'}" in result.stderr
    assert result.stdout.startswith("photo.jpg: ") and (tmp_path / "photo_smiling.png").is_file()
