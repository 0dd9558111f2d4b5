"""InsightFace backend without a model pack: clear errors, never a download, and the
geometry that turns 2d106 points into eye-aspect-ratio points."""

from __future__ import annotations

import importlib
import importlib.util
import socket
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from streams.errors import ConfigurationError, InputError
from workers.face.backends import create_backend
from workers.face.insightface_backend import (
    EYE_CONTOURS_106,
    PUPILS_106,
    detection_from_outputs,
    ear_points_from_contour,
    eye_aspect_ratio,
    locate_pack,
)
from workers.settings import PerceptionSettings


def _settings(root: Path, pack: str = "buffalo_l") -> PerceptionSettings:
    return PerceptionSettings(insightface_root=root, insightface_pack=pack)


def _pack(root: Path, *files: str) -> Path:
    directory = root / "models" / "buffalo_l"
    directory.mkdir(parents=True)
    for name in files:
        (directory / name).write_bytes(b"not an onnx model")
    return directory


# --- pack checks --------------------------------------------------------------------------------


def test_missing_pack_names_the_path_files_and_settings(tmp_path):
    with pytest.raises(ConfigurationError) as err:
        create_backend("insightface", settings=_settings(tmp_path))
    message = str(err.value)
    assert str(tmp_path / "models" / "buffalo_l") in message
    assert "det_10g.onnx" in message and "2d106det.onnx" in message
    assert "VIGIL_PERCEPTION__INSIGHTFACE_ROOT" in message
    assert "VIGIL_PERCEPTION__INSIGHTFACE_PACK" in message
    assert not (tmp_path / "models").exists()  # nothing created, nothing fetched


def test_pack_without_2d106_is_refused(tmp_path):
    directory = _pack(tmp_path, "det_10g.onnx", "w600k_r50.onnx")
    with pytest.raises(ConfigurationError, match=r"lacks 2d106det\.onnx") as err:
        create_backend("insightface", settings=_settings(tmp_path))
    assert str(directory) in str(err.value)
    assert sorted(p.name for p in directory.iterdir()) == ["det_10g.onnx", "w600k_r50.onnx"]


def test_pack_without_detector_is_refused(tmp_path):
    _pack(tmp_path, "2d106det.onnx")
    with pytest.raises(ConfigurationError, match="lacks SCRFD detector"):
        create_backend("insightface", settings=_settings(tmp_path))


def test_locate_pack_finds_the_files(tmp_path):
    directory = _pack(tmp_path, "scrfd_10g_bnkps.onnx", "2d106det.onnx", "glintr100.onnx")
    files = locate_pack(tmp_path, "buffalo_l")
    assert files.directory == directory
    assert files.detector.name == "scrfd_10g_bnkps.onnx"
    assert files.landmarks_106.name == "2d106det.onnx"


def test_unimportable_insightface_is_a_configuration_error(tmp_path, monkeypatch):
    _pack(tmp_path, "det_10g.onnx", "2d106det.onnx")
    monkeypatch.setitem(sys.modules, "insightface", None)
    with pytest.raises(ConfigurationError, match="cannot import insightface"):
        create_backend("insightface", settings=_settings(tmp_path))


@pytest.fixture
def no_downloads(monkeypatch):
    """Import insightface with every download entry point replaced by a recorder that
    raises, and sockets unable to connect. insightface imports requests/tqdm at module level
    even though we never download; where they are absent, inert stand-ins are used (calling
    anything from them raises), and the insightface modules are dropped afterwards."""
    before = set(sys.modules)
    for name in ("requests", "tqdm"):
        if importlib.util.find_spec(name) is None:
            stub = types.ModuleType(name)

            def refuse(attr: str, name: str = name) -> object:
                if attr.startswith("__"):
                    raise AttributeError(attr)

                def use(*args: object, **kwargs: object) -> None:
                    raise AssertionError(f"{name}.{attr} used")

                return use

            stub.__getattr__ = refuse  # type: ignore[method-assign]
            monkeypatch.setitem(sys.modules, name, stub)
    calls: list[str] = []

    def recorder(label: str):
        def fail(*args: object, **kwargs: object) -> None:
            calls.append(label)
            raise AssertionError(f"{label} called")

        return fail

    storage = importlib.import_module("insightface.utils.storage")
    for name in ("download", "ensure_available", "download_onnx", "download_file"):
        monkeypatch.setattr(storage, name, recorder(f"storage.{name}"))
    utils = importlib.import_module("insightface.utils")
    for name in ("download", "ensure_available", "download_onnx"):
        monkeypatch.setattr(utils, name, recorder(f"utils.{name}"))
    monkeypatch.setattr(
        importlib.import_module("insightface.utils.download"),
        "download_file",
        recorder("download.download_file"),
    )
    monkeypatch.setattr(
        importlib.import_module("insightface.model_zoo.model_zoo"),
        "download_onnx",
        recorder("model_zoo.download_onnx"),
    )
    monkeypatch.setattr(
        importlib.import_module("insightface.app.face_analysis"),
        "ensure_available",
        recorder("face_analysis.ensure_available"),
    )
    monkeypatch.setattr(socket.socket, "connect", recorder("socket.connect"))
    yield calls
    monkeypatch.undo()
    for name in set(sys.modules) - before:
        if name.split(".")[0] in ("insightface", "requests", "tqdm"):
            del sys.modules[name]


def test_no_download_is_ever_attempted(tmp_path, no_downloads):
    with pytest.raises(ConfigurationError, match="not found"):
        create_backend("insightface", settings=_settings(tmp_path))
    pack = _pack(tmp_path, "det_10g.onnx")
    with pytest.raises(ConfigurationError, match=r"lacks 2d106det\.onnx"):
        create_backend("insightface", settings=_settings(tmp_path))
    # Both files present but not loadable: a load error, still no download.
    (pack / "2d106det.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(ConfigurationError, match="could not load"):
        create_backend("insightface", settings=_settings(tmp_path))
    assert no_downloads == []


# --- eye contour geometry -----------------------------------------------------------------------


def _ellipse(centre=(100.0, 50.0), a=30.0, b=10.0, n=16, angle_deg=0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([a * np.cos(t), b * np.sin(t)], axis=1)
    angle = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return pts @ rot.T + np.asarray(centre)


def test_ear_points_open_and_closed_eye():
    open_eye = eye_aspect_ratio(ear_points_from_contour(_ellipse(b=10.0)))
    closed_eye = eye_aspect_ratio(ear_points_from_contour(_ellipse(b=1.0)))
    # Points at 1/3 and 2/3 of the axis of an a × b ellipse: EAR = sqrt(8)/3 · b/a.
    assert open_eye == pytest.approx(np.sqrt(8) / 3 * 10 / 30, rel=0.05)
    assert open_eye > 0.25
    assert closed_eye < 0.05
    shut = eye_aspect_ratio(ear_points_from_contour(np.array([[0, 0], [10, 0], [20, 0], [30, 0]])))
    assert shut == 0.0


def test_ear_points_layout_is_p1_to_p6():
    p = ear_points_from_contour(_ellipse())
    np.testing.assert_allclose(p[0], [70, 50])  # p1: the image-left corner
    np.testing.assert_allclose(p[3], [130, 50])  # p4: the other corner
    assert (p[[1, 2], 1] < 50).all()  # p2, p3 upper lid (image y grows downwards)
    assert (p[[4, 5], 1] > 50).all()  # p5, p6 lower lid
    assert p[1, 0] < p[2, 0] and p[5, 0] < p[4, 0]  # p2, p6 nearer p1; p3, p5 nearer p4


def test_ear_points_ignore_point_order():
    contour = _ellipse(n=12)
    reference = ear_points_from_contour(contour)
    rng = np.random.default_rng(0)
    for _ in range(5):
        np.testing.assert_array_equal(ear_points_from_contour(rng.permutation(contour)), reference)


@pytest.mark.parametrize("angle", [-25.0, 15.0])
def test_ear_points_follow_head_roll(angle):
    rolled = eye_aspect_ratio(ear_points_from_contour(_ellipse(angle_deg=angle)))
    assert rolled == pytest.approx(eye_aspect_ratio(ear_points_from_contour(_ellipse())))


def test_ear_points_reject_bad_contours():
    with pytest.raises(InputError):
        ear_points_from_contour(np.zeros((3, 2)))
    with pytest.raises(InputError):
        ear_points_from_contour(np.full((8, 2), np.nan))
    with pytest.raises(InputError):
        ear_points_from_contour(np.ones((8, 2)))


# --- output mapping -----------------------------------------------------------------------------


def _landmarks_106(right_open: float = 10.0) -> np.ndarray:
    """106 points with two synthetic eyes: group 87–96 on the image's left (so the mapping
    must order eyes by position, not by group), group 33–42 on the right, eyes 30 px wide."""
    lmk = np.tile(np.array([[200.0, 250.0]]), (106, 1))
    lmk[86] = (200, 230)  # nose tip
    lmk[52], lmk[61] = (230, 280), (170, 282)  # mouth corners, image-right one first
    for group, pupil, centre, b in (
        (EYE_CONTOURS_106[1], PUPILS_106[1], (160.0, 180.0), 10.0),
        (EYE_CONTOURS_106[0], PUPILS_106[0], (240.0, 182.0), right_open),
    ):
        lmk[list(group)] = _ellipse(centre=centre, a=15.0, b=b, n=len(group))
        lmk[pupil] = centre
    return lmk


def test_detection_from_outputs_maps_to_image_order():
    lmk = _landmarks_106(right_open=1.0)
    kps = np.array([[240, 182], [160, 180], [200, 230], [230, 280], [170, 282]], dtype=np.float32)
    face = detection_from_outputs(np.array([120, 130, 280, 320]), 0.9, kps, lmk)
    assert face.score == pytest.approx(0.9)
    np.testing.assert_allclose(face.eye_centres, [[160, 180], [240, 182]])
    np.testing.assert_allclose(face.landmarks5[3:], [[170, 282], [230, 280]])
    assert face.ear_points is not None and face.ear_points.shape == (2, 6, 2)
    assert face.ear_points[0, :, 0].mean() < face.ear_points[1, :, 0].mean()
    # The image-left eye is open, the image-right one shut.
    assert eye_aspect_ratio(face.ear_points[0]) > 0.25
    assert eye_aspect_ratio(face.ear_points[1]) < 0.1
    assert face.dense_landmarks is not None and face.dense_landmarks.shape == (106, 3)
    np.testing.assert_allclose(face.dense_landmarks[:, :2], lmk, atol=1e-4)
    assert not face.dense_landmarks[:, 2].any()
    assert face.blendshapes is None and face.pose_matrix is None


def test_detection_from_outputs_without_keypoints_uses_the_106_points():
    lmk = _landmarks_106()
    face = detection_from_outputs(np.array([120, 130, 280, 320]), 0.8, None, lmk)
    np.testing.assert_allclose(
        face.landmarks5, [[160, 180], [240, 182], [200, 230], [170, 282], [230, 280]]
    )


# --- end to end on stand-in models ---------------------------------------------------------------


def _constant_model(path: Path, input_shape: list[int], outputs: dict[str, np.ndarray]) -> None:
    """An ONNX file with the given input signature whose outputs are constants."""
    from onnx import TensorProto, helper, numpy_helper, save

    nodes, values = [], []
    for name, array in outputs.items():
        tensor = numpy_helper.from_array(array.astype(np.float32), f"{name}_value")
        nodes.append(helper.make_node("Constant", [], [name], value=tensor))
        values.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(array.shape)))
    graph = helper.make_graph(
        nodes,
        path.stem,
        [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, input_shape)],
        values,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save(model, str(path))


def _stand_in_pack(root: Path) -> Path:
    """det_10g.onnx / 2d106det.onnx with the real signatures (SCRFD: 3 strides × scores,
    boxes, keypoints; 2d106: 212 values in [-1, 1] of its 192 × 192 crop) and fixed answers:
    one face at (240, 220)–(400, 440) in a 640 × 640 frame."""
    directory = root / "models" / "buffalo_l"
    directory.mkdir(parents=True)
    outputs: dict[str, np.ndarray] = {}
    for k, stride in enumerate((8, 16, 32)):
        n = (640 // stride) ** 2 * 2
        scores, boxes, kps = np.zeros((n, 1)), np.ones((n, 4)), np.zeros((n, 10))
        if stride == 32:
            anchor = (10 * 20 + 10) * 2  # grid cell (10, 10): anchor centre (320, 320)
            scores[anchor] = 0.95
            boxes[anchor] = np.array([80, 100, 80, 120]) / stride  # left, top, right, bottom
            five = np.array([[35, -30], [-35, -30], [0, 10], [30, 50], [-30, 50]])  # mirrored
            kps[anchor] = five.ravel() / stride
        outputs[f"score{k}"], outputs[f"box{k}"], outputs[f"kps{k}"] = scores, boxes, kps
    ordered = {
        name: outputs[name] for kind in ("score", "box", "kps") for name in outputs if kind in name
    }
    _constant_model(directory / "det_10g.onnx", [1, 3, 640, 640], ordered)
    lmk = np.zeros((106, 2))
    t = np.linspace(0, 2 * np.pi, 9, endpoint=False)
    for group, pupil, x, half_height in (
        (EYE_CONTOURS_106[0], PUPILS_106[0], 0.2, 0.03),  # image-right eye, open
        (EYE_CONTOURS_106[1], PUPILS_106[1], -0.2, 0.004),  # image-left eye, shut
    ):
        lmk[list(group)] = np.stack([x + 0.08 * np.cos(t), -0.15 + half_height * np.sin(t)], 1)
        lmk[pupil] = (x, -0.15)
    _constant_model(directory / "2d106det.onnx", [1, 3, 192, 192], {"fc1": lmk.reshape(1, 212)})
    return directory


def test_backend_runs_insightface_models_from_the_pack(tmp_path, no_downloads):
    _stand_in_pack(tmp_path)
    backend = create_backend("insightface", settings=_settings(tmp_path))
    try:
        faces = backend.detect(np.full((640, 640, 3), 128, dtype=np.uint8), 0)
    finally:
        backend.close()
    assert no_downloads == []
    assert len(faces) == 1
    face = faces[0]
    np.testing.assert_allclose(face.box, [240, 220, 400, 440], atol=0.5)
    assert face.score == pytest.approx(0.95, abs=1e-3)
    np.testing.assert_allclose(
        face.landmarks5,
        [[285, 290], [355, 290], [320, 330], [290, 370], [350, 370]],
        atol=0.5,
    )
    np.testing.assert_allclose(face.eye_centres, face.landmarks5[:2])
    assert face.dense_landmarks is not None and face.dense_landmarks.shape == (106, 3)
    assert face.ear_points is not None
    # 2d106 points come back in frame pixels around the eyes, in image order.
    assert np.all(np.abs(face.ear_points[:, :, 1] - 290) < 30)
    assert face.ear_points[0, :, 0].max() < 320 < face.ear_points[1, :, 0].min()
    assert eye_aspect_ratio(face.ear_points[0]) < 0.1 < 0.25 < eye_aspect_ratio(face.ear_points[1])
