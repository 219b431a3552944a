"""What every `l2m` command promises: help and defaults on every option, values checked while
parsing (before keras loads), exit codes (2 bad input, 1 failures while running and bugs),
errors naming options, results on stdout, and a server that does not answer named in one line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import click
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT
from PIL import Image

from keras_l2mgan.cli.common import DATA_SOURCES, L2MGroup, verbose_option
from keras_l2mgan.cli.main import main

pytestmark = pytest.mark.backend_independent  # the CLI's contract does not depend on the backend


def _commands(group: click.Group = main, path: str = "l2m"):
    for name, command in group.commands.items():
        yield f"{path} {name}", command
        if isinstance(command, click.Group):
            yield from _commands(command, f"{path} {name}")


def test_every_option_of_every_command_has_help_and_its_default():
    missing = []
    for path, command in [("l2m", main), *_commands()]:
        if not (command.help or "").strip():
            missing.append(f"{path}: no help")
        ctx = click.Context(command, info_name=path)
        for param in command.params:
            if not isinstance(param, click.Option) or param.name in ("help", "version"):
                continue
            record = param.get_help_record(ctx)
            text = record[1] if record else ""
            if not param.help:
                missing.append(f"{path} {param.opts[0]}: no help")
            # A flag that is off by default, and a required option, have no default to show.
            plain_flag = param.is_flag and not param.secondary_opts
            if not (plain_flag or param.required or param.hidden) and "[default: " not in text:
                missing.append(f"{path} {param.opts[0]}: no [default: ...]")
    assert missing == []


def test_one_name_per_concept():
    options = {path: {o for p in command.params for o in p.opts}
               for path, command in [("l2m", main), *_commands()]}
    for path in ("l2m train", "l2m eval", "l2m data preview", "l2m data stats"):
        assert "--data" in options[path], path
    assert "--log-every" in options["l2m train"] and "--dry-run" in options["l2m train"]
    hidden = {o for p in main.commands["data"].commands["stats"].params if p.hidden
              for o in p.opts}
    assert hidden == {"--dataset"}  # the old spelling still works, unlisted
    # The parse-time list of dataset names is the pipeline's.
    from keras_l2mgan.data.pipeline import SOURCES

    assert DATA_SOURCES == SOURCES


# Each case: arguments, and what the one Error line must say. Checked in a fresh process that
# never imports keras: the values are refused while parsing, in milliseconds.
BAD_VALUES = [
    (["train", "--lr", "-1"], "'--lr': -1.0 is not in the range x>0"),
    (["train", "--lr", "0"], "'--lr'"),
    (["train", "--steps", "0"], "'--steps'"),
    (["train", "--clip-norm", "-1"], "'--clip-norm'"),
    (["train", "--batch-size", "0"], "'--batch-size'"),
    (["train", "--sample-every", "0"], "'--sample-every'"),
    (["train", "--checkpoint-every", "0"], "'--checkpoint-every'"),
    (["train", "--keep-checkpoints", "0"], "'--keep-checkpoints'"),
    (["train", "--log-every", "0"], "'--log-every'"),
    (["train", "--ema-decay", "1"], "'--ema-decay': 1.0 is not in the range 0<=x<1"),
    (["train", "--diversity-weight", "-1"], "'--diversity-weight'"),
    (["train", "--preset", "nonsense"], "'--preset': 'nonsense' is not one of 'celeba_hq_256'"),
    (["train", "--data", "nonsense"], "'--data': 'nonsense' is not one of synthetic"),
    (["train", "--devices", "0"], "'--devices': '0': pass a number of devices (1 or more)"),
    (["train", "--devices", "two"], "'--devices'"),
    (["train", "--img-size", "33"], "'--img-size': '33' is not one of '32', '64'"),
    (["edit", "p.png", "--to", "smiling", "--alpha", "5"], "'--alpha': 5 is outside -1 to 2"),
    (["edit", "p.png", "--to", "smiling", "--alpha", "0,nan"], "'--alpha': must be finite"),
    (["edit", "p.png", "--to", "smiling", "--sweep", "0:9:3"], "'--sweep': 9 is outside"),
    (["edit", "p.png", "--to", "smiling", "--sweep", "0:1:3", "--alpha", "0.3"],
     "--sweep and --alpha both set the edit strengths; pass one"),
    (["edit", "p.png", "--to", "smiling", "--timeout", "0"], "'--timeout'"),
    (["eval", "m", "--batch-size", "0"], "'--batch-size'"),
    (["data", "stats", "--img-size", "0"], "'--img-size'"),
    (["data", "preview", "-n", "0"], "'-n' / '--per-domain'"),
    (["data", "stats", "--data", "synthetic", "--dataset", "celeba"], "disagree"),
    (["classifier", "train", "--lr", "0"], "'--lr'"),
    (["serve", "m", "--port", "70000"], "'--port'"),
]

_CHECK = """
import json, sys
from click.testing import CliRunner
from keras_l2mgan.cli.main import main
results = []
for args in json.loads(sys.argv[1]):
    result = CliRunner().invoke(main, args)
    errors = [l for l in result.stderr.splitlines() if l.startswith("Error:")]
    results.append([result.exit_code, errors])
print(json.dumps({"results": results, "keras": "keras" in sys.modules}))
"""


def test_bad_values_are_refused_while_parsing_naming_the_option(tmp_path):
    result = subprocess.run([sys.executable, "-c", _CHECK, json.dumps([a for a, _ in BAD_VALUES])],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for (args, message), (code, errors) in zip(BAD_VALUES, report["results"], strict=True):
        assert code == 2 and len(errors) == 1 and message in errors[0], (args, code, errors)
        assert "device(s) available" not in errors[0]
    assert not report["keras"]  # refused before anything heavy loaded


def test_devices_beyond_this_machine_say_what_it_has():
    from keras_l2mgan.training.run import resolve_devices

    with pytest.raises(ValueError, match=r"--devices 64: this machine has \d+ (CPU device|GPU)"):
        resolve_devices("64", "tensorflow")


# Exit codes. A group of our own commands raising real exceptions of each kind.

@click.group(cls=L2MGroup)
@verbose_option
def _app() -> None:
    """Test app."""


@_app.command("user")
def _user_error() -> None:
    """A mistake in the input, reported by our own code."""
    from keras_l2mgan.editors import domain_index

    domain_index(["cat", "dog"], "bird")


@_app.command("library")
def _library_error() -> None:
    """A ValueError from inside NumPy: our bug, not the user's input."""
    np.reshape(np.zeros(3), (2, 2))


@_app.command("bug")
def _bug() -> None:
    """Any other exception."""
    {}["missing"]  # noqa: B018


@_app.command("diverged")
def _diverged() -> None:
    """A run that started and failed."""
    from keras_l2mgan.training.run import TrainingError

    raise TrainingError("non-finite loss at step 3")


@pytest.mark.parametrize("command, code, start", [
    ("user", 2, "Error: unknown domain 'bird' for --from"),
    ("library", 1, "Internal error (a bug in l2m, please report it): ValueError: cannot reshape"),
    ("bug", 1, "Internal error (a bug in l2m, please report it): KeyError: 'missing'"),
    ("diverged", 1, "Error: non-finite loss at step 3"),
])
def test_exit_codes_and_internal_errors(command, code, start, monkeypatch):
    monkeypatch.delenv("L2M_DEBUG", raising=False)
    result = CliRunner().invoke(_app, [command])
    assert result.exit_code == code
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(start), lines
    assert ("run again with -v" in lines[0]) == lines[0].startswith("Internal error")
    for debug in (["-v", command], [command]):
        if debug == [command]:
            monkeypatch.setenv("L2M_DEBUG", "1")
        shown = CliRunner().invoke(_app, debug)
        assert shown.exit_code == code
        assert "Traceback (most recent call last)" in shown.stderr
        assert shown.stderr.strip().splitlines()[-1].startswith(start)


def _photo(path):
    Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(path)
    return path


@pytest.mark.parametrize("listening", [False, True])
def test_a_server_that_does_not_answer_is_one_line_naming_it(tmp_path, listening):
    """Nothing listening (refused), or a socket that accepts TCP but never speaks gRPC: one
    line naming the address, exit 1, nothing written."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{sock.getsockname()[1]}"
        if listening:
            sock.listen(1)
        else:
            sock.close()
        photo = _photo(tmp_path / "p.png")
        result = CliRunner().invoke(main, ["edit", str(photo), "--to", "smiling", "--server",
                                           address, "--model", "faces", "--timeout", "1"])
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines == [f"Error: server {address} did not answer within 1 s (is `l2m serve` or "
                     "tensorflow_model_server running there?); a slow network or server needs "
                     "a larger --timeout"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.png"]


def test_train_dry_run_prints_the_resolved_options_and_writes_nothing(tmp_path):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(main, ["train", "--preset", "tiny_32", "--lr", "3e-4",
                                       "--log-every", "5", "--run-dir", str(run_dir),
                                       "--dry-run"])
    assert result.exit_code == 0, result.output
    options = json.loads(result.stdout)  # stdout is the JSON alone
    assert (options["preset"], options["lr"], options["log_every"]) == ("tiny_32", 3e-4, 5)
    from keras_l2mgan.training.run import TrainOptions

    assert (options["steps"], options["run_dir"], options["backend"]) == \
        (TrainOptions().steps, str(run_dir), "tensorflow")
    assert options["loss_weights"]["reconstruction"] == 10.0  # l2m train's default
    assert not run_dir.exists()


def test_resuming_a_run_from_before_the_guards_keeps_it_unguarded(tmp_path):
    run_dir = tmp_path / "old"
    created = CliRunner().invoke(main, ["train", "--preset", "tiny_32", "--run-dir",
                                        str(run_dir), "--dry-run"])
    old_options = json.loads(created.stdout)
    del old_options["clip_norm"]
    del old_options["loss_weights"]["style_size"]
    run_dir.mkdir()
    (run_dir / "training_options.json").write_text(json.dumps({"options": old_options}))
    resumed = CliRunner().invoke(main, ["train", "--resume", str(run_dir), "--dry-run"])
    assert resumed.exit_code == 0, resumed.output
    options = json.loads(resumed.stdout)
    assert options["clip_norm"] is None
    assert "style_size" not in options["loss_weights"]  # LossWeights reads it as 0


def test_train_guards_against_style_explosions_unless_turned_off():
    runner = CliRunner()
    default = runner.invoke(main, ["train", "--preset", "tiny_32", "--dry-run"])
    off = runner.invoke(main, ["train", "--preset", "tiny_32", "--clip-norm", "0",
                               "--style-size-weight", "0", "--dry-run"])
    assert default.exit_code == 0 and off.exit_code == 0, default.output + off.output
    default, off = json.loads(default.stdout), json.loads(off.stdout)
    assert (default["lr"], default["clip_norm"]) == (2e-3, 1.0)
    assert default["loss_weights"]["style_size"] == 0.1
    assert off["clip_norm"] == 0.0 and off["loss_weights"]["style_size"] == 0.0
