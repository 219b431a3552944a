"""Where an edit runs: a Keras bundle, an exported SavedModel, or a TF Serving server.

All three take uint8 (N, S, S, 3) face crops and return uint8 edits, and guess source domains
with the discriminator (the SavedModel's `guess_domain` signature). A model with a FAN (a bundle
with one; an export's `landmarks` signature) also gives face landmarks, and with the mean
CelebA-HQ landmarks (``landmarks_mean``) `l2m edit` aligns faces the way StarGAN v2 does. This
module also maps attribute requests (`--to smiling,male`) to domain indices, and tells a model
trained on synthetic faces (``training_data``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from keras_l2mgan.bundle import CONFIG_FILE, find_bundle_dir, load_landmarks_mean
from keras_l2mgan.errors import ServerUnavailableError
from keras_l2mgan.export import signature_inputs, version_dirs
from keras_l2mgan.image_range import to_uint8, to_unit

# assets.extra/training.json of an export: {"data": "synthetic"} when the model was trained on
# the synthetic faces (`l2m export` writes it from the run's options; the shipped demo models
# carry it). L2MConfig is strict, so this lives beside the config rather than in it.
TRAINING_FILE = "training.json"
SYNTHETIC = "synthetic"
# `l2m train --data` values that train on those faces (the in-memory source renders the same ones).
SYNTHETIC_SOURCES = (SYNTHETIC, "synthetic_memory")
# The edit's image size is free; FAN always sees 256 x 256 (landmarks come in its pixels).
FAN_INPUT_SIZE = 256


class _Editor:
    """What every editor offers besides edit and guess_domain."""

    has_fan = False  # landmarks() works
    landmarks_mean: np.ndarray | None = None  # (98, 2) mean CelebA-HQ landmarks at 256 px
    training_data: str | None = None  # "synthetic" for a model trained on synthetic faces

    @property
    def aligns_faces(self) -> bool:
        """Whether `l2m edit` can align faces to the CelebA-HQ framing with this model."""
        return self.has_fan and self.landmarks_mean is not None

    def landmarks(self, images) -> np.ndarray:
        """uint8 (N, 256, 256, 3) face crops -> FAN's landmarks (N, 98, 2), (x, y) pixels."""
        raise ValueError(f"{self.description} has no FAN, so no landmarks")

    def edit_like(self, images, references, source, reference_domain, alpha) -> np.ndarray:
        """Reference-guided edit (``L2MGAN.edit_like``): uint8 (N, S, S, 3) crops and one
        reference crop each -> uint8 edits. Domains are (N,) ints, -1 for the discriminator's
        guess."""
        raise NotImplementedError


class KerasEditor(_Editor):
    """A bundle dir, or an L2MGAN already in memory, on the current Keras backend."""

    def __init__(self, source, landmarks_mean: np.ndarray | None = None):
        from keras_l2mgan.bundle import load_bundle

        if isinstance(source, (str, Path)):
            self.model, self.description = load_bundle(source), f"bundle {source}"
            landmarks_mean = load_landmarks_mean(source)
            self.training_data = run_training_data(Path(source))
        else:
            self.model, self.description = source, "in-memory model"
        self.img_size = self.model.config.img_size
        self.domain_names = list(self.model.config.names)
        self.has_fan = self.model.fan is not None
        self.landmarks_mean = landmarks_mean

    def landmarks(self, images) -> np.ndarray:
        from keras import ops

        from keras_l2mgan.align import landmarks_from_heatmaps

        if not self.has_fan:
            return super().landmarks(images)
        x = to_unit(images)
        return landmarks_from_heatmaps(ops.convert_to_numpy(self.model.fan(x)), x.shape[1])

    def edit(self, images, source, target, alpha) -> np.ndarray:
        from keras import ops

        x = to_unit(images)
        y = self.model.edit(x, np.asarray(source, np.int32), np.asarray(target, np.int32),
                            np.asarray(alpha, np.float32))
        return to_uint8(ops.convert_to_numpy(y))

    def guess_domain(self, images) -> np.ndarray:
        from keras import ops

        x = to_unit(images)
        return np.argmax(ops.convert_to_numpy(self.model.discriminator.domain_logits(x)), -1)

    def edit_like(self, images, references, source, reference_domain, alpha) -> np.ndarray:
        from keras import ops

        source = _guessed(self, images, source)
        reference_domain = _guessed(self, references, reference_domain)
        x = to_unit(images)
        ref = to_unit(references)
        y = self.model.edit_like(x, ref, np.asarray(alpha, np.float32), source,
                                 reference_domain)
        return to_uint8(ops.convert_to_numpy(y))


def _guessed(editor, images, domains) -> np.ndarray:
    """(N,) int32 domains with every -1 replaced by the editor's guess for that image."""
    domains = np.asarray(domains, np.int32).reshape(-1)
    if (domains < 0).any():
        domains = np.where(domains < 0, np.asarray(editor.guess_domain(images), np.int32), domains)
    return domains


class SavedModelEditor(_Editor):
    """A SavedModel version dir written by `l2m export`, run in-process by TensorFlow.

    Opening runs none of the model's functions: the image size and domain names come from
    the config.json that export writes into assets.extra (a model's signatures are programs,
    and a crafted `metadata` one could do anything). Editing of course runs the model."""

    def __init__(self, version_dir: str | Path):
        from keras_l2mgan.config import L2MConfig

        version_dir = Path(version_dir)
        config_path = version_dir / "assets.extra" / CONFIG_FILE
        if not config_path.is_file():
            raise ValueError(f"SavedModel {version_dir} has no assets.extra/{CONFIG_FILE}: it "
                             "was exported by an older version of l2m; re-export it with "
                             "`l2m export RUN_DIR --name NAME`")
        config = L2MConfig.load(config_path)  # strictly checked, one line when damaged
        _check_nothing_runs_on_load(version_dir)
        import tensorflow as tf

        self.loaded = tf.saved_model.load(str(version_dir))
        missing = {"serving_default", "guess_domain"} - set(self.loaded.signatures)
        if missing:
            # Exports made before the rename call it classify: the fix is a re-export.
            renamed = ("; it predates the classify -> guess_domain rename: re-export it with "
                       "`l2m export RUN_DIR --name NAME --overwrite`"
                       if "classify" in self.loaded.signatures else "")
            raise ValueError(f"SavedModel {version_dir} lacks the {', '.join(sorted(missing))} "
                             f"signature(s) of an `l2m export`{renamed}")
        self.description = f"SavedModel {version_dir}"
        self.img_size = config.img_size
        self.domain_names = list(config.names)
        self.has_fan = "landmarks" in self.loaded.signatures
        self.landmarks_mean = load_landmarks_mean(version_dir / "assets.extra")
        self.training_data = saved_training_data(version_dir)

    def edit(self, images, source, target, alpha) -> np.ndarray:
        return self._run("serving_default", "images", images=images, source_domain=source,
                         target_domain=target, alpha=alpha)

    def guess_domain(self, images) -> np.ndarray:
        return self._run("guess_domain", "source_domain", images=images)

    def edit_like(self, images, references, source, reference_domain, alpha) -> np.ndarray:
        if "edit_like" not in self.loaded.signatures:
            raise ValueError(f"{self.description} has no edit_like signature (exported before "
                             "reference-guided edits); re-export it with `l2m export`")
        return self._run("edit_like", "images", images=images, reference=references,
                         source_domain=source, reference_domain=reference_domain, alpha=alpha)

    def landmarks(self, images) -> np.ndarray:
        if not self.has_fan:
            return super().landmarks(images)
        return self._run("landmarks", "landmarks", images=images)

    def _run(self, signature: str, output: str, **inputs) -> np.ndarray:
        """One output of a signature, its inputs given as NumPy in the dtypes export declares."""
        import tensorflow as tf

        tensors = {name: tf.constant(value) for name, value in signature_inputs(**inputs).items()}
        return self.loaded.signatures[signature](**tensors)[output].numpy()


def saved_training_data(version_dir: Path) -> str | None:
    """The "data" of an export's assets.extra/training.json ("synthetic"), or None. Only a
    note for the user depends on it, so an unreadable file counts as none."""
    try:
        data = json.loads((Path(version_dir) / "assets.extra" / TRAINING_FILE).read_text())
    except (OSError, ValueError):
        return None
    value = data.get("data") if isinstance(data, dict) else None
    return value if isinstance(value, str) else None


def run_training_data(bundle_dir: Path) -> str | None:
    """"synthetic" when a bundle's run trained on the synthetic faces (RUN_DIR/
    training_options.json), else None: other data is a user's folder, whose path an export
    should not carry. Only a note depends on it: an unreadable file counts as none."""
    try:
        options = json.loads((Path(bundle_dir).parent / "training_options.json").read_text())
    except (OSError, ValueError):
        return None
    options = options.get("options") if isinstance(options, dict) else None
    value = options.get("data") if isinstance(options, dict) else None
    return SYNTHETIC if value in SYNTHETIC_SOURCES else None


def _check_nothing_runs_on_load(version_dir: Path) -> None:
    """tf.saved_model.load runs some of a model's own functions: the creators and initializers
    of its resources (lookup tables, custom TrackableResources), custom restore functions, and
    a TF1 model's init ops. An `l2m export` has none of these, so a model with any is refused
    before TensorFlow loads it."""
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    try:
        proto.ParseFromString((version_dir / "saved_model.pb").read_bytes())
    except DecodeError:
        raise ValueError(f"{version_dir / 'saved_model.pb'} is corrupt") from None
    refuse = (f"SavedModel {version_dir} is not an `l2m export`: loading it would run its "
              "own code")
    if len(proto.meta_graphs) != 1 or not proto.meta_graphs[0].object_graph_def.nodes:
        raise ValueError(f"{refuse} (a TF1 model's init ops)")
    graph = proto.meta_graphs[0]
    for node in graph.object_graph_def.nodes:
        if node.WhichOneof("kind") == "resource" or node.saveable_objects \
                or node.registered_saver:
            raise ValueError(f"{refuse} (resource initializers or restore functions)")
    init_ops = [graph.signature_def[key].outputs[key].name.split(":")[0]
                for key in ["__saved_model_init_op"] if key in graph.signature_def]
    init_ops += list(graph.collection_def["saved_model_main_op"].node_list.value
                     if "saved_model_main_op" in graph.collection_def else [])
    nodes = {node.name: node for node in graph.graph_def.node}
    for name in init_ops:
        node = nodes.get(name.lstrip("^"))
        if node is None or node.op != "NoOp" or node.input:
            raise ValueError(f"{refuse} (an init op)")


class ServerEditor(_Editor):
    """A model served by tensorflow_model_server or `l2m serve`: over gRPC (HOST:PORT) or the
    REST API (http://HOST:PORT).

    Connecting waits at most `timeout_s` (a server that does not answer is one line naming
    it, not minutes of retries); edit requests may then take up to max(timeout_s, 120) s."""

    def __init__(self, address: str, model_name: str, timeout_s: float = 5.0):
        import grpc

        if ":" not in address:
            raise ValueError(f"--server must be HOST:PORT or http://HOST:PORT, got {address!r}")
        self.address = address
        self.name = model_name
        self.description = f"model {model_name!r} served at {address}"
        if address.startswith(("http://", "https://")):
            from keras_l2mgan.serving.client import RestClient

            self.client = RestClient(address, timeout_s=timeout_s)
            self._describe(timeout_s)
            return
        # Before the client (which loads TensorFlow, seconds): a server that does not answer
        # is known within timeout_s of the start, not after gRPC's retries.
        probe = grpc.insecure_channel(address)
        try:
            grpc.channel_ready_future(probe).result(timeout=timeout_s)
        except grpc.FutureTimeoutError:
            raise ServerUnavailableError(
                f"server {address} did not answer within {timeout_s:g} s (is `l2m serve` or "
                "tensorflow_model_server running there?); a slow network or server needs a "
                "larger --timeout") from None
        finally:
            probe.close()
        from keras_l2mgan.serving.client import ServingClient

        self.client = ServingClient(address, timeout_s=timeout_s)
        self._describe(timeout_s)

    def _describe(self, timeout_s: float) -> None:
        # The metadata signature as ServingClient.model_info reads it, plus the outputs an
        # export adds when it knows them: the landmarks mean and the training data.
        metadata = self._call(lambda name: self.client.predict(name, {}, signature="metadata"))
        self.has_fan = "landmarks" in self._call(self.client.signature_defs)
        self.client.timeout_s = max(timeout_s, 120.0)
        self.img_size = int(json.loads(metadata["config_json"].item())["img_size"])
        self.domain_names = [name.decode() for name in metadata["domain_names"]]
        if self.has_fan and "landmarks_mean" in metadata:
            self.landmarks_mean = np.asarray(metadata["landmarks_mean"], np.float32)
        if "training_data" in metadata:
            self.training_data = metadata["training_data"].item().decode()

    def edit(self, images, source, target, alpha) -> np.ndarray:
        return self._call(self.client.edit, images, source, target, alpha)

    def guess_domain(self, images) -> np.ndarray:
        return self._call(self.client.guess_domain, images)

    def edit_like(self, images, references, source, reference_domain, alpha) -> np.ndarray:
        return self._call(self.client.edit_like, images, references, source, reference_domain,
                          alpha)

    def landmarks(self, images) -> np.ndarray:
        if not self.has_fan:
            return super().landmarks(images)

        def call(name, images):
            return self.client.predict(name, signature_inputs(images=images),
                                       signature="landmarks")["landmarks"]
        return self._call(call, images)

    def _call(self, method, *args):
        """A refused or failed call becomes one line naming the server and its answer."""
        import grpc

        from keras_l2mgan.serving.client import RestError

        try:
            return method(self.name, *args)
        except grpc.RpcError as error:
            raise _rpc_error(self.address, self.name, error) from None
        except RestError as error:
            message = f"server {self.address}, model {self.name!r}: HTTP {error.status}: " \
                      f"{error.message}"
            if error.status >= 500 or error.status == 429:
                raise ServerUnavailableError(message) from None
            raise ValueError(message) from None
        except OSError as error:  # REST: refused, reset or timed out
            raise ServerUnavailableError(
                f"server {self.address} did not answer ({error.strerror or error}); is `l2m "
                "serve` or tensorflow_model_server running there with its REST port?") from None


# The server could not do the work (exit 1); any other answer refuses the request (exit 2).
_UNAVAILABLE = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN",
                "ABORTED", "CANCELLED")


def _rpc_error(address: str, name: str, error) -> Exception:
    """A failed RPC as one line naming the server, the model and the server's answer."""
    code = error.code().name
    hint = " (lower --batch-size)" if "images per request" in (error.details() or "") else ""
    message = f"server {address}, model {name!r}: {code}: {error.details()}{hint}"
    return ServerUnavailableError(message) if code in _UNAVAILABLE else ValueError(message)


def open_editor(model: str | None, server: str | None = None,
                request: list[str] | None = None, timeout_s: float = 5.0):
    """--model / --server -> an editor. --model is a served model's name with --server; else a
    saved_models/NAME dir (latest version), a version dir, a run dir or a bundle dir; without
    it, the shipped demo model that fits the --to request (see `default_model`)."""
    if server:
        if not model:
            raise ValueError("with --server, pass --model NAME (the model name the server serves)")
        return ServerEditor(server, model, timeout_s)
    path = Path(model) if model else default_model(request)
    if not path.exists():
        raise FileNotFoundError(f"model {path} does not exist; pass --model saved_models/NAME, "
                                "a run dir or a bundle dir")
    if (path / "saved_model.pb").is_file():
        return SavedModelEditor(path)
    versions = version_dirs(path)
    if versions:
        return SavedModelEditor(versions[max(versions)])
    return KerasEditor(find_bundle_dir(path))


def models_dir() -> Path:
    """The demo models shipped with the package (see `keras_l2mgan.shipped`). Never the
    current folder's: a model is a program, and running whatever sits in the folder a command
    happens to start in is how a planted one gets run."""
    from keras_l2mgan.shipped import shipped_dir

    return shipped_dir("models")


def default_like_model(base: Path | None = None) -> Path:
    """The model for `l2m edit --like` without --model: the only one under `base` (default
    `models_dir()`), or the one with the most domains, whose style codes carry the most
    attributes a reference can pass on (of the shipped ones, smiling_male)."""
    base = models_dir() if base is None else Path(base)
    names = sorted(p.name for p in base.iterdir()
                   if p.is_dir() and version_dirs(p)) if base.is_dir() else []
    if not names:
        raise FileNotFoundError(f"no --model given and no exported model in {base}; pass "
                                "--model saved_models/NAME, a run dir or a bundle dir")
    sizes = [(len(_saved_domain_names(base / name) or []), name) for name in names]
    return base / max(sizes)[1]


def _saved_domain_names(model_dir: Path) -> list[str] | None:
    """Domain names of the latest version, from the config export writes into assets.extra."""
    versions = version_dirs(model_dir)
    path = versions[max(versions)] / "assets.extra" / CONFIG_FILE
    if not path.is_file():
        return None
    from keras_l2mgan.config import L2MConfig

    return list(L2MConfig.load(path).names)


def _fits(domain_names: list[str], request: list[str]) -> bool:
    """Whether `target_domain` can serve the request on a model with these domains."""
    if "+".join(request) in domain_names:
        return True
    table = attribute_table(domain_names)
    return table is not None and all(set(_attributes(item)) <= set(table[0]) for item in request)


def default_model(request: list[str] | None = None, base: Path | None = None) -> Path:
    """The model to use without --model: the only one under `base` (default `models_dir()`),
    or else the one with the fewest domains that has every attribute of the --to request (so
    `--to smiling` takes the smiling model, `--to smiling,male` the smiling+male one)."""
    base = models_dir() if base is None else Path(base)
    names = sorted(p.name for p in base.iterdir()
                   if p.is_dir() and version_dirs(p)) if base.is_dir() else []
    if len(names) == 1:
        return base / names[0]
    if not names:
        raise FileNotFoundError(f"no --model given and no exported model in {base}; pass "
                                "--model saved_models/NAME, a run dir or a bundle dir")
    fitting = []
    for name in names:
        domains = _saved_domain_names(base / name)
        if request and domains is not None and _fits(domains, request):
            fitting.append((len(domains), name))
    if fitting:
        return base / min(fitting)[1]
    raise ValueError(f"several models under {base} ({', '.join(names)}) and none has every "
                     f"attribute of --to {','.join(request or [])}; pick one with "
                     "--model saved_models/NAME")


# Attribute requests -> domains. Domain names like "smiling" / "not_smiling" (one attribute) or
# "smiling+male" / "not_smiling+male" (combinations) are read as attribute values.

def _attributes(domain: str) -> dict[str, bool]:
    values = {}
    for token in domain.split("+"):
        negative = token.startswith("not_")
        values[token[4:] if negative else token] = not negative
    return values


def attribute_table(domain_names: list[str]) -> list[dict[str, bool]] | None:
    """Each domain's attribute values, or None when the names are not attribute combinations
    (e.g. cat/dog/wild, where --to must be a domain name)."""
    table = [_attributes(name) for name in domain_names]
    keys = set(table[0])
    if any(set(row) != keys for row in table) or len({tuple(sorted(r.items())) for r in table}) \
            != len(table):
        return None
    return table


def domain_index(domain_names: list[str], name: str, argument: str = "--from") -> int:
    """A domain given by name or index."""
    if name in domain_names:
        return domain_names.index(name)
    if name.isascii() and name.isdigit() and int(name) < len(domain_names):
        return int(name)
    raise ValueError(f"unknown domain {name!r} for {argument}; valid domains: "
                     f"{', '.join(domain_names)}")


def valid_targets(domain_names: list[str]) -> list[str]:
    table = attribute_table(domain_names)
    if table is None:
        return list(domain_names)
    keys = sorted(table[0])
    return [value for key in keys for value in (key, f"not_{key}")]


def target_domain(domain_names: list[str], source: int, request: list[str]) -> int:
    """The domain of `source` with the requested attributes changed (other attributes kept)."""
    joined = "+".join(request)
    if joined in domain_names:
        return domain_names.index(joined)
    table = attribute_table(domain_names)
    valid = valid_targets(domain_names)
    if table is None:
        raise ValueError(f"unknown target {joined!r}; valid targets: {', '.join(valid)}")
    wanted = dict(table[source])
    for item in request:
        key, value = next(iter(_attributes(item).items()))
        if key not in wanted:
            raise ValueError(f"unknown attribute {item!r}; valid attributes: {', '.join(valid)}")
        wanted[key] = value
    return table.index(wanted) if wanted in table else _missing(wanted, valid)


def _missing(wanted: dict[str, bool], valid: list[str]) -> int:
    raise ValueError(f"no domain has {json.dumps(wanted)}; valid attributes: {', '.join(valid)}")
