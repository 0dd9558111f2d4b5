"""Model input crops on a real face photo (skimage's astronaut) found by MediaPipe."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from skimage import data

from streams.errors import ConfigurationError, InputError
from workers.face.backends import create_backend
from workers.face.crops import (
    ARCFACE_TEMPLATE_112,
    align_face,
    alignment_matrix,
    arcface_template,
    eye_regions,
)
from workers.face.engine import FaceDetection


@pytest.fixture(scope="module")
def astronaut() -> tuple[np.ndarray, FaceDetection]:
    img = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    backend = create_backend("mediapipe")
    try:
        faces = backend.detect(img, 0)
    finally:
        backend.close()
    assert len(faces) == 1
    return img, faces[0]


def _grey(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)


def test_eye_regions_shapes_follow_the_blink_paper(astronaut):
    img, face = astronaut
    regions = eye_regions(img, face)
    assert regions.face.shape == (256, 192, 3)  # 256 rows × 192 columns, as the authors' code
    assert regions.face.dtype == np.uint8
    assert regions.eyes.shape == (2, 100, 100, 3)
    assert regions.eye_centres.shape == (2, 2)
    assert regions.eye_origins.shape == (2, 2)
    # Image order: the first eye is on the crop's left.
    assert regions.eye_centres[0, 0] < regions.eye_centres[1, 0]


def test_eye_regions_are_centred_on_the_eyes(astronaut):
    img, face = astronaut
    regions = eye_regions(img, face)
    # The eye centres map into the crop through the returned matrix.
    mapped = face.eye_centres @ regions.matrix[:, :2].T + regions.matrix[:, 2]
    np.testing.assert_allclose(mapped, regions.eye_centres, atol=1e-6)
    for k in range(2):
        window_centre = regions.eye_origins[k] + 50
        assert np.linalg.norm(window_centre - regions.eye_centres[k]) < 3.0
        np.testing.assert_array_equal(
            regions.eyes[k],
            regions.face[
                regions.eye_origins[k, 1] : regions.eye_origins[k, 1] + 100,
                regions.eye_origins[k, 0] : regions.eye_origins[k, 0] + 100,
            ],
        )
        # Iris and lashes: the middle of each region is much darker than the region overall.
        grey = _grey(regions.eyes[k])
        assert grey[40:60, 40:60].mean() < 0.8 * grey.mean()


def test_eye_regions_face_crop_keeps_the_aspect_ratio(astronaut):
    img, face = astronaut
    regions = eye_regions(img, face)
    sx, sy = regions.matrix[0, 0], regions.matrix[1, 1]
    assert sx == pytest.approx(sy)
    assert regions.matrix[0, 1] == 0 and regions.matrix[1, 0] == 0


def test_eye_regions_on_a_face_cut_by_the_frame_edge(astronaut):
    img, face = astronaut
    cut = 215  # through the image-left eye (at x ≈ 203): the face's left third is gone
    frame = np.ascontiguousarray(img[:, cut:])
    shift = np.array([cut, 0], dtype=np.float32)
    moved = replace(
        face,
        box=face.box - np.array([cut, 0, cut, 0], dtype=np.float32),
        landmarks5=face.landmarks5 - shift,
        eye_centres=face.eye_centres - shift,
    )
    regions = eye_regions(frame, moved)
    assert regions.face.shape == (256, 192, 3)
    assert regions.eyes.shape == (2, 100, 100, 3)
    # Everything left of the frame edge is zero padding; the rest is the photo.
    edge = regions.matrix[0, 2]  # frame x = 0 in crop pixels
    assert edge > 30
    assert not regions.face[:, : int(edge) - 1].any()
    assert regions.face[:, int(edge) + 2 :].mean() > 40
    # Both windows stay inside the crop, the cut eye's window clamped to its left edge.
    assert regions.eye_origins[0, 0] == 0
    assert (regions.eye_origins >= 0).all()
    assert (regions.eye_origins[:, 0] <= 92).all() and (regions.eye_origins[:, 1] <= 156).all()
    # The visible eye is cut exactly as in the uncut photo.
    full = eye_regions(img, face)
    np.testing.assert_array_equal(regions.eyes[1], full.eyes[1])


def test_eye_regions_reject_unusable_boxes(astronaut):
    img, face = astronaut
    w = img.shape[1]
    for box in ([10, 10, 10, 50], [50, 50, 40, 80], [np.nan, 0, 10, 10]):
        with pytest.raises(InputError):
            eye_regions(img, replace(face, box=np.array(box, dtype=np.float32)))
    outside = np.array([w + 10, 10, w + 90, 110], dtype=np.float32)
    with pytest.raises(InputError):
        eye_regions(img, replace(face, box=outside))
    with pytest.raises(InputError):
        eye_regions(img, replace(face, eye_centres=np.full((2, 2), np.inf, dtype=np.float32)))
    with pytest.raises(InputError):
        eye_regions(img[..., 0], face)
    with pytest.raises(ConfigurationError):
        eye_regions(img, face, eye_size=300)


def test_eye_regions_do_not_depend_on_the_frame_resolution(astronaut):
    img, face = astronaut
    big = cv2.resize(img, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    scaled = replace(
        face,
        box=face.box * 4,
        eye_centres=face.eye_centres * 4,
        landmarks5=face.landmarks5 * 4,
    )
    small = eye_regions(img, face)
    large = eye_regions(big, scaled)
    np.testing.assert_allclose(large.eye_centres, small.eye_centres, atol=0.5)
    diff = np.abs(_grey(large.face) - _grey(small.face))
    assert diff.mean() < 12


def test_eye_regions_low_pass_before_shrinking():
    # 1-pixel checkerboard: shrunk 4× it must average to flat grey, not alias into a pattern.
    yy, xx = np.mgrid[:1024, :1024]
    board = np.repeat((((xx + yy) % 2) * 255).astype(np.uint8)[..., None], 3, axis=2)
    face = FaceDetection(
        box=np.array([128, 0, 896, 1024], dtype=np.float32),
        score=1.0,
        landmarks5=np.zeros((5, 2), dtype=np.float32),
        eye_centres=np.array([[400, 400], [620, 400]], dtype=np.float32),
    )
    regions = eye_regions(board, face)
    assert regions.matrix[0, 0] == pytest.approx(0.25)
    grey = _grey(regions.face)
    assert abs(grey.mean() - 127.5) < 5
    assert grey.std() < 10


def test_arcface_template_numbers():
    np.testing.assert_allclose(arcface_template(112), ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(arcface_template(224), ARCFACE_TEMPLATE_112 * 2)


def test_alignment_matrix_recovers_a_known_similarity():
    angle, scale, shift = np.deg2rad(17.0), 0.6, np.array([31.0, -12.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    template = arcface_template(224)
    # Landmarks that the inverse of (rot, shift) maps exactly onto the template.
    points = (template - shift) @ np.linalg.inv(rot).T
    matrix = alignment_matrix(points, 224)
    np.testing.assert_allclose(matrix[:, :2], rot, atol=1e-9)
    np.testing.assert_allclose(matrix[:, 2], shift, atol=1e-9)


def test_align_face_puts_the_eyes_on_the_template(astronaut):
    img, face = astronaut
    aligned = align_face(img, face.landmarks5, size=224)
    matrix = alignment_matrix(face.landmarks5, 224)
    assert aligned.shape == (224, 224, 3) and aligned.dtype == np.uint8
    assert matrix.shape == (2, 3)
    predicted = face.eye_centres @ matrix[:, :2].T + matrix[:, 2]
    # Look again in the aligned image itself: the irises are where the matrix sends them…
    backend = create_backend("mediapipe")
    try:
        found = backend.detect(aligned, 0)
    finally:
        backend.close()
    assert len(found) == 1
    assert np.linalg.norm(found[0].eye_centres - predicted, axis=1).max() < 3.0
    # …and that is on the template's eyes, up to how far this face's proportions differ.
    template_eyes = arcface_template(224)[:2]
    assert np.linalg.norm(found[0].eye_centres - template_eyes, axis=1).max() < 0.04 * 224


def test_align_face_112_and_bad_landmarks(astronaut):
    img, face = astronaut
    small = align_face(img, face.landmarks5, size=112)
    assert small.shape == (112, 112, 3)
    with pytest.raises(InputError):
        align_face(img, np.zeros((5, 2), dtype=np.float32) + 50)
    with pytest.raises(InputError):
        align_face(img, face.landmarks5[:4])
    with pytest.raises(InputError):
        align_face(img, face.landmarks5 + 10_000)
