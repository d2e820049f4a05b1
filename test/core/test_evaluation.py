"""Metrics: pose recovery and errors, AUC, epipolar error, latency."""
import numpy as np
import pytest

from loftr_ros.core import evaluation, synthetic
from loftr_ros.core.camera import sampson_distances
from loftr_ros.core.types import MatchResult


def rotation(axis, degrees):
    axis = np.asarray(axis, np.float64) / np.linalg.norm(axis)
    angle = np.deg2rad(degrees)
    K = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


def test_pose_auc_matches_the_superglue_definition():
    # One pair at 0 degrees and one failure: recall 0.5 from 0 on -> AUC 0.5 at any threshold.
    assert evaluation.pose_auc([0.0, np.inf])[10.0] == pytest.approx(0.5)
    # Errors uniform in [0, 10]: the CDF is a ramp, AUC@10 = 1/2, AUC@20 = 3/4.
    errors = np.linspace(0, 10, 10001)[1:]
    aucs = evaluation.pose_auc(errors)
    assert aucs[10.0] == pytest.approx(0.5, abs=1e-3)
    assert aucs[20.0] == pytest.approx(0.75, abs=1e-3)
    assert aucs[5.0] == pytest.approx(0.25, abs=1e-3)
    assert evaluation.pose_auc([30.0, 40.0])[20.0] == 0.0


def test_rotation_and_translation_errors():
    R = rotation([0, 1, 0], 10)
    assert evaluation.rotation_error_deg(R, np.eye(3)) == pytest.approx(10)
    assert evaluation.translation_error_deg(np.array([1.0, 0, 0]),
                                            np.array([1.0, 1.0, 0])) == pytest.approx(45)
    # The sign of an essential matrix's translation is not observable: folded to 0.
    assert evaluation.translation_error_deg(np.array([-1.0, 0, 0]),
                                            np.array([2.0, 0, 0])) == pytest.approx(0)


def random_scene_matches(R, t, camera, count=200, noise_px=0.0, seed=0):
    rng = np.random.default_rng(seed)
    points = np.column_stack([rng.uniform(-3, 3, count), rng.uniform(-2, 2, count),
                              rng.uniform(4, 9, count)])
    projected0 = points @ camera.K.T
    points1 = points @ R.T + t
    projected1 = points1 @ camera.K.T
    kp0 = projected0[:, :2] / projected0[:, 2:]
    kp1 = projected1[:, :2] / projected1[:, 2:] + rng.normal(0, noise_px, (count, 2))
    return kp0, kp1


def test_relative_pose_is_recovered_from_exact_matches():
    camera = synthetic.default_camera()
    R, t = rotation([0.2, 1, 0.1], 7), np.array([0.4, -0.1, 0.2])
    exact = evaluation.estimate_relative_pose(*random_scene_matches(R, t, camera), camera, camera)
    assert evaluation.pose_errors(exact, R, t)['pose_deg'] < 1e-3
    # 0.3 px noise, RANSAC without refinement (the papers' protocol): a few degrees at most.
    kp0, kp1 = random_scene_matches(R, t, camera, noise_px=0.3)
    estimate = evaluation.estimate_relative_pose(kp0, kp1, camera, camera)
    errors = evaluation.pose_errors(estimate, R, t)
    assert errors['rotation_deg'] < 1.5 and errors['translation_deg'] < 8
    # Matches of another geometry give a large error: the metric can fail.
    wrong = evaluation.pose_errors(evaluation.estimate_relative_pose(
        kp0, kp1, camera, camera), rotation([1, 0, 0], 20), np.array([0.0, 1.0, 0.0]))
    assert wrong['pose_deg'] > 15
    assert evaluation.pose_errors(None, R, t)['pose_deg'] == np.inf
    assert evaluation.estimate_relative_pose(kp0[:4], kp1[:4], camera, camera) is None


def test_inlier_mask_verifies_when_the_matcher_did_not():
    camera = synthetic.default_camera()
    R, t = rotation([0, 1, 0], 5), np.array([0.3, 0.0, 0.05])
    kp0, kp1 = random_scene_matches(R, t, camera)
    kp1[:40] = np.random.default_rng(1).uniform(0, 480, (40, 2))
    result = MatchResult(kp0.astype(np.float32), kp1.astype(np.float32),
                         np.ones(len(kp0), np.float32), (640, 480), (640, 480))
    for cameras in ((None, None), (camera, camera)):
        mask = evaluation.inlier_mask(result, *cameras)
        assert mask[40:].mean() > 0.8 and mask[:40].mean() < 0.2
    calibration = synthetic.stereo_calibration(camera)
    np.testing.assert_allclose(evaluation.epipolar_errors(result, calibration),
                               sampson_distances(kp0, kp1, calibration), atol=1e-3)


def test_latency_summary_in_milliseconds():
    summary = evaluation.latency_summary([0.01] * 19 + [0.1])
    assert summary['p50_ms'] == pytest.approx(10)
    assert summary['max_ms'] == pytest.approx(100)
    assert 10 < summary['p95_ms'] <= 100
    assert np.isnan(evaluation.latency_summary([])['p50_ms'])
