"""The attribute classifier and `l2m eval` end to end on a tiny untrained bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO_ROOT, invoke_l2m, one_error_line, run_python
from PIL import Image

ATTRS = ["Smiling", "Male"]


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory):
    from keras_l2mgan.metrics.classifier import train_classifier

    directory = tmp_path_factory.mktemp("classifier") / "clf"
    model = train_classifier(ATTRS, img_size=32, steps=400, batch_size=32, num_train=1024,
                             num_test=256, log=lambda *_: None)
    model.save(directory)
    return directory


@pytest.mark.backend_independent
def test_classifier_learns_the_attributes_and_reloads(classifier_dir):
    from keras_l2mgan.metrics import synthetic
    from keras_l2mgan.metrics.classifier import AttributeClassifier
    from keras_l2mgan.metrics.features import ClassifierFeatures

    loaded = AttributeClassifier.load(classifier_dir)
    assert loaded.attrs == ATTRS and loaded.img_size == 32
    assert loaded.info["min_test_accuracy"] >= 0.9, loaded.info["test_accuracy"]
    params = synthetic.split_params("test", 64)
    images = synthetic.render(params, 32)
    reloaded = loaded.accuracy(images, synthetic.attribute_values(params, ATTRS))
    assert min(reloaded.values()) >= 0.85
    assert loaded.features(images[:4]).shape == (4, 128)
    scaled = ClassifierFeatures(loaded)(images)  # unit RMS on real faces, for FID/KID
    assert np.sqrt(np.mean(scaled**2)) == pytest.approx(1.0, rel=0.2)
    # Larger images are resized to the classifier's size.
    assert loaded.probabilities(synthetic.render(params[:2], 64)).shape == (2, 2)


def test_classifier_builds_and_reloads_on_every_backend(backend, tmp_path):
    code = f"""
import numpy as np
from keras_l2mgan.metrics.classifier import AttributeClassifier, build_classifier
clf = AttributeClassifier(build_classifier(32, 2), ["Smiling", "Male"], 32)
x = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype(np.uint8)
clf.save({str(tmp_path / 'c')!r})
again = AttributeClassifier.load({str(tmp_path / 'c')!r})
np.testing.assert_allclose(again.probabilities(x), clf.probabilities(x), atol=1e-5)
assert again.features(x).shape == (3, 128)
print("ok")
"""
    result = run_python(code, backend)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr[-2000:]


@pytest.mark.backend_independent
@pytest.mark.slow  # two evaluations of 12 faces, each with an alpha sweep or FID
def test_eval_end_to_end_writes_json_markdown_and_grid(classifier_dir, tmp_path):
    from cli.main import main
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.metrics.registry import list_valid_metrics
    from keras_l2mgan.model import L2MGAN

    bundle = tmp_path / "bundle"
    save_bundle(L2MGAN.from_preset("tiny_32", domain_names=("not_smiling", "smiling")), bundle)
    out = tmp_path / "eval"
    result = CliRunner().invoke(main, [
        "eval", str(bundle), "--classifier", str(classifier_dir), "--num-test", "12",
        "--alpha-images", "2", "--batch-size", "8", "-o", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "eval.json").read_text())
    assert [t["task"] for t in results["tasks"]] == ["not_smiling → smiling",
                                                       "smiling → not_smiling"]
    task = results["tasks"][0]
    assert task["n"] == 6 and task["flipped_attributes"] == ["Smiling"]
    assert 0.0 <= task["accuracy"] <= 1.0 and 0.0 < task["psnr_gt"] < 100.0
    assert task["identity_psnr_gt"] > task["psnr_gt"]  # an untrained G is worse than no edit
    assert len(task["alpha_response"]["probability"]) == 6
    assert results["fid_label"] == "FID (classifier features)"
    markdown = (out / "eval.md").read_text()
    assert "| **mean** |" in markdown and "FID (classifier features)" in markdown
    # stdout is the report alone (`l2m eval ... > report.md`); progress went to stderr.
    assert result.stdout.strip() == markdown.strip()
    assert f"classifier: {classifier_dir}" in result.stderr
    grid = Image.open(out / "eval_grid.png")
    assert grid.size[0] > 8 * 32 and grid.size[1] >= 4 * 32  # 2 tasks x 2 rows, 8 columns
    assert np.asarray(grid).std() > 0
    # Beside the report, one JSONL line per registered metric, holding the same values.
    lines = _jsonl(out, "accuracy")
    assert len(lines) == 1 and lines[0]["model"] == str(bundle)
    assert lines[0]["results"]["mean"]["accuracy"] == results["mean"]["accuracy"]
    assert lines[0]["results"]["tasks"][0] == {"task": task["task"], **{
        k: task[k] for k in ("accuracy", "flipped_accuracy", "kept_accuracy")}}
    assert sorted(p.name for p in out.glob("metric-*.jsonl")) == sorted(
        f"metric-{name}.jsonl" for name in list_valid_metrics("synthetic"))

    # --metrics: only those, appended (an earlier eval's directory is reused); the report stays.
    report_before = (out / "eval.json").read_bytes()
    result = CliRunner().invoke(main, [
        "eval", str(bundle), "--classifier", str(classifier_dir), "--num-test", "12",
        "--batch-size", "8", "--metrics", "fid_kid,ground_truth", "-o", str(out)])
    assert result.exit_code == 0, result.output
    printed = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["metric"] for r in printed] == ["fid_kid", "ground_truth"]
    assert len(_jsonl(out, "fid_kid")) == 2 and len(_jsonl(out, "accuracy")) == 1
    assert _jsonl(out, "ground_truth")[-1] == printed[1]
    # Same faces, same model: the same values as the full report's.
    assert printed[1]["results"] == _jsonl(out, "ground_truth")[0]["results"]
    assert (out / "eval.json").read_bytes() == report_before


def _jsonl(out, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"metric-{name}.jsonl").read_text().splitlines()]


@pytest.mark.backend_independent  # fails before any model is opened
def test_eval_metrics_are_checked_against_the_registry(tmp_path):
    from keras_l2mgan.metrics.registry import list_valid_metrics

    (tmp_path / "model").mkdir()
    valid = ", ".join(list_valid_metrics())
    for metrics, expected in [
            ("accuracy,psnr", f"Error: --metrics: unknown metric 'psnr'; valid metrics: {valid}"),
            (",", f"Error: --metrics: no metric given; valid metrics: {valid}")]:
        result = invoke_l2m("eval", tmp_path / "model", "--metrics", metrics,
                            "-o", tmp_path / "out")
        assert result.exit_code == 2 and one_error_line(result) == expected
    result = invoke_l2m("eval", tmp_path / "model", "--data", "celeba",
                        "--metrics", "accuracy", "-o", tmp_path / "out")
    assert result.exit_code == 2
    assert one_error_line(result) == ("Error: --metrics accuracy is not measured by the "
                                      "stargan_v2 protocol; it measures fid_kid")
    assert not (tmp_path / "out").exists()


@pytest.mark.backend_independent
def test_eval_without_classifier_is_a_one_line_error(tmp_path, monkeypatch):
    from cli.main import main
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.model import L2MGAN

    save_bundle(L2MGAN.from_preset("tiny_32"), tmp_path / "bundle")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["eval", "bundle"])
    assert result.exit_code == 2
    assert "l2m classifier train --img-size 32" in result.output


@pytest.mark.backend_independent
def test_eval_refuses_a_classifier_of_another_image_size(classifier_dir, tmp_path):
    from cli.main import main
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.config import get_preset
    from keras_l2mgan.model import L2MGAN

    save_bundle(L2MGAN(get_preset("tiny_32", img_size=64)), tmp_path / "bundle")
    result = CliRunner().invoke(main, ["eval", str(tmp_path / "bundle"), "--classifier",
                                       str(classifier_dir), "-o", str(tmp_path / "eval")])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [f"Error: --classifier {classifier_dir} reads 32 px images but the model "
                      "edits 64 px ones; pass a classifier trained with `l2m classifier train "
                      "--img-size 64`"]
    assert not (tmp_path / "eval").exists()


class _OracleEditor:
    """Returns the rendered ground truth for alpha >= 0.5 and the input below: a perfect edit
    the synthetic protocol must score as such."""

    img_size = 64
    domain_names = ["not_smiling+not_male", "not_smiling+male", "smiling+not_male",
                    "smiling+male"]

    def __init__(self, num_test: int):
        from keras_l2mgan.metrics import synthetic

        params = synthetic.split_params("test", num_test)
        self.params = {synthetic.render(p[None], 64)[0].tobytes(): p for p in params}

    def edit(self, images, source, target, alpha):
        from keras_l2mgan.data.synthetic_faces import renderer

        out = []
        for x, s, t, a in zip(images, source, target, alpha, strict=True):
            p = self.params[np.asarray(x).tobytes()]
            if a >= 0.5:
                for i, attr in enumerate(["Smiling", "Male"]):
                    if (s >> (1 - i)) & 1 != (t >> (1 - i)) & 1:
                        p = renderer.flip(p, attr)
            out.append(renderer.render(p, 64))
        return np.stack(out)


@pytest.mark.backend_independent
@pytest.mark.slow  # 12 tasks of 64 px faces through the shipped classifier
def test_synthetic_protocol_scores_a_perfect_editor_as_perfect():
    from keras_l2mgan.metrics.classifier import AttributeClassifier
    from keras_l2mgan.metrics.evaluate import evaluate_synthetic
    from keras_l2mgan.metrics.features import ClassifierFeatures
    from keras_l2mgan.metrics.image import MAX_PSNR
    from keras_l2mgan.metrics.registry import list_valid_metrics

    classifier = AttributeClassifier.load(REPO_ROOT / "classifiers" / "synthetic_faces_64px")
    results, (rows, columns), by_metric = evaluate_synthetic(
        _OracleEditor(32), classifier, ClassifierFeatures(classifier), num_test=32,
        alpha_images=4, log=lambda *_: None)
    assert len(results["tasks"]) == 12 and len(rows) == 24 and len(columns) == 8
    assert list(by_metric) == list_valid_metrics("synthetic")
    assert by_metric["ground_truth"]["mean"]["psnr_gt"] == results["mean"]["psnr_gt"]
    for task in results["tasks"]:
        assert task["accuracy"] == 1.0 and task["psnr_gt"] == MAX_PSNR
        assert task["ssim_gt"] == pytest.approx(1.0)
        assert task["psnr_outside"] == MAX_PSNR  # nothing changed outside the mask
        assert task["identity_psnr_gt"] < 40  # the input itself is not the edit
        curve = task["alpha_response"]["probability"]
        assert task["alpha_response"]["monotonic"] and curve[0] < 0.5 < curve[-1]


@pytest.mark.backend_independent
def test_eval_on_a_domain_folder_follows_the_stargan_v2_protocol(classifier_dir, tmp_path):
    from cli.main import main
    from keras_l2mgan.bundle import save_bundle
    from keras_l2mgan.metrics import synthetic
    from keras_l2mgan.model import L2MGAN

    params = synthetic.split_params("test", 24)
    smiling = synthetic.attribute_values(params, ["Smiling"])[:, 0]
    for i, (face, value) in enumerate(zip(synthetic.render(params, 32), smiling, strict=True)):
        split = "val" if i < 8 else "train"
        folder = tmp_path / "faces" / split / ("smiling" if value else "not_smiling")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(face).save(folder / f"{i}.png")
    save_bundle(L2MGAN.from_preset("tiny_32", domain_names=("not_smiling", "smiling")),
                tmp_path / "bundle")
    out = tmp_path / "eval"
    result = CliRunner().invoke(main, [
        "eval", str(tmp_path / "bundle"), "--data", str(tmp_path / "faces"),
        "--classifier", str(classifier_dir), "--features", "classifier", "-o", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "eval.json").read_text())
    assert results["protocol"] == "stargan_v2" and len(results["tasks"]) == 2
    val, train = smiling[:8], smiling[8:]
    for task in results["tasks"]:  # every held-out source face; every real target face
        assert task["n"] == (val == task["source"]).sum()
        assert task["n_real"] == (train == task["target"]).sum()
    assert results["mean"]["fid"] > 0
    assert "StarGAN v2 protocol" in (out / "eval.md").read_text()
    fid_kid = _jsonl(out, "fid_kid")
    assert len(fid_kid) == 1 and fid_kid[0]["results"]["mean"] == results["mean"]
    assert fid_kid[0]["settings"]["protocol"] == "stargan_v2"
