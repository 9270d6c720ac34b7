"""Registry-generated tests of every corruption: contract, determinism, severity ordering."""

from __future__ import annotations

import pytest
import torch

from robench._errors import ConfigError, DataError
from robench.corruptions import TABLES, resolve_table
from robench.registry import registry
from robench.threat_model import BENCHMARK_CORRUPTIONS, EXTRA_CORRUPTIONS
from tests.corruptions._images import mnist_batch, smooth_rgb

NAMES = registry.names("corruption")
BATCHES = {"gray28": lambda: mnist_batch(2), "rgb32": lambda: smooth_rgb(2)}

# Mean |corrupted - clean| need not grow with severity for these, because the reference tables trade
# parameters against each other: elastic_transform (CIFAR: the affine jitter shrinks while the local
# field grows; ImageNet: severities 1-2 use a large smooth field), frost (the image weight falls as the
# frost weight rises, so the change depends on the image's brightness), saturate (severities 1-2
# desaturate, 3-5 oversaturate).
NOT_ORDERED = {"elastic_transform", "frost", "saturate"}
# Only severity 5 > severity 1: the table is not monotone in between (glass_blur's sigma/iterations,
# spatter switches from water to mud at 4, snow's threshold, pixelate's ImageNet fractions at 28-32 px,
# fog, whose output tends to the rescaled fractal as the amount grows).
ENDS_ORDERED = {"glass_blur", "spatter", "snow", "pixelate", "fog"}


def test_registry_has_the_19_corruptions_with_tags() -> None:
    assert NAMES == sorted(BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS)
    assert registry.names("corruption", tag="benchmark") == sorted(BENCHMARK_CORRUPTIONS)
    assert registry.names("corruption", tag="extra") == sorted(EXTRA_CORRUPTIONS)


@pytest.mark.parametrize("table_name", sorted(TABLES))
@pytest.mark.parametrize("batch", sorted(BATCHES))
@pytest.mark.parametrize("name", NAMES)
def test_contract_determinism_and_severity_order(name: str, batch: str, table_name: str) -> None:
    x = BATCHES[batch]()
    corrupt = registry.get("corruption", name)
    table = TABLES[table_name]
    distortion = []
    for severity in range(1, 6):
        # One seed for every severity (common random numbers), so severities differ by their parameters only.
        out = corrupt(x, severity, table, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
        assert torch.isfinite(out).all() and float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        if severity in (1, 5):
            again = corrupt(x, severity, table, torch.Generator().manual_seed(0))
            assert torch.equal(out, again), "same generator state must give the same corruption"
        distortion.append(float((out - x).abs().mean()))
    if name == "saturate" and batch == "gray28":
        assert distortion == [0.0] * 5, "a gray pixel has no saturation: the reference returns it unchanged"
        return
    assert distortion[-1] > 0, "severity 5 must change the images"
    if name in NOT_ORDERED:
        return
    if name in ENDS_ORDERED:
        assert distortion[-1] > distortion[0]
        return
    tolerance = 0.05 if name == "fog" else 0.02  # fog's fractal is random per draw
    for weaker, stronger in zip(distortion, distortion[1:]):
        assert stronger >= weaker * (1 - tolerance), distortion


@pytest.mark.parametrize("name", NAMES)
def test_random_corruptions_depend_on_the_generator(name: str) -> None:
    x = smooth_rgb(2)
    table = TABLES["cifar10"]
    corrupt = registry.get("corruption", name)
    a = corrupt(x, 3, table, torch.Generator().manual_seed(0))
    b = corrupt(x, 3, table, torch.Generator().manual_seed(1))
    deterministic = {"defocus_blur", "zoom_blur", "gaussian_blur", "brightness", "contrast", "saturate", "pixelate", "jpeg_compression"}
    assert torch.equal(a, b) == (name in deterministic)


def test_batch_items_are_corrupted_independently_of_each_other() -> None:
    x = smooth_rgb(2)
    out = registry.get("corruption", "contrast")(x, 3, TABLES["cifar10"], torch.Generator())
    single = registry.get("corruption", "contrast")(x[1:], 3, TABLES["cifar10"], torch.Generator())
    torch.testing.assert_close(out[1:], single)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_imagenet_size_smoke(name: str) -> None:
    x = smooth_rgb(1, side=224)
    out = registry.get("corruption", name)(x, 5, TABLES["imagenet"], torch.Generator().manual_seed(0))
    assert out.shape == x.shape and 0 <= float(out.min()) and float(out.max()) <= 1


def test_224_smoke_fast_subset() -> None:
    x = smooth_rgb(1, side=224)
    for name in ("gaussian_noise", "motion_blur", "frost", "pixelate"):
        out = registry.get("corruption", name)(x, 2, TABLES["imagenet"], torch.Generator().manual_seed(0))
        assert out.shape == x.shape and float((out - x).abs().mean()) > 0


def test_bad_inputs_raise_robench_errors() -> None:
    fog = registry.get("corruption", "fog")
    with pytest.raises(ConfigError):
        fog(smooth_rgb(1), 6, TABLES["cifar10"], torch.Generator())
    with pytest.raises(DataError):
        fog(torch.rand(3, 32, 32), 1, TABLES["cifar10"], torch.Generator())
    with pytest.raises(DataError):
        fog(torch.rand(1, 2, 32, 32), 1, TABLES["cifar10"], torch.Generator())
    with pytest.raises(ConfigError):
        resolve_table("cifar100", 32)


def test_auto_table_by_image_size() -> None:
    """Tiny-ImageNet's 64 px get the table of the released Tiny-ImageNet-C (make_tinyimagenet_c.py),
    whose severity-5 noise is nearly twice CIFAR-10-C's (sigma .18 vs .10)."""
    assert resolve_table("auto", 28).name == "cifar10" and resolve_table("auto", 32).name == "cifar10"
    tiny = resolve_table("auto", 64)
    assert tiny.name == "tinyimagenet" and resolve_table("auto", 48).name == "tinyimagenet"
    assert tiny("gaussian_noise", 5) == 0.18 and tiny("shot_noise", 5) == 15 and tiny("saturate", 5) == (30, 0.2)
    assert tiny("elastic_transform", 5) == pytest.approx((64 * 0.16, 64 * 0.03, 64 * 0.02)) and tiny.frost_scale == 0.3
    assert resolve_table("auto", 96).name == "imagenet"
    assert resolve_table("imagenet", 32).name == "imagenet"


@pytest.mark.parametrize(("size", "small"), [(28, 16), (28, 8), (32, 19), (224, 134)])
@pytest.mark.parametrize("kind", ["box", "nearest"])
def test_resampling_matches_pillow_on_sharp_images(size: int, small: int, kind: str) -> None:
    """Random uint8 images (sharp, unlike natural ones) expose any off-by-one in the index maps."""
    import numpy as np
    from PIL import Image

    from robench.corruptions import _ops

    flt = {"box": Image.BOX, "nearest": Image.NEAREST}[kind]
    rng = np.random.default_rng(size + small)
    for source, target in ((size, small), (small, size)):
        image = rng.integers(0, 256, (source, source), dtype=np.uint8)
        expected = np.asarray(Image.fromarray(image).resize((target, target), flt), dtype=np.float64)
        x = torch.tensor(image, dtype=torch.float64)[None, None]
        matrix = _ops.pil_resample_matrix(source, target, kind)
        ours = _ops.apply_axes(x, matrix, matrix)[0, 0].numpy()
        assert np.abs(ours - expected).max() <= (1.0 if kind == "box" else 0.0)  # box: Pillow rounds to uint8


@pytest.mark.parametrize("name", NAMES)
def test_filters_ignore_tf32(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """CUDA convolves float32 in TF32 by default (and multiplies in it after set_float32_matmul_precision
    ("high")): glass blur's one-tap blur then floor(255 x) lowered half the 8-bit pixels by 1/255
    against the CPU. With TF32 emulated on the CPU, every corruption is unchanged."""
    from tests._devices import backend_setting, emulate_tf32

    x = smooth_rgb(2)
    corrupt = registry.get("corruption", name)
    expected = [corrupt(x, s, TABLES["cifar10"], torch.Generator().manual_seed(3)) for s in (1, 5)]
    emulate_tf32(monkeypatch)
    with backend_setting(torch.backends.cuda.matmul, "fp32_precision", "tf32"):
        for severity, want in zip((1, 5), expected):
            assert torch.equal(corrupt(x, severity, TABLES["cifar10"], torch.Generator().manual_seed(3)), want), severity


# JPEG runs libjpeg on the CPU on both devices (nvJPEG's DCT arithmetic differed from it by 3/255 in the mean).
CUDA_MEAN_TOLERANCE: dict[str, float] = {}


@pytest.mark.gpu
@pytest.mark.parametrize("table_name", sorted(TABLES))
@pytest.mark.parametrize("name", NAMES)
def test_cuda_with_a_cpu_generator_matches_cpu(name: str, table_name: str) -> None:
    # The draws come from the CPU generator, so the two devices corrupt with the same random numbers;
    # only float arithmetic differs (a few pixels may cross a threshold, e.g. spatter's liquid mask).
    x = smooth_rgb(4)
    corrupt = registry.get("corruption", name)
    for severity in (1, 5):
        cpu = corrupt(x, severity, TABLES[table_name], torch.Generator().manual_seed(3))
        cuda = corrupt(x.cuda(), severity, TABLES[table_name], torch.Generator().manual_seed(3))
        assert cuda.device.type == "cuda" and cuda.shape == cpu.shape and cuda.dtype == cpu.dtype
        difference = (cuda.cpu() - cpu).abs()
        assert float(difference.mean()) < CUDA_MEAN_TOLERANCE.get(name, 2e-3), (severity, float(difference.mean()))
        if name not in CUDA_MEAN_TOLERANCE:
            assert float((difference > 2 / 255).float().mean()) < 0.01, severity


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_cuda_generator_draws_on_the_gpu(name: str) -> None:
    x = smooth_rgb(4, side=64).cuda()
    corrupt = registry.get("corruption", name)
    a = corrupt(x, 3, TABLES["imagenet"], torch.Generator(device="cuda").manual_seed(0))
    b = corrupt(x, 3, TABLES["imagenet"], torch.Generator(device="cuda").manual_seed(0))
    assert a.device.type == "cuda" and torch.equal(a, b)
    assert torch.isfinite(a).all() and 0 <= float(a.min()) and float(a.max()) <= 1


@pytest.mark.gpu
def test_cuda_generator_noise_has_the_table_sigma() -> None:
    x = torch.full((64, 3, 32, 32), 0.5, device="cuda")  # no clipping at sigma <= 0.1
    sigma = TABLES["cifar10"]("gaussian_noise", 3)
    out = registry.get("corruption", "gaussian_noise")(x, 3, TABLES["cifar10"], torch.Generator(device="cuda").manual_seed(0))
    noise = out - x
    assert float(noise.std()) == pytest.approx(sigma, rel=0.02) and abs(float(noise.mean())) < 0.002
