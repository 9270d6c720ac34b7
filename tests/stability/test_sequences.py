"""Perturbation sequences: shapes, seeding, identity frames and independent references
(OpenCV for tilt, PIL for rotation, scikit-image for blur and brightness)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robench.registry import registry
from robench.stability.params import TABLES, resolve_table, sequence_params
from robench.stability.sequences import quantize, tilt_homography
from robench.threat_model import TEST_PERTURBATIONS, VALIDATION_PERTURBATIONS

NAMES = registry.names("perturbation")


def _image(n: int = 2, channels: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Smooth 8-bit images (blurred noise), so resampling conventions matter little."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, channels, size // 4, size // 4, generator=gen)
    x = torch.nn.functional.interpolate(x, size=(size, size), mode="bicubic", align_corners=False)
    return quantize(x)


def _run(name: str, x: torch.Tensor, seed: int = 0, table: str = "cifar10", level: int = 1) -> torch.Tensor:
    return registry.get("perturbation", name)(x, torch.Generator().manual_seed(seed), params=sequence_params(name, table), level=level)


def test_every_declared_perturbation_is_registered_with_both_tables() -> None:
    assert sorted(NAMES) == sorted(TEST_PERTURBATIONS + VALIDATION_PERTURBATIONS)
    for table in TABLES.values():
        assert sorted(table) == sorted(NAMES)
    assert registry.names("perturbation", tag="noise") == ["gaussian_noise", "shot_noise", "speckle_noise"]
    assert sequence_params("translate", "cifar10").frames == 16 and sequence_params("motion_blur", "cifar10").frames == 21
    assert sequence_params("translate", "imagenet").frames == 41
    assert resolve_table("auto", 32) == "cifar10" and resolve_table("auto", 224) == "imagenet"


@pytest.mark.parametrize("name", NAMES)
def test_shape_range_grid_and_seeding(name: str) -> None:
    x = _image(size=16)
    frames = _run(name, x, seed=1)
    params = sequence_params(name, "cifar10")
    assert frames.shape == (2, params.frames, 3, 16, 16)
    assert float(frames.min()) >= 0 and float(frames.max()) <= 1
    assert torch.equal(frames, quantize(frames))  # on the 8-bit grid
    assert torch.equal(frames, _run(name, x, seed=1))  # same seed, same sequence
    assert float((frames[:, 1:] - frames[:, :-1]).abs().amax()) > 0  # frames change
    gray = _run(name, x[:, :1], seed=1)
    assert gray.shape == (2, params.frames, 1, 16, 16)
    if params.noise:
        assert torch.equal(frames[:, 0], x)  # frame 0 is the clean image
        assert not torch.equal(frames, _run(name, x, seed=2))


@pytest.mark.parametrize(
    "name,frame",
    [("rotate", 15), ("shear", 15), ("scale", 15), ("translate", 7), ("brightness", 15), ("zoom_blur", 0)],
)
def test_identity_frames(name: str, frame: int) -> None:
    x = _image()
    got = _run(name, x)[:, frame]
    assert float((got - x).abs().max()) <= 1 / 255 + 1e-6


def test_imagenet_table_lengths() -> None:
    x = _image(1, 3, 72)
    assert _run("translate", x, table="imagenet").shape[1] == 41
    assert _run("gaussian_noise", x, table="imagenet", level=3).shape[1] == 31


def test_translate_shifts_whole_pixels_with_zero_fill() -> None:
    x = _image(1)
    frames = _run("translate", x)
    # Frame i shifts right by i - 7 pixels.
    assert torch.equal(frames[0, 9, :, :, 2:], x[0, :, :, :-2])
    assert float(frames[0, 9, :, :, :2].abs().max()) == 0
    assert torch.equal(frames[0, 0, :, :, :-7], x[0, :, :, 7:])


def test_tilt_equals_opencv_warp_perspective() -> None:
    """Pixel for pixel on a textured image (a half-pixel shift of the homography's frame moved
    values by up to 30 levels; smooth images hid it)."""
    cv2 = pytest.importorskip("cv2")
    x = quantize(torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)))
    frames = _run("tilt", x)
    image = (x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    for i in (0, 5, 25, 30):
        reference = cv2.warpPerspective(image, tilt_homography(32, 32, 0.75 * (i - 15)), (32, 32)).astype(np.int32)
        ours = (frames[0, i].permute(1, 2, 0).numpy() * 255).round().astype(np.int32)
        inner, core = (slice(3, -3), slice(3, -3)), (slice(6, -6), slice(6, -6))  # away from the zero-filled border
        assert np.abs(ours[core] - reference[core]).max() <= 1
        assert (ours[inner] == reference[inner]).mean() > 0.99  # OpenCV rounds; truncating was off by one in half


def test_rotate_equals_pil_affine() -> None:
    from PIL import Image
    from torchvision.transforms.functional import InterpolationMode, affine

    x = _image(1)
    frames = _run("rotate", x)
    pil = Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    for i in (0, 8, 22, 30):
        reference = np.asarray(affine(pil, angle=i - 15, translate=[0, 0], scale=1.0, shear=[0.0], interpolation=InterpolationMode.BILINEAR)) / 255.0
        ours = frames[0, i].permute(1, 2, 0).numpy()
        inner = (slice(4, -4), slice(4, -4))
        assert np.abs(ours[inner] - reference[inner]).mean() < 2 / 255


def test_gaussian_blur_and_brightness_equal_skimage() -> None:
    from skimage.color import hsv2rgb, rgb2hsv
    from skimage.filters import gaussian

    x = _image(1)
    image = x[0].permute(1, 2, 0).double().numpy()
    blur = _run("gaussian_blur", x)
    bright = _run("brightness", x)
    for i in (0, 12, 30):
        reference = np.floor(255 * gaussian(image, sigma=0.3 + 0.015 * i, channel_axis=-1, truncate=7.0, mode="nearest") + 1e-3) / 255
        assert np.abs(blur[0, i].permute(1, 2, 0).numpy() - reference).max() <= 1 / 255 + 1e-6
        hsv = rgb2hsv(image)
        hsv[..., 2] = np.clip(hsv[..., 2] + (i - 15) * 0.015, 0, 1)
        reference = np.floor(255 * hsv2rgb(hsv) + 1e-3) / 255
        assert np.abs(bright[0, i].permute(1, 2, 0).numpy() - reference).max() <= 1 / 255 + 1e-6


@pytest.mark.parametrize("level,sigma", [(1, 0.02), (2, 0.04), (3, 0.06)])
def test_gaussian_noise_strength(level: int, sigma: float) -> None:
    x = torch.full((4, 3, 32, 32), 128 / 255)
    frames = _run("gaussian_noise", x, level=level)
    noise = frames[:, 1:] - x[:, None]
    assert float(noise.std()) == pytest.approx(sigma, rel=0.08)
    assert abs(float(noise.mean()) + 0.5 / 255) < 0.002  # truncation to the grid lowers by half a step


def test_shot_noise_is_poisson() -> None:
    x = torch.full((4, 3, 32, 32), 0.4)
    frames = _run("shot_noise", x, level=2)[:, 1:]  # lam = 400: frames ~ Poisson(160) / 400
    counts = torch.round(frames * 255) / 255 * 400
    assert float(counts.var()) == pytest.approx(160, rel=0.1)


@pytest.mark.parametrize("name", NAMES)
def test_frames_ignore_tf32(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA's default TF32 convolutions moved spatter's drops by up to 44/255 over its frames (the drift
    filter compounds); emulated on the CPU, no frame changes (see tests/_devices.emulate_tf32)."""
    from tests._devices import backend_setting, emulate_tf32

    x = _image()
    expected = _run(name, x, seed=4)
    emulate_tf32(monkeypatch)
    with backend_setting(torch.backends.cuda.matmul, "fp32_precision", "tf32"):
        assert torch.equal(_run(name, x, seed=4), expected)


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name: str) -> None:
    # The generator stays on the CPU, so both devices see the same random draws.
    x = _image()
    cpu = _run(name, x, seed=4)
    cuda = _run(name, x.cuda(), seed=4).cpu()
    assert cuda.shape == cpu.shape
    assert float((cuda - cpu).abs().mean()) < 1e-3  # rare 1/255 steps where float rounding crosses the grid
    assert float((cuda - cpu).abs().max()) <= 2 / 255 + 1e-6  # at most a step at each of two quantisations


@pytest.mark.parametrize("name", NAMES)
def test_a_sequence_does_not_depend_on_the_examples_after_it(name: str) -> None:
    """Generated through EvalContext.blockwise, the sequences of examples 8-10 are the same whether
    the data has 11 or 14 examples: the padded last block draws what a full block draws, and
    shot noise's Poisson draws (their use of randomness depends on the values) cannot shift later frames."""
    from robench.context import EvalContext
    from robench.data.base import ArrayDataset

    images = _image(n=14, size=16, seed=5)
    params = sequence_params(name, "cifar10")
    out = []
    for n in (11, 14):
        data = ArrayDataset(images[:n], torch.zeros(n, dtype=torch.long), 10)
        ctx = EvalContext(device=torch.device("cpu"), seed=0, progress=False)
        ctx.begin("stability")
        ctx.batch_offset = 8
        transform = lambda x, g: registry.get("perturbation", name)(x, g, params=params, level=1)  # noqa: E731
        out.append(ctx.blockwise(name, data, images[8:n], transform, 8)[:3])
    assert torch.equal(out[0], out[1])


@pytest.mark.parametrize("table", ["cifar10", "imagenet"])
def test_first_frame_says_which_sequences_start_perturbed(table: str) -> None:
    """Frame 0 of most sequential perturbations is already perturbed (translate's digit is shifted
    7 px and predicted 2 for a 0): the description is None exactly where frame 0 is the clean image,
    checked on generated frames."""
    from robench.registry import registry
    from robench.stability.params import TABLES, first_frame, sequence_params, translation_range
    from robench.stability.sequences import quantize

    gen = torch.Generator().manual_seed(0)
    x = quantize(torch.rand(2, 3, 32, 32, generator=gen))
    for name in TABLES[table]:
        frames = registry.get("perturbation", name)(x, torch.Generator().manual_seed(1), params=sequence_params(name, table), level=1)
        clean = torch.equal(frames[:, 0], x)
        assert (first_frame(name, table) is None) == clean, (name, first_frame(name, table))
    assert first_frame("translate", "cifar10") == "shifted by -7 px"
    low, high = translation_range(table)
    assert high - low + 1 == sequence_params("translate", table).frames
    assert translation_range("cifar10") == (-7, 8)
