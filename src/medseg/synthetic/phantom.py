"""Synthetic chest-CT-like cases, deterministic by seed, for tests and ``medseg demo``.

Each case is a body (elliptic cylinder along axis 0) with a subcutaneous fat layer, chest-wall muscle,
ribs and sternum, two lungs, a heart with a brighter blood pool, a contrast-enhanced descending aorta
next to the spine, mediastinal fat and (in cranial slices) the trachea. Intensities are Hounsfield units
with a low- and a mid-frequency texture, partial-volume smoothing and white noise. Labels are the exact
geometric masks (:data:`LABEL_NAMES`).

Orientation: in-plane rows run anterior (row 0) to posterior, columns run from the patient's right to
left (radiological display); in 3D axis 0 runs cranial (index 0) to caudal.

Example:
    >>> cases = make_cases(SyntheticSpec(ndim=2, shape=(128, 128)), n=2, seed=0)
    >>> cases[0].image.shape, cases[0].label.dtype.name
    ((128, 128), 'uint8')
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from medseg.errors import ConfigError

__all__ = [
    "LABEL_NAMES",
    "OVERLAP_NAMES",
    "SyntheticCase",
    "SyntheticSpec",
    "make_case",
    "make_cases",
]

logger = logging.getLogger(__name__)

LABEL_NAMES: dict[int, str] = {0: "background", 1: "lung", 2: "heart", 3: "aorta"}
OVERLAP_NAMES: tuple[str, ...] = ("lungs", "heart", "mediastinum")

_AIR_HU = -1000.0
_HU_RANGE = (-1024.0, 3071.0)
_MIN_INPLANE = 32
_MIN_SLICES = 4


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True, eq=False)
class SyntheticCase:
    """One synthetic case.

    Attributes:
        image: ``(*spatial)`` float32 Hounsfield units.
        label: ``(*spatial)`` uint8 class indices, see :data:`LABEL_NAMES`.
        spacing: voxel size in mm, in array axis order.
    """

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, ...]


@dataclass(frozen=True)
class SyntheticSpec:
    """What to generate: ``ndim`` 2 (one axial slice) or 3 (a volume ``(Z, Y, X)``).

    ``smooth_sigma`` is the partial-volume blur (voxels) applied before noise; 0 turns it off.

    Example:
        >>> SyntheticSpec(ndim=2, shape=(128, 128)).shape
        (128, 128)
    """

    ndim: int = 3
    shape: tuple[int, ...] = (32, 96, 96)
    noise_hu: float = 20.0
    smooth_sigma: float = 0.7

    def __post_init__(self) -> None:
        if not _is_int(self.ndim) or self.ndim not in (2, 3):
            raise ConfigError(f"synthetic spec: ndim={self.ndim!r} is not 2 or 3 (use 2 or 3)")
        shape = tuple(self.shape) if isinstance(self.shape, (tuple, list)) else ()
        if len(shape) != self.ndim or not all(_is_int(n) for n in shape):
            example = (128, 128) if self.ndim == 2 else (32, 96, 96)
            raise ConfigError(
                f"synthetic spec: shape={self.shape!r} is not {self.ndim} integers "
                f"(pass shape of length ndim, e.g. shape={example})"
            )
        object.__setattr__(self, "shape", tuple(int(n) for n in shape))
        if min(self.shape[-2:]) < _MIN_INPLANE or (self.ndim == 3 and self.shape[0] < _MIN_SLICES):
            raise ConfigError(
                f"synthetic spec: shape={self.shape} is too small (in-plane sizes must be >= "
                f"{_MIN_INPLANE} and a volume needs >= {_MIN_SLICES} slices)"
            )
        for name in ("noise_hu", "smooth_sigma"):
            value = getattr(self, name)
            number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            if not number or not math.isfinite(value) or value < 0:
                raise ConfigError(f"synthetic spec: {name}={value!r} must be a finite number >= 0")


@dataclass(frozen=True)
class _Anatomy:
    """Random geometry of one case. In-plane lengths are in units of half the smaller in-plane size."""

    body: tuple[float, float, float, float, float, float]  # cx, cy, ax (LR), ay (AP), angle, fat fraction
    lungs: tuple[tuple[float, float, float, float], ...]  # (cs, ct, rs, rt) in body fractions, per lung
    lung_z: tuple[float, float]  # centre and half-length along axis 0, in [-1, 1] coordinates
    heart: tuple[float, float, float, float, float]  # cp, cq, long axis, short axis, angle
    heart_z: tuple[float, float]
    aorta: tuple[float, float, float, float, float]  # cp, cq, radius, drift p, drift q (per unit z)
    spine: tuple[float, float]  # cq, radius (centre on the midline)
    ribs: tuple[float, float]  # angular phase, phase change per unit z
    slice_z: float  # axial level of a 2D case


@dataclass(frozen=True)
class _Intensities:
    """Hounsfield units of each tissue in one case."""

    fat: float
    muscle: float
    mediastinal_fat: float
    lung: float
    lung_gradient: float  # added from anterior to posterior lung (dependent density)
    myocardium: float
    blood_pool: float
    aorta: float
    bone_rim: float
    bone_core: float
    texture: tuple[float, float, float]  # soft tissue, lung and fine lung texture amplitudes


def _draw_anatomy(rng: np.random.Generator, field: tuple[float, float]) -> _Anatomy:
    """Draw the geometry; ``field`` is the half-extent (x, y) of the image in the same units."""
    u = rng.uniform
    ax = u(0.60, 0.85)
    ay = ax * u(0.66, 0.78)
    cx = u(-1, 1) * min(0.16, field[0] - ax - 0.03)
    cy = u(-1, 1) * min(0.16, field[1] - ay - 0.03)
    fat = u(0.05, 0.10)
    body = (cx, cy, ax, ay, math.radians(u(-10, 10)), fat)
    right = (-u(0.44, 0.50), u(-0.04, 0.08), u(0.28, 0.34), u(0.68, 0.80))
    left = (u(0.46, 0.52), u(-0.04, 0.08), u(0.26, 0.32), u(0.66, 0.78))
    heart_centre = (ax * u(0.08, 0.16), -ay * u(0.25, 0.35))
    heart = (*heart_centre, ax * u(0.36, 0.42), ax * u(0.26, 0.31), -math.radians(u(25, 45)))
    r_aorta = ax * u(0.145, 0.17)
    r_spine = r_aorta * u(1.05, 1.2)
    q_spine = ay * (1 - fat) * u(0.50, 0.58)
    d, angle = r_spine + r_aorta + 0.02 * ax, math.radians(u(0, 30))
    aorta = (d * math.cos(angle), q_spine - d * math.sin(angle), r_aorta, u(-1, 1) * 0.03, u(-1, 1) * 0.03)
    heart_z = (u(0.10, 0.35), u(0.50, 0.70))
    return _Anatomy(
        body=body,
        lungs=(right, left),
        lung_z=(u(-0.15, 0.05), u(1.15, 1.35)),
        heart=heart,
        heart_z=heart_z,
        aorta=aorta,
        spine=(q_spine, r_spine),
        ribs=(u(0, 2 * math.pi), u(-0.6, 0.6)),
        slice_z=heart_z[0] + u(-0.5, 0.5) * heart_z[1],
    )


def _draw_intensities(rng: np.random.Generator) -> _Intensities:
    u = rng.uniform
    fat, muscle = u(-110, -80), u(30, 50)
    myocardium = muscle + u(10, 30)
    return _Intensities(
        fat=fat,
        muscle=muscle,
        mediastinal_fat=fat + u(10, 30),
        lung=u(-880, -830),
        lung_gradient=u(30, 70),
        myocardium=myocardium,
        blood_pool=myocardium + u(10, 25),
        aorta=u(150, 300),
        bone_rim=u(600, 800),
        bone_core=u(200, 350),
        texture=(u(5, 12), u(15, 30), u(10, 25)),
    )


def _ellipse_d2(
    p: np.ndarray, q: np.ndarray, centre: tuple[float, float], axes: tuple[float, float], angle: float = 0.0
) -> np.ndarray:
    """Squared normalised distance of ``(p, q)`` to an ellipse centre (< 1 inside); same shape as ``p``."""
    dp, dq = p - centre[0], q - centre[1]
    if angle:
        c, s = math.cos(angle), math.sin(angle)
        dp, dq = c * dp + s * dq, -s * dp + c * dq
    return (dp / axes[0]) ** 2 + (dq / axes[1]) ** 2


def _z_scale(w: np.ndarray, centre: float, half: float) -> np.ndarray:
    """``(Z, 1, 1)`` squared cross-section scale of an ellipsoid along axis 0 (0 outside it)."""
    return np.clip(1.0 - ((w - centre) / half) ** 2, 0.0, None)[:, None, None]


def _body_frame(shape: tuple[int, int], anat: _Anatomy) -> tuple[np.ndarray, np.ndarray]:
    """``(H, W)`` body-frame coordinates ``p`` (right to left) and ``q`` (anterior to posterior)."""
    radius = min(shape) / 2
    y = ((np.arange(shape[0]) - (shape[0] - 1) / 2) / radius)[:, None]
    x = ((np.arange(shape[1]) - (shape[1] - 1) / 2) / radius)[None, :]
    cx, cy, _, _, angle, _ = anat.body
    c, s = math.cos(angle), math.sin(angle)
    p, q = c * (x - cx) + s * (y - cy), -s * (x - cx) + c * (y - cy)
    return p.astype(np.float32), q.astype(np.float32)


def _wall_masks(p: np.ndarray, q: np.ndarray, w: np.ndarray, anat: _Anatomy) -> dict[str, np.ndarray]:
    """Body, muscle, rib-cage interior, ribs and sternum: boolean ``(Z, H, W)`` (broadcastable)."""
    _, _, ax, ay, _, fat = anat.body
    d2 = _ellipse_d2(p, q, (0.0, 0.0), (ax, ay))
    inner, cage, rib_ring = 1 - fat, 0.86 * (1 - fat), 0.93 * (1 - fat)
    rho = np.sqrt(d2)
    angle = np.arctan2(q / ay, p / ax)
    n_ribs, r_rib = 14, 0.035 * ax
    step = 2 * math.pi / n_ribs
    phase = anat.ribs[0] + anat.ribs[1] * w[:, None, None]
    offset = ((angle - phase) / step) % 1.0 - 0.5
    mean_axis = 0.5 * (ax + ay) * rib_ring
    rib_d2 = (offset * step * mean_axis) ** 2 + ((rho - rib_ring) * mean_axis) ** 2
    midline = (np.abs(angle - math.pi / 2) < 0.5) | (np.abs(angle + math.pi / 2) < 0.35)
    sternum = _ellipse_d2(p, q, (0.0, -ay * rib_ring), (0.10 * ax, 0.04 * ax)) < 1
    ribs = (rib_d2 < r_rib**2) & ~midline
    return {
        "body": (d2 < 1)[None],
        "muscle": (d2 < inner**2)[None],
        "cage": (d2 < cage**2)[None],
        "bone": ribs | sternum[None],
    }


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest face-connected component of a boolean mask (slivers cut off by carving go away)."""
    components, count = ndimage.label(mask)
    if count <= 1:
        return mask
    sizes = np.bincount(components.ravel())
    sizes[0] = 0
    return components == int(np.argmax(sizes))


def _organ_masks(p: np.ndarray, q: np.ndarray, w: np.ndarray, anat: _Anatomy) -> dict[str, np.ndarray]:
    """Heart, blood pool, aorta, spine, trachea and lungs as boolean ``(Z, H, W)`` masks."""
    _, _, ax, ay, _, fat = anat.body
    cage = (_ellipse_d2(p, q, (0.0, 0.0), (ax, ay)) < (0.86 * (1 - fat)) ** 2)[None]
    hp, hq, ha, hb, h_angle = anat.heart
    heart_d2 = _ellipse_d2(p, q, (hp, hq), (ha, hb), h_angle)[None]
    heart_s2 = _z_scale(w, *anat.heart_z)
    pool_d2 = _ellipse_d2(p, q, (hp - 0.1 * ha, hq + 0.1 * hb), (0.65 * ha, 0.6 * hb), h_angle)[None]
    ap, aq, ar, dp, dq = anat.aorta
    zz = w[:, None, None]
    aorta_d2 = ((p - ap - dp * zz) ** 2 + (q - aq - dq * zz) ** 2) / ar**2
    q_spine, r_spine = anat.spine
    spine_d2 = _ellipse_d2(p, q, (0.0, q_spine), (r_spine, r_spine))[None]
    posterior = _ellipse_d2(p, q, (0.0, q_spine + 1.1 * r_spine), (0.3 * r_spine, 0.5 * r_spine))[None] < 1
    r_trachea = 0.7 * ar
    trachea_d2 = _ellipse_d2(p, q, (0.0, q_spine - r_spine - 1.4 * r_trachea), (r_trachea, r_trachea))[None]
    above_heart = (w < anat.heart_z[0] - anat.heart_z[1] - 0.05)[:, None, None]
    aorta_out = aorta_d2 < 1.25**2
    heart = (heart_d2 < heart_s2) & cage & ~aorta_out
    trachea_wall = (trachea_d2 < 1.3**2) & above_heart & ~aorta_out
    keep_out = (heart_d2 < heart_s2 * 1.15**2) | aorta_out | (spine_d2 < 1.2**2) | (trachea_d2 < 1.6**2)
    lungs = np.zeros_like(heart)
    for cs, ct, rs, rt in anat.lungs:
        lung = _ellipse_d2(p, q, (cs * ax, ct * ay), (rs * ax, rt * ay))[None] < _z_scale(w, *anat.lung_z)
        lungs |= _largest_component(lung & cage & ~keep_out)
    return {
        "lung": lungs,
        "heart": heart,
        "pool": heart & (pool_d2 < heart_s2),
        "aorta": aorta_d2 < 1,
        "spine": (spine_d2 < 1) | posterior,
        "spine_core": spine_d2 < 0.75**2,
        "trachea_wall": trachea_wall,
        "trachea": trachea_wall & (trachea_d2 < 1),
    }


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], cells: tuple[float, ...]) -> np.ndarray:
    """Smooth zero-mean, unit-std random field of ``shape``: cubic-spline upsampling of coarse noise.

    The upsampling is separable, one ``(n, m)`` interpolation matrix per axis (``ndimage.zoom`` of an
    identity), much faster than ``ndimage.zoom`` of the whole array.
    """
    coarse = tuple(max(2, math.ceil(n / c) + 1) for n, c in zip(shape, cells, strict=True))
    field = rng.standard_normal(coarse, dtype=np.float32)
    for axis, (n, m) in enumerate(zip(shape, coarse, strict=True)):
        matrix = ndimage.zoom(np.eye(m, dtype=np.float32), (n / m, 1.0), order=3, mode="nearest")
        # einsum (not tensordot): no BLAS threads, which stall when the CPU cores are busy
        field = np.moveaxis(np.einsum("...m,nm->...n", np.moveaxis(field, axis, -1), matrix), -1, axis)
    field -= field.mean()
    field /= max(float(field.std()), 1e-6)
    return np.ascontiguousarray(field)


def _render(
    masks: dict[str, np.ndarray], hu: _Intensities, q_over_ay: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Noise-free ``(Z, H, W)`` float32 HU image from the masks; ``q_over_ay`` is ``(H, W)``."""
    shape = masks["lung"].shape
    image = np.full(shape, _AIR_HU, dtype=np.float32)
    lung_hu = hu.lung + hu.lung_gradient * (np.clip(q_over_ay, -1, 1) + 1) / 2
    layers = [
        ("body", hu.fat),
        ("muscle", hu.muscle),
        ("cage", hu.mediastinal_fat),
        ("lung", lung_hu),
        ("heart", hu.myocardium),
        ("pool", hu.blood_pool),
        ("aorta", hu.aorta),
        ("bone", hu.bone_rim),
        ("spine", hu.bone_rim),
        ("spine_core", hu.bone_core),
        ("trachea_wall", hu.muscle),
        ("trachea", _AIR_HU),
    ]
    for name, value in layers:
        np.copyto(image, np.asarray(value, dtype=np.float32), where=masks[name])
    body, lung = np.broadcast_to(masks["body"], shape), masks["lung"]
    cells = (4.0, 12.0, 12.0) if shape[0] > 1 else (1.0, 12.0, 12.0)
    coarse = _smooth_field(rng, shape, cells)
    fine = _smooth_field(rng, shape, (2.0, 4.0, 4.0) if shape[0] > 1 else (1.0, 4.0, 4.0))
    tissue_amp, lung_amp, fine_amp = hu.texture
    amplitude = np.where(lung, np.float32(lung_amp), np.where(body, np.float32(tissue_amp), np.float32(0)))
    image += coarse * amplitude
    image += fine * (lung * np.float32(fine_amp))
    return image


def make_case(spec: SyntheticSpec, rng: np.random.Generator) -> SyntheticCase:
    """Generate one case of ``spec.shape`` (``(Y, X)`` or ``(Z, Y, X)``) from ``rng``."""
    plane = (spec.shape[-2], spec.shape[-1])
    radius = min(plane) / 2
    anat = _draw_anatomy(rng, (plane[1] / 2 / radius, plane[0] / 2 / radius))
    hu = _draw_intensities(rng)
    in_plane = round(0.8 * rng.uniform(0.85, 1.15), 3)
    if spec.ndim == 3:
        w = np.linspace(-1.0, 1.0, spec.shape[0], dtype=np.float32)
        spacing: tuple[float, ...] = (round(rng.uniform(2.0, 3.0), 3), in_plane, in_plane)
    else:
        w = np.array([anat.slice_z], dtype=np.float32)
        spacing = (in_plane, in_plane)
    p, q = _body_frame(plane, anat)
    masks = {**_wall_masks(p, q, w, anat), **_organ_masks(p, q, w, anat)}
    image = _render(masks, hu, q / anat.body[3], rng)
    if spec.smooth_sigma > 0:
        image = ndimage.gaussian_filter(image, spec.smooth_sigma)
    image += np.float32(spec.noise_hu) * rng.standard_normal(image.shape, dtype=np.float32)
    np.clip(image, *_HU_RANGE, out=image)
    label = np.zeros(image.shape, dtype=np.uint8)
    for index, name in ((1, "lung"), (2, "heart"), (3, "aorta")):
        label[masks[name]] = index
    if spec.ndim == 2:
        image, label = image[0], label[0]
    return SyntheticCase(image=np.ascontiguousarray(image), label=np.ascontiguousarray(label), spacing=spacing)


def make_cases(spec: SyntheticSpec, n: int, seed: int) -> list[SyntheticCase]:
    """Generate ``n`` cases; case ``i`` depends only on ``(spec, seed, i)``, not on ``n``."""
    for name, value in (("n", n), ("seed", seed)):
        if not _is_int(value) or value < 0:
            raise ConfigError(f"synthetic cases: {name}={value!r} must be an integer >= 0")
    children = np.random.SeedSequence(int(seed)).spawn(int(n))
    logger.debug("generating %d synthetic %dD cases of shape %s (seed %d)", n, spec.ndim, spec.shape, seed)
    return [make_case(spec, np.random.default_rng(child)) for child in children]
