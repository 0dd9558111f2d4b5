"""Rendering of eyelid closure, yawns, occluders, head pose and camera nuisances onto a real face.

Everything is a deformation of the real photo, not painted shapes, so that a landmark model
sees skin where it expects skin:

- eyelids: per eye an eye-local frame (u along the corner-to-corner axis, v across it, down
  positive) with the upper and lower lid curves U(u), L(u) fitted through the MediaPipe lid
  landmarks. Closure c moves the upper lid margin from U to U + c·μ·(L − U) and the lower lid
  up by c·(1 − μ)·(L − U) (μ = 0.75: a closed eye's lid line sits in the lower third). The lid
  margin (lashes) moves rigidly, the skin between the brow and the margin is stretched down over
  the eye, the lower-lid skin up; the displacement is 0 at the brow, at the cheek and at the eye
  corners, so nothing seams. The eyeball itself does not move: the lid covers it. The covering
  lid is toned towards the under-brow skin (a lid over the eyeball catches light, it is not the
  shadowed crease the stretch drags down) and a soft lash line darkens the new margin. Sampled
  4× supersampled and area-averaged (anti-aliasing).
- yawn: in a mouth frame the upper lip rises a little, the lower lip and the jaw drop (an oval
  opening between the lips, the whole chin moving at the jaw line, the neck compressed below),
  and the gap is filled with a dark mouth-cavity gradient.
- head pose: each source pixel gets a depth (interpolated from the MediaPipe landmarks' z, the
  nose in front of the face plane), is rotated about an axis behind the face (yaw, pitch, roll)
  and re-projected with a pinhole camera (focal ≈ 0.85 × frame width), then swayed and scaled.
  Without the depth this is the plane homography K·R·K⁻¹ about the face centre, which
  foreshortens the face but keeps the nose between the eyes, so a landmark model would read
  little yaw (with the depth MediaPipe reads ~0.7× the applied yaw). Only the head moves: the
  motion fades out over a ring around the head, so the cabin stays put. The inverse map is
  solved by a fixed-point iteration on a coarse grid and upsampled for one cv2.remap.
- leaving the frame: a soft person layer (head, hair, shoulders) slides out over an "empty
  seat" plate, the person region inpainted at low resolution and defocused.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.simulator.source import SourceFace

# MediaPipe mesh lid polylines, corner to corner, image order (verified on the astronaut).
EYE_LIDS: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...] = (
    ((33, 246, 161, 160, 159, 158, 157, 173, 133), (33, 7, 163, 144, 145, 153, 154, 155, 133)),
    ((263, 466, 388, 387, 386, 385, 384, 398, 362), (263, 249, 390, 373, 374, 380, 381, 382, 362)),
)
# Lower edge of each brow (image order): the stretched skin ends short of it.
BROWS = ((46, 53, 52, 65, 55), (276, 283, 282, 295, 285))
MOUTH_CORNERS = (61, 291)
INNER_UPPER_LIP = (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308)
INNER_LOWER_LIP = (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308)
SUBNASALE = 2
JAW_LINE = (172, 136, 150, 149, 176, 148, 152, 377, 400, 378, 379, 365, 397)
FACE_OVAL = (
    10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377,
    152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109,
)

SUPERSAMPLE = 4
LID_MEET = 0.75  # where the lids meet, as a share of the open eye height from the upper lid
LASH_STRENGTH = 0.45  # darkening of the lash line on a fully closed lid
LID_TONE = 0.5  # how far the closed lid is pulled towards the under-brow skin tone
GRID_STEP = 8  # pixels per node of the coarse pose-warp grid


def _local_frame(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Origin, unit axis (image left to right), unit normal (down) and length of a -> b."""
    if a[0] > b[0]:
        a, b = b, a
    axis = b - a
    length = float(np.linalg.norm(axis))
    ex = axis / length
    ey = np.array([-ex[1], ex[0]])
    return a.astype(np.float64), ex, ey, length


def _curve(points: np.ndarray, origin: np.ndarray, ex: np.ndarray, ey: np.ndarray,
           width: float) -> np.ndarray:
    """Smooth v(u) through polyline ``points`` (N, 2), pinned to v=0 at u=0 and u=width.

    Returns polynomial coefficients (degree 4, in u/width) for np.polyval.
    """
    rel = points - origin
    u, v = rel @ ex / width, rel @ ey
    coeffs = np.polyfit(u, v, deg=min(4, len(u) - 1))
    # Pin the ends exactly to the corners (the axis runs through them).
    e0, e1 = np.polyval(coeffs, 0.0), np.polyval(coeffs, 1.0)
    coeffs[-1] -= e0
    coeffs[-2] -= e1 - e0
    return np.asarray(coeffs, dtype=np.float64)


@dataclass
class _Roi:
    """A pixel box and the supersampled local coordinates of its sample points."""

    x0: int
    y0: int
    x1: int
    y1: int
    gx: np.ndarray  # (h*ss, w*ss) image x of each sample
    gy: np.ndarray
    u: np.ndarray  # local coordinates of each sample
    v: np.ndarray

    @staticmethod
    def around(corners: np.ndarray, origin: np.ndarray, ex: np.ndarray, ey: np.ndarray,
               shape: tuple[int, ...]) -> _Roi:
        """corners: (K, 2) image points the box must hold."""
        h, w = shape[:2]
        x0, y0 = np.floor(corners.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(corners.max(axis=0)).astype(int) + 3
        x0, y0, x1, y1 = max(0, x0), max(0, y0), min(w, x1), min(h, y1)
        ss = SUPERSAMPLE
        xs = x0 - 0.5 + (np.arange((x1 - x0) * ss) + 0.5) / ss
        ys = y0 - 0.5 + (np.arange((y1 - y0) * ss) + 0.5) / ss
        gx, gy = np.meshgrid(xs, ys)
        u = (gx - origin[0]) * ex[0] + (gy - origin[1]) * ex[1]
        v = (gx - origin[0]) * ey[0] + (gy - origin[1]) * ey[1]
        return _Roi(int(x0), int(y0), int(x1), int(y1), gx, gy, u, v)


def _composite(image: np.ndarray, roi: _Roi, patch: np.ndarray, weight: np.ndarray) -> None:
    """Area-averages the supersampled ``patch`` (h·ss, w·ss, 3) and ``weight`` (h·ss, w·ss)
    down to the ROI and blends the patch into ``image`` in place by the weight."""
    size = (roi.x1 - roi.x0, roi.y1 - roi.y0)
    small = cv2.resize(patch.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    alpha = cv2.resize(weight.astype(np.float32), size, interpolation=cv2.INTER_AREA)
    region = image[roi.y0 : roi.y1, roi.x0 : roi.x1].astype(np.float32)
    out = region + alpha[..., None] * (small - region)
    image[roi.y0 : roi.y1, roi.x0 : roi.x1] = np.clip(out + 0.5, 0, 255).astype(np.uint8)


def _sample(image: np.ndarray, src_x: np.ndarray, src_y: np.ndarray) -> np.ndarray:
    """Bicubic samples of ``image`` at (src_x, src_y) (any 2-D shape), float32."""
    return cv2.remap(image, src_x.astype(np.float32), src_y.astype(np.float32),
                     cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT101).astype(np.float32)


class EyeRig:
    """Closes one eye of a source face by a displacement field (see the module docstring)."""

    def __init__(self, face: SourceFace, eye: int) -> None:
        upper_idx, lower_idx = EYE_LIDS[eye]
        pts = face.landmarks[:, :2].astype(np.float64)
        self.origin, self.ex, self.ey, self.width = _local_frame(pts[upper_idx[0]],
                                                                 pts[upper_idx[-1]])
        self.upper = _curve(pts[list(upper_idx)], self.origin, self.ex, self.ey, self.width)
        self.lower = _curve(pts[list(lower_idx)], self.origin, self.ex, self.ey, self.width)
        brow = (pts[list(BROWS[eye])] - self.origin) @ self.ey
        top = float(np.polyval(self.upper, np.linspace(0, 1, 9)).min())
        # Stretch from a bit below the brow's lower edge: the brow itself must not move.
        self.brow_gap = float(np.clip(0.8 * (top - np.median(brow)), 0.25 * self.width,
                                      0.7 * self.width))
        self.cheek_gap = 0.35 * self.width
        self.margin = min(0.1 * self.width, 0.4 * self.brow_gap)
        self.lash_strength = LASH_STRENGTH
        span = np.array([[-0.2, 0], [1.2, 0]]) * self.width
        corners = np.array([
            self.origin + s[0] * self.ex + v * self.ey
            for s in span for v in (top - self.brow_gap - 2, self.cheek_gap + 0.5 * self.width)
        ])
        self.roi = _Roi.around(corners, self.origin, self.ex, self.ey, face.image.shape)
        un = np.clip(self.roi.u / self.width, 0.0, 1.0)
        self._upper = np.polyval(self.upper, un)
        self._lower = np.maximum(np.polyval(self.lower, un), self._upper)
        inside = (self.roi.u > 0) & (self.roi.u < self.width)
        self._upper[~inside] = 0.0
        self._lower[~inside] = 0.0
        # Lash line only along the lid, fading towards the corners.
        t = np.clip(self.roi.u / self.width, 0, 1)
        self._lash_weight = np.sin(np.pi * t) ** 0.7 * inside
        # Skin tone just under the brow: a closed lid bulging over the eyeball catches light
        # like that skin, not like the shadowed crease that the stretch drags down.
        band = (inside & (t > 0.2) & (t < 0.8) & (self.roi.v < self._upper - 0.3 * self.brow_gap)
                & (self.roi.v > self._upper - 0.8 * self.brow_gap))
        gx, gy = self.roi.gx[band], self.roi.gy[band]
        samples = face.image[np.clip(gy.round().astype(int), 0, face.image.shape[0] - 1),
                             np.clip(gx.round().astype(int), 0, face.image.shape[1] - 1)]
        self._skin = (np.median(samples, axis=0) if len(samples) else
                      np.median(face.image.reshape(-1, 3), axis=0)).astype(np.float32)

    def render(self, image: np.ndarray, closure: float) -> None:
        """Closes the eye of ``image`` (H, W, 3) uint8 in place; closure in [0, 1]."""
        c = float(np.clip(closure, 0.0, 1.0))
        if c < 1e-3:
            return
        v, up, lo = self.roi.v, self._upper, self._lower
        h = lo - up
        upper_edge = up + c * LID_MEET * h
        lower_edge = lo - c * (1 - LID_MEET) * h
        brow = up - self.brow_gap
        cheek = lo + self.cheek_gap
        src_v = v.copy()
        # The lid margin (lashes) moves rigidly so it stays thin; the skin between the brow
        # and the margin is stretched over the rest.
        margin = self.margin
        rigid = (v >= upper_edge - margin) & (v < upper_edge)
        src_v[rigid] = v[rigid] - (upper_edge[rigid] - up[rigid])
        above = (v >= brow) & (v < upper_edge - margin)
        src_v[above] = brow[above] + (v[above] - brow[above]) * (
            (up[above] - margin - brow[above])
            / np.maximum(upper_edge[above] - margin - brow[above], 1e-6)
        )
        below = (v >= lower_edge) & (v < cheek) & (h > 0)
        src_v[below] = lo[below] + (v[below] - lower_edge[below]) * (
            (cheek[below] - lo[below]) / np.maximum(cheek[below] - lower_edge[below], 1e-6)
        )
        dv = src_v - v
        src_x = self.roi.gx + dv * self.ey[0]
        src_y = self.roi.gy + dv * self.ey[1]
        weight = np.clip(np.abs(dv) * 4.0, 0.0, 1.0)
        # Lash line: a soft dark band just below the new margin, stronger as the lid closes.
        sigma = max(0.6, 0.035 * self.width)
        band = np.exp(-0.5 * ((v - upper_edge - 0.4 * sigma) / sigma) ** 2)
        lash = self.lash_strength * c**1.5 * band * self._lash_weight
        cover = (np.clip((v - up) / (0.3 * h + 1e-6), 0, 1)
                 * np.clip((upper_edge - v - sigma) / (0.2 * h + 1e-6), 0, 1)
                 * self._lash_weight * LID_TONE * c)
        patch = _sample(image, src_x, src_y)
        patch += cover[..., None] * (self._skin - patch)
        patch *= (1.0 - lash)[..., None]
        _composite(image, self.roi, patch, np.maximum(weight, (lash > 0.01).astype(np.float64)))


class MouthRig:
    """Opens the mouth of a source face (a yawn) by a displacement field plus a dark cavity."""

    def __init__(self, face: SourceFace) -> None:
        pts = face.landmarks[:, :2].astype(np.float64)
        self.origin, self.ex, self.ey, self.width = _local_frame(pts[MOUTH_CORNERS[0]],
                                                                 pts[MOUTH_CORNERS[1]])
        axes = np.stack([self.ex, self.ey]).T

        def rel(idx: tuple[int, ...]) -> np.ndarray:
            """(len(idx), 2) mouth-frame (u, v) of the landmarks ``idx``."""
            return np.asarray((pts[list(idx)] - self.origin) @ axes)

        upper, lower = rel(INNER_UPPER_LIP), rel(INNER_LOWER_LIP)
        lip_u = (upper[:, 0] + lower[:, 0]) / 2
        lip_v = (upper[:, 1] + lower[:, 1]) / 2
        order = np.argsort(lip_u)
        jaw = rel(JAW_LINE)
        jaw = jaw[np.argsort(jaw[:, 0])]
        nose_v = float(rel((SUBNASALE,))[0, 1])
        # A full yawn opens the lips about as far as the mouth is wide (MediaPipe reads MAR ~0.9
        # and jawOpen ~0.85 on a real wide yawn): a narrower rig renders talking, not yawns.
        self.max_gap = 1.0 * self.width
        chin_v = float(jaw[:, 1].max())
        self.neck = 1.6 * self.max_gap
        corners = np.array([
            self.origin + u * self.ex + v * self.ey
            for u in (-0.6 * self.width, 1.6 * self.width)
            for v in (nose_v - 2, chin_v + self.neck + 0.2 * self.max_gap + 2)
        ])
        self.roi = _Roi.around(corners, self.origin, self.ex, self.ey, face.image.shape)
        u = self.roi.u
        self._lip = np.interp(u, lip_u[order], lip_v[order])
        self._nose = np.full_like(u, nose_v)
        self._chin = np.interp(u, jaw[:, 0], jaw[:, 1])
        # Opening profile: oval between the corners; jaw profile: the whole chin moves.
        t = np.clip(u / self.width, 0.0, 1.0)
        self._w_mouth = np.clip(1 - (2 * t - 1) ** 2, 0, 1) ** 0.75
        d = np.clip(np.abs(u - self.width / 2) / (1.0 * self.width), 0, 1)
        self._w_jaw = np.cos(np.pi / 2 * d) ** 2
        # Cavity colour: dark, reddish near the lips (BGR).
        self._cavity_edge = np.array([45.0, 40.0, 95.0])
        self._cavity_core = np.array([14.0, 10.0, 16.0])

    def render(self, image: np.ndarray, opening: float) -> None:
        """Opens the mouth of ``image`` (H, W, 3) uint8 in place; opening in [0, 1]."""
        m = float(np.clip(opening, 0.0, 1.0))
        if m < 1e-3:
            return
        gap = m * self.max_gap
        g_up, g_down = 0.2 * gap, 0.8 * gap
        v, lip, nose, chin = self.roi.v, self._lip, self._nose, self._chin
        wm, wj = self._w_mouth, self._w_jaw
        src_v = v.copy()
        top = lip - g_up * wm
        bottom = lip + g_down * wm
        # Upper lip region [nose, lip] -> [nose, top].
        r1 = (v >= nose) & (v < top)
        src_v[r1] = nose[r1] + (v[r1] - nose[r1]) * (lip[r1] - nose[r1]) / np.maximum(
            top[r1] - nose[r1], 1e-6)
        cavity = (v >= top) & (v < bottom) & (wm > 0)
        # Lower lip to chin: shifted by g_down·[(1-t)·wm + t·wj], t running lip -> chin.
        span = np.maximum(chin - lip, 1e-6)
        chin_dest = chin + g_down * wj
        r2 = (v >= bottom) & (v < chin_dest)
        src_v[r2] = lip[r2] + (v[r2] - bottom[r2]) / (
            1 + g_down * (wj[r2] - wm[r2]) / span[r2])
        r3 = (v >= chin_dest) & (v < chin + self.neck)
        src_v[r3] = chin[r3] + (v[r3] - chin_dest[r3]) / (1 - g_down * wj[r3] / self.neck)
        dv = src_v - v
        src_x = self.roi.gx + dv * self.ey[0]
        src_y = self.roi.gy + dv * self.ey[1]
        patch = _sample(image, src_x, src_y)
        # Cavity: dark gradient from the lips inwards, feathered by the supersampling.
        depth = np.clip(np.minimum(v - top, bottom - v) / np.maximum(0.35 * gap * wm, 1e-6),
                        0, 1)[..., None]
        colour = self._cavity_edge + (self._cavity_core - self._cavity_edge) * depth
        patch = np.where(cavity[..., None], colour, patch)
        weight = np.clip(np.abs(dv) * 4.0, 0.0, 1.0)
        weight[cavity] = 1.0
        _composite(image, self.roi, patch, weight)


@dataclass(frozen=True, slots=True)
class Pose:
    """Head pose and camera-frame motion of one frame.

    yaw > 0 turns the face towards the image's right, pitch > 0 looks up, roll > 0 rotates the
    face clockwise in the image; degrees. tx, ty in pixels, scale around the face centre.
    """

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    tx: float = 0.0
    ty: float = 0.0
    scale: float = 1.0


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """(3, 3) rotation in camera axes (x right, y down, z away from the camera), degrees."""
    a, b, g = np.radians([-yaw, -pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return np.asarray(rz @ rx @ ry)


class PoseWarp:
    """Head rotation with depth parallax plus head sway, for one source face.

    Only the head moves: the displacement fades to zero over a ring around the head, so the
    cabin behind stays put (and no reflected border can mirror the face back in). A global
    horizontal ``shift`` moves the whole view (the driver leaving the frame).
    """

    def __init__(self, face: SourceFace, size: tuple[int, int]) -> None:
        w, h = size
        self.size = size
        self.focal = 0.85 * w
        pts = face.landmarks.astype(np.float64)
        box = face.face_box
        self.centre = np.array([(box[0] + box[2]) / 2, (box[1] + box[3]) / 2])
        face_w, face_h = float(box[2] - box[0]), float(box[3] - box[1])
        # Rotation axis behind the face plane (the neck).
        self.axis_depth = 0.5 * face_w
        # Depth towards the camera, relative to the plane of the eye corners.
        plane = float(np.median(pts[[33, 133, 362, 263], 2]))
        depth = -(pts[:, 2] - plane)
        background = float(np.median(depth[list(FACE_OVAL)]))
        gw, gh = w // GRID_STEP, h // GRID_STEP
        # Node j sits where cv2.resize's half-pixel convention puts it at full resolution.
        nx, ny = np.meshgrid((np.arange(gw) + 0.5) * GRID_STEP - 0.5,
                             (np.arange(gh) + 0.5) * GRID_STEP - 0.5)
        # Gaussian-weighted depth from the landmarks, fading to the face outline's depth
        # away from the face; smooth so that the warp stays invertible.
        sigma = 0.07 * face_w
        d2 = (nx[..., None] - pts[:, 0]) ** 2 + (ny[..., None] - pts[:, 1]) ** 2
        wgt = np.exp(-0.5 * d2 / sigma**2)
        w0 = 0.05
        depth_map = (wgt @ depth + w0 * background) / (wgt.sum(-1) + w0)
        self.depth = cv2.GaussianBlur(depth_map.astype(np.float32), (0, 0), sigmaX=1.0)
        # Head weight: 1 over the head (face, hair), 0 beyond a ring around it.
        r = np.hypot((nx - self.centre[0]) / (0.9 * face_w),
                     (ny - self.centre[1] + 0.12 * face_h) / (0.85 * face_h))
        ring = np.clip((r - 1.0) / 0.8, 0.0, 1.0)
        self.head = (np.cos(0.5 * np.pi * ring) ** 2).astype(np.float32)
        self._nx, self._ny = nx, ny

    def _lookup(self, grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        shape = np.shape(x)
        fx = ((x + 0.5) / GRID_STEP - 0.5).astype(np.float32).reshape(1, -1)
        fy = ((y + 0.5) / GRID_STEP - 0.5).astype(np.float32).reshape(1, -1)
        out = cv2.remap(grid, fx, fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return np.asarray(out, dtype=np.float64).reshape(shape)

    def _head_motion(self, x: np.ndarray, y: np.ndarray, pose: Pose
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Where head points at source pixels (x, y) go: rotation about the neck axis with
        depth parallax, pinhole re-projection, then sway (tx, ty) and scale."""
        f, a = self.focal, self.axis_depth
        zd = self._lookup(self.depth, x, y)
        cx, cy = self.centre
        # Back-project at the face-plane depth f (one unit = one pixel there).
        k = (f - zd) / f
        p = np.stack([(x - cx) * k, (y - cy) * k, -zd - a])
        q = np.tensordot(rotation(pose.yaw, pose.pitch, pose.roll), p, axes=1)
        z = f + a + q[2]
        return (cx + pose.scale * f * q[0] / z + pose.tx,
                cy + pose.scale * f * q[1] / z + pose.ty)

    def forward(self, x: np.ndarray, y: np.ndarray, pose: Pose
                ) -> tuple[np.ndarray, np.ndarray]:
        """Where source pixels (x, y) (any shape) land in the output frame."""
        hx, hy = self._head_motion(x, y, pose)
        wgt = self._lookup(self.head, x, y)
        return x + wgt * (hx - x), y + wgt * (hy - y)

    def maps(self, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
        """(H, W) float32 source x and y for every output pixel, for cv2.remap."""
        qx, qy = self._nx, self._ny
        px, py = qx.copy(), qy.copy()
        # Fixed point of p <- p + (q - F(p)): the warp is close to a similarity, so the
        # identity Jacobian is good enough and a handful of steps converge.
        for _ in range(6):
            fx, fy = self.forward(px, py, pose)
            px, py = px + (qx - fx), py + (qy - fy)
        w, h = self.size
        map_x = cv2.resize(px.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        map_y = cv2.resize(py.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        return map_x, map_y

    def warp(self, image: np.ndarray, pose: Pose) -> np.ndarray:
        """Applies ``pose`` to ``image`` (H, W, 3); the cabin outside the head stays put."""
        if pose == Pose():
            return image
        map_x, map_y = self.maps(pose)
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_REPLICATE)

    def landmarks(self, points: np.ndarray, pose: Pose) -> np.ndarray:
        """points: (N, 2) source pixels -> (N, 2) output pixels."""
        xo, yo = self.forward(points[:, 0].astype(np.float64), points[:, 1].astype(np.float64),
                              pose)
        return np.stack([xo, yo], axis=1)


def person_mask(
    landmarks: np.ndarray, size: tuple[int, int], feather: float = 0.05
) -> np.ndarray:
    """(H, W) float32 soft mask of the driver's head (hair included) and upper body.

    landmarks: (478, >=2) of the face; size: (width, height); feather: edge blur as a share
    of the face width.
    """
    w, h = size
    xy = landmarks[:, :2]
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    fw, fh = float(x1 - x0), float(y1 - y0)
    cx, cy = float(x0 + x1) / 2, float(y0 + y1) / 2
    mask = np.zeros((h, w), np.float32)
    # Generous around the top: hair reaches well above the landmark box.
    cv2.ellipse(mask, (round(cx), round(cy - 0.2 * fh)), (round(0.95 * fw), round(0.98 * fh)),
                0, 0, 360, 1.0, -1)
    body = np.array([[cx - 0.5 * fw, y1 - 0.1 * fh], [cx + 0.5 * fw, y1 - 0.1 * fh],
                     [cx + 1.35 * fw, h], [cx - 1.35 * fw, h]], np.int32)
    cv2.fillConvexPoly(mask, body, 1.0)
    return cv2.GaussianBlur(mask, (0, 0), sigmaX=feather * fw)


def empty_seat(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` (H, W, 3) with the person under ``mask`` (H, W) removed: the region is
    inpainted at quarter resolution and defocused (an out-of-focus empty seat)."""
    h, w = image.shape[:2]
    small = cv2.resize(image, (w // 4, h // 4), interpolation=cv2.INTER_AREA)
    hole = cv2.dilate((cv2.resize(mask, (w // 4, h // 4)) > 0.05).astype(np.uint8),
                      np.ones((5, 5), np.uint8))
    filled = cv2.inpaint(small, hole, 5, cv2.INPAINT_TELEA)
    filled = cv2.GaussianBlur(cv2.resize(filled, (w, h), interpolation=cv2.INTER_LINEAR),
                              (0, 0), sigmaX=6)
    alpha = mask[..., None]
    out = alpha * filled.astype(np.float32) + (1 - alpha) * image.astype(np.float32)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
