"""Pieces every `l2m` command shares: backend selection, parameter types and error reporting.

Exit codes: 0 success; 2 usage errors and bad input (one `Error:` line naming the option or
file); 1 failures while running (training diverged, a server that does not answer, a batch
with failed photos) and internal errors (bugs: the traceback with -v or L2M_DEBUG=1).
Results go to stdout; progress and logs to stderr.
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import traceback
from pathlib import Path

import click

from keras_l2mgan.errors import RunFailure

BACKENDS = ("tensorflow", "jax", "torch")
# keras_l2mgan.data.pipeline.SOURCES, spelled here because that module imports TensorFlow and
# --data is checked before anything heavy loads (a test keeps the two equal).
DATA_SOURCES = ("synthetic", "synthetic_memory", "celeba", "celeba_hq")
BACKEND_EXPLICIT = "l2m.backend_explicit"  # ctx.meta key: --backend was given
VERBOSE = "l2m.verbose"  # ctx.meta key: -v was given


def _set_backend(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Set KERAS_BACKEND before anything imports keras (keras fixes its backend at import)."""
    if value is None:
        return None
    if "keras" in sys.modules and os.environ.get("KERAS_BACKEND", value) != value:
        raise click.UsageError(
            f"--backend {value}: keras is already imported with another backend; "
            "pass --backend before anything else runs"
        )
    os.environ["KERAS_BACKEND"] = value
    ctx.meta[BACKEND_EXPLICIT] = value
    return value


def default_backend() -> str:
    """The backend keras will pick, without importing it: KERAS_BACKEND, else keras.json's,
    else tensorflow (Keras' own rules)."""
    if "keras" in sys.modules:
        return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME") or Path("~/.keras").expanduser())
    try:
        backend = json.loads((home / "keras.json").read_text()).get("backend")
    except (OSError, ValueError, AttributeError):
        backend = None
    return backend if isinstance(backend, str) else "tensorflow"


def backend_option(func):
    """`--backend tensorflow|jax|torch`; without it the usual KERAS_BACKEND / keras.json rules.
    Also adds -v/--verbose, which every command takes."""
    func = verbose_option(func)
    return click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_set_backend,
        show_default="$KERAS_BACKEND, else ~/.keras/keras.json",
        help="Keras backend to run on.",
    )(func)


def _set_verbose(ctx: click.Context, param: click.Parameter, value: bool) -> bool:
    if value:
        ctx.meta[VERBOSE] = True
    return value


def verbose_option(func):
    """-v/--verbose: the full traceback of any error (as L2M_DEBUG=1) and the libraries' logs."""
    return click.option(
        "-v", "--verbose", is_flag=True, expose_value=False, is_eager=True,
        callback=_set_verbose,
        help="Show the full traceback of errors and the libraries' logs (TensorFlow's, "
        "warnings); same as L2M_DEBUG=1.",
    )(func)


# Quiet by default: TensorFlow's C++ log (absl init notice, oneDNN and CPU-feature notes, "failed
# call to cuInit" on machines without a GPU, XLA service lines) is written before Python could
# filter it, so the levels must be in the environment before anything imports TensorFlow.
QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "3", "GRPC_VERBOSITY": "ERROR", "GLOG_minloglevel": "3"}
# Python loggers of libraries whose warnings are known to be benign here.
QUIET_LOGGERS = ("absl", "tensorflow", "jax._src.xla_bridge", "tensorflow_datasets")


class _SilentTensorFlowImport:
    """A meta path finder: the first `import tensorflow` runs with file descriptor 2 on
    /dev/null. Its CUDA stub logs through absl before absl's log is initialised, which no
    level or variable reaches ("All log messages before absl::InitializeLog()...")."""

    def find_spec(self, name: str, path, target=None):
        if name != "tensorflow":
            return None
        import importlib.machinery

        # Not removed here: a find_spec("tensorflow") that only checks for TensorFlow (keras
        # does) imports nothing; the import that executes it comes later.
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilentLoader(spec.loader)
        return spec


class _SilentLoader:
    def __init__(self, loader) -> None:
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module) -> None:
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            self.loader.exec_module(module)
        finally:
            sys.meta_path[:] = [f for f in sys.meta_path
                                if not isinstance(f, _SilentTensorFlowImport)]
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def quiet_libraries() -> None:
    """Keep library logs off stderr (values the user set in the environment win); -v skips
    this. Ours (keras_l2mgan.*) stay, as plain lines."""
    for name, value in QUIET_ENV.items():
        os.environ.setdefault(name, value)
    if "tensorflow" not in sys.modules and not any(
            isinstance(finder, _SilentTensorFlowImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, _SilentTensorFlowImport())
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    # A plain root handler first: a library's logging.warning() would otherwise install
    # basicConfig's "WARNING:name:" format, and our own notes would read like library logs.
    root = logging.getLogger()
    if not root.handlers:
        handler = _CurrentStderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is when a record comes (click's test runner swaps it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


# Parameter types: every number and name is checked while parsing, before keras loads.

class DataSource(click.ParamType):
    """synthetic, celeba, celeba_hq (any case, - or _) or an existing folder."""

    name = "data"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "|".join(DATA_SOURCES) + "|FOLDER"

    def convert(self, value, param, ctx) -> str:
        if not isinstance(value, str):
            return value
        if value.strip().lower().replace("-", "_") in DATA_SOURCES:
            return value
        path = Path(value).expanduser()
        if path.is_dir():
            return value
        if path.exists():
            self.fail(f"{value!r} is a file; pass {', '.join(DATA_SOURCES)} or a dataset "
                      "folder", param, ctx)
        self.fail(f"{value!r} is not one of {', '.join(DATA_SOURCES)}, and the folder "
                  f"{value} does not exist", param, ctx)


class WeightList(click.ParamType):
    """Comma-separated finite numbers >= 0, as a tuple of floats."""

    name = "weights"

    def convert(self, value, param, ctx) -> tuple[float, ...]:
        if isinstance(value, tuple):
            return value
        try:
            weights = tuple(float(part) for part in str(value).split(","))
        except ValueError:
            weights = ()
        if not weights or not all(0 <= w < math.inf for w in weights):
            self.fail(f"{value!r}: pass comma-separated weights >= 0, e.g. 1,2,1,2", param, ctx)
        return weights


class Devices(click.ParamType):
    """A device count >= 1 or 'all' (how many exist is only known once the backend loads)."""

    name = "devices"

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "N|all"

    def convert(self, value, param, ctx) -> str:
        text = str(value).strip().lower()
        if text == "all" or (text.isascii() and text.isdigit() and int(text) >= 1):
            return text if text == "all" else str(int(text))
        self.fail(f"{value!r}: pass a number of devices (1 or more) or 'all'; `l2m info` "
                  "lists this machine's devices", param, ctx)


# An edit strength far outside this range only repaints the face with noise: a typo, not an
# edit anyone wants. 0 reconstructs, 1 is the full edit, above 1 extrapolates.
ALPHA_RANGE = (-1.0, 2.0)


def check_alpha(value: float, param: click.Parameter | None, ctx, what: str) -> float:
    low, high = ALPHA_RANGE
    if not math.isfinite(value) or not low <= value <= high:
        raise click.BadParameter(f"{what} {value:g} is outside {low:g} to {high:g} (0 "
                                 "reconstructs, 1 is the full edit, above 1 extrapolates)",
                                 ctx, param)
    return value


# Error reporting.

# Errors our own code raises on purpose, with a message for the user.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
               FileExistsError, PermissionError)


def _our_dirs() -> tuple[Path, ...]:
    import keras_l2mgan

    return (Path(__file__).resolve().parent, Path(keras_l2mgan.__file__).resolve().parent)


def raised_in_our_code(error: BaseException) -> bool:
    """Whether the innermost frame of the traceback is in keras_l2mgan/ or the CLI: our code
    raises ValueError & co. with a message for the user; the same types from inside keras,
    TensorFlow or NumPy are bugs of ours (we passed them something wrong)."""
    tb = error.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    filename = Path(tb.tb_frame.f_code.co_filename).resolve()
    return any(filename.is_relative_to(folder) for folder in _our_dirs())


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def report_error(ctx: click.Context, error: Exception) -> None:
    """One line on stderr and the exit code for an exception a command raised."""
    verbose = bool(ctx.meta.get(VERBOSE) or os.environ.get("L2M_DEBUG"))
    if verbose:
        traceback.print_exception(type(error), error, error.__traceback__, file=sys.stderr)
    if isinstance(error, RunFailure):
        click.echo(f"Error: {_first_line(error)}", err=True)
        ctx.exit(1)
    if isinstance(error, USER_ERRORS) and raised_in_our_code(error):
        click.echo(f"Error: {_first_line(error)}", err=True)
        ctx.exit(2)
    hint = "" if verbose else "; run again with -v (or L2M_DEBUG=1) for the traceback"
    click.echo(f"Internal error (a bug in l2m, please report it): {type(error).__name__}: "
               f"{_first_line(error)}{hint}", err=True)
    ctx.exit(1)


class L2MGroup(click.Group):
    """The `l2m` group: reports what its commands raise as described in this module, and keeps
    library logs quiet unless -v is given (anywhere on the line)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not (os.environ.get("L2M_DEBUG") or {"-v", "--verbose"} & set(args)):
            quiet_libraries()
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.ClickException, click.exceptions.Exit,
                click.exceptions.Abort):
            raise
        except Exception as error:  # noqa: BLE001 - classified and reported, never hidden
            report_error(ctx, error)

