"""The declared threat model: what is evaluated, against which adversary, on which data.

A threat model is data (YAML) validated into a frozen pydantic model. Extra keys are refused;
every error is reported with its path in the file (``evaluations.attacks[0].params.steps``).
The sha256 of the canonical JSON of the declared model goes into every results file.

Example (``threat_models/mnist-linf-0.3.yaml``)::

    schema_version: 1
    name: mnist-linf-0.3
    dataset: {manifest: mnist5k, split: test, n_examples: 1000}
    adversary: {goal: untargeted, knowledge: white-box, norm: Linf, eps: 0.3}
    evaluations:
      attacks:
        - name: pgd
          params: {steps: 40, restarts: 2}
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import re
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails

from robench import _yaml as strict_yaml
from robench._errors import ConfigError, DataError, short_repr
from robench._schema import StrictScalars, error_message

SCHEMA_VERSION: Literal[1] = 1
MAX_YAML_BYTES = 1_000_000

# Hendrycks & Dietterich (ICLR 2019): the 15 benchmark corruptions and the 4 held-out extras.
BENCHMARK_CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise",
    "defocus_blur", "glass_blur", "motion_blur", "zoom_blur",
    "snow", "frost", "fog", "brightness",
    "contrast", "elastic_transform", "pixelate", "jpeg_compression",
)  # fmt: skip
EXTRA_CORRUPTIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
ALL_CORRUPTIONS: tuple[str, ...] = BENCHMARK_CORRUPTIONS + EXTRA_CORRUPTIONS
# ImageNet-P / CIFAR-10-P test and validation perturbations.
TEST_PERTURBATIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "motion_blur", "zoom_blur", "snow",
    "brightness", "translate", "rotate", "tilt", "scale",
)  # fmt: skip
VALIDATION_PERTURBATIONS: tuple[str, ...] = ("speckle_noise", "gaussian_blur", "spatter", "shear")

_EPS_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?:/\s*([0-9]*\.?[0-9]+))?\s*$")


def parse_eps(value: Any) -> float:
    """Parse a perturbation radius: a number or a fraction string such as ``"8/255"``.

    Raises:
        ValueError: for anything that is not a finite number > 0.
    """
    # ValueError for a value of the wrong type too: parse_eps is a pydantic validator (Eps), where only
    # a ValueError becomes a one-line schema error (a TypeError would escape as a traceback)
    if isinstance(value, bool):
        raise ValueError(f"expected a number > 0 or a fraction like '8/255', got {value!r}")  # noqa: TRY004
    if isinstance(value, (int, float)):
        try:
            eps = float(value)
        except OverflowError:
            raise ValueError(f"eps {str(value)[:20]}... is too large") from None
    elif isinstance(value, str):
        match = _EPS_RE.match(value)
        if match is None:
            raise ValueError(f"expected a number > 0 or a fraction like '8/255', got {value!r}")
        numerator, denominator = match.groups()
        if denominator is not None and float(denominator) == 0:
            raise ValueError(f"division by zero in eps {value!r}")
        eps = float(numerator) / float(denominator) if denominator is not None else float(numerator)
    else:
        raise ValueError(f"expected a number > 0 or a fraction like '8/255', got {value!r}")  # noqa: TRY004
    if not math.isfinite(eps) or eps <= 0:
        raise ValueError(f"expected eps > 0 and finite, got {value!r}")
    return eps


def format_eps(eps: float) -> str:
    """Render ``eps`` as ``k/255`` when it is one (``0.0313725...`` -> ``"8/255"``)."""
    as_255 = Fraction(eps).limit_denominator(255)
    if as_255.denominator == 255 and abs(float(as_255) - eps) < 1e-12 and as_255.numerator != 0:
        return f"{as_255.numerator}/255"
    return f"{eps:g}"


Eps = Annotated[float, BeforeValidator(parse_eps)]
Severity = Annotated[int, Field(ge=1, le=5)]
NO_TRANSFORM = "none"  # a folder dataset's resize/center_crop turned off, the manifest's default included


def _image_size(value: Any) -> int | str:
    """A resize or crop: a whole number of pixels > 0, or ``none`` (any case: YAML reads ``None`` as a string)."""
    if isinstance(value, str) and value.lower() == NO_TRANSFORM:
        return NO_TRANSFORM
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"expected a whole number of pixels > 0, or none (not even the manifest's), got {short_repr(value)}")
    return value


ImageSize = Annotated[int | str, BeforeValidator(_image_size)]


class Schema(StrictScalars):
    """Base of every model a threat-model file is validated into: its sections and the parameters of
    its attacks and certifiers. Frozen, no extra keys, and strict scalars (:mod:`robench._schema`):
    no ``true``/``false`` for a number (pydantic's lax mode took ``steps: true`` as 1 step), nothing
    but ``true``/``false`` for a flag (``clean: "no"`` was read as true, ``compile: 1`` as true).
    No number is infinite or NaN: ``gamma: .inf`` passed a ``gt=0`` bound and ran the attack."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class Preprocessing(Schema):
    """Per-channel normalisation applied inside the model wrapper (pixel space stays [0,1])."""

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    @model_validator(mode="after")
    def _check(self) -> Preprocessing:
        if len(self.mean) != len(self.std):
            raise ValueError(f"mean and std must have the same length, got {len(self.mean)} and {len(self.std)}")
        if not self.mean:
            raise ValueError("mean and std need one value per channel, or one for all; got none")
        if any(s <= 0 for s in self.std):  # inf and NaN are refused by the config (Schema)
            raise ValueError(f"every std must be a finite number > 0, got {list(self.std)}")
        return self


class DatasetSpec(Schema):
    """Which data the evaluation runs on."""

    manifest: str = Field(min_length=1, description="name of a file in data_manifests/ (or a path)")
    split: str = "test"
    n_examples: int | None = Field(default=None, gt=0, description="first n examples of the split (after stride)")
    stride: int = Field(default=1, ge=1, description="take every stride-th example of the split (Cohen et al.'s skip)")
    preprocessing: Preprocessing = Preprocessing()
    resize: ImageSize | None = Field(default=None, description="resize the shorter side (folder datasets); none: not even the manifest's")
    center_crop: ImageSize | None = Field(default=None, description="center crop size (folder datasets); none: not even the manifest's")

    def transform(self, options: dict[str, Any], manifest: str = "?") -> tuple[int | None, int | None]:
        """``(resize, center_crop)`` applied to a folder dataset whose manifest (named ``manifest``)
        has the options ``options``: this spec's, else the manifest's defaults
        (``options.resize``/``options.center_crop``, checked by the same rule); ``"none"`` turns a
        default off (images already at the model's size).

        Raises:
            DataError: the manifest's default is not a whole number of pixels > 0 or none.
        """

        def pick(value: int | str | None, key: str) -> int | None:
            if value is None and options.get(key) is not None:
                try:
                    value = _image_size(options[key])
                except ValueError as exc:
                    raise DataError(f"manifest {manifest!r}: options.{key}: {exc}") from None
            return None if value in (None, NO_TRANSFORM) else int(value)

        return pick(self.resize, "resize"), pick(self.center_crop, "center_crop")


def whole_box_radius(norm: str, bounds: tuple[float, float], input_numel: int) -> float:
    """The radius whose ball around any input holds the whole input box: the box's diameter in
    ``norm``, ``high - low`` times 1 (Linf), sqrt(d) (L2) or d (L1) for inputs of d values."""
    width = bounds[1] - bounds[0]
    return {"Linf": width, "L2": width * math.sqrt(input_numel), "L1": width * input_numel}[norm]


def radius_box_error(
    norm: str, radius: float, bounds: tuple[float, float], input_shape: Sequence[int] | None, subject: str
) -> str | None:
    """Why a radius is meaningless under ``bounds``, or ``None``: its ball around any input holds the
    whole input box, whose diameter is :func:`whole_box_radius` (``high - low`` times 1 for Linf,
    sqrt(d) for L2, d for L1, for inputs of d = prod(input_shape) values). ``subject`` starts the
    message (``L2 eps 30``). Without ``input_shape`` only Linf's diameter is known: ``None`` for the others."""
    low, high = bounds
    if norm == "Linf":
        return None if radius <= high - low else f"{subject} exceeds the width of the input bounds {high - low:g}"
    if input_shape is None:
        return None
    d = math.prod(input_shape)
    limit = whole_box_radius(norm, bounds, d)
    if radius <= limit:
        return None
    factor = f"sqrt({d})" if norm == "L2" else str(d)
    return (f"{subject} exceeds {limit:g}, the {norm} diameter of the input box "
            f"({high - low:g} x {factor} for inputs of shape {list(input_shape)}): its ball around any input holds every input")


class Adversary(Schema):
    """The adversary's goal, knowledge and budget. ``eps`` is in pixel units of ``bounds``."""

    goal: Literal["untargeted", "targeted"] = "untargeted"
    knowledge: Literal["white-box", "black-box"] = "white-box"
    norm: Literal["Linf", "L2", "L1"] = "Linf"
    eps: Eps
    bounds: tuple[float, float] = (0.0, 1.0)
    targets: Literal["random", "least_likely"] = Field(
        default="random", description="how targets are chosen when goal is targeted"
    )

    @model_validator(mode="after")
    def _check(self) -> Adversary:
        low, high = self.bounds
        if not low < high:  # inf and NaN are refused by the config (Schema)
            raise ValueError(f"bounds must be finite with low < high, got {list(self.bounds)}")
        if low < 0.0 or high > 1.0:
            # robench's pixels are in [0, 1] (normalisation is inside the model wrapper): wider bounds
            # would let an attack feed the model values no image can have
            raise ValueError(f"bounds must lie within the pixel range [0, 1], got {list(self.bounds)}")
        problem = self.box_error()
        if problem is not None:
            raise ValueError(problem)
        return self

    def box_error(self, input_shape: Sequence[int] | None = None) -> str | None:
        """Why ``eps`` is meaningless under ``bounds``, or ``None`` (:func:`radius_box_error`). Without
        the shape only Linf's is known (an L2 eps of 1e300 ran, to fail on NaN logits)."""
        return radius_box_error(self.norm, self.eps, self.bounds, input_shape, f"{self.norm} eps {self.eps:g}")


class EvaluationSpec(Schema):
    """A named, parameterised entry of a section (an attack or a certifier).

    ``params`` are validated against the registered entry's parameter model when the threat model
    is loaded; ``id`` tells apart two entries of the same name (default: the name).
    """

    name: str = Field(min_length=1)
    id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]+$")
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """Unique label of this entry within its section."""
        return self.id or self.name


def _names(allowed: tuple[str, ...], groups: dict[str, tuple[str, ...]]) -> Any:
    def check(value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            if value not in groups:
                raise ValueError(f"expected a list of names or one of {sorted(groups)}, got {value!r}")
            return groups[value]
        if not isinstance(value, (list, tuple)) or not value:
            raise ValueError(f"expected a non-empty list of names or one of {sorted(groups)}, got {value!r}")
        unknown = [v for v in value if v not in allowed]
        if unknown:
            raise ValueError(f"unknown names {unknown}; expected names from {list(allowed)}")
        if len(set(value)) != len(value):
            raise ValueError(f"duplicate names in {list(value)}")
        return tuple(value)

    return BeforeValidator(check)


CorruptionNames = Annotated[
    tuple[str, ...],
    _names(ALL_CORRUPTIONS, {"benchmark": BENCHMARK_CORRUPTIONS, "extra": EXTRA_CORRUPTIONS, "all": ALL_CORRUPTIONS}),
]
PerturbationNames = Annotated[
    tuple[str, ...],
    _names(
        TEST_PERTURBATIONS + VALIDATION_PERTURBATIONS,
        {
            "test": TEST_PERTURBATIONS,
            "validation": VALIDATION_PERTURBATIONS,
            "all": TEST_PERTURBATIONS + VALIDATION_PERTURBATIONS,
        },
    ),
]


RandomDraws = Annotated[
    Literal["cpu", "device"],
    Field(
        description="where generated corruptions / perturbations draw their random numbers: cpu (the same images "
        "on every device) or device (drawn on the GPU: no host-side draws or copies, but another random stream)"
    ),
]


Quantize = Literal["none", "uint8", "jpeg85"]
"""How a generated sweep stores each corrupted batch before classifying it
(:func:`robench.corruptions._quantize.quantize_as_released`)."""


class CorruptionsSpec(Schema):
    """Common-corruption sweep: generated on the device, or read from released files."""

    source: Literal["generated", "released"] = "generated"
    released_manifest: str | None = Field(default=None, description="manifest of the released set")
    table: Literal["auto", "cifar10", "tinyimagenet", "imagenet"] = Field(
        default="auto", description="severity table; auto picks by image size (<= 32 px: cifar10, <= 64 px: tinyimagenet, else imagenet)"
    )
    corruptions: CorruptionNames = BENCHMARK_CORRUPTIONS
    severities: tuple[Severity, ...] = (1, 2, 3, 4, 5)
    n_examples: int | None = Field(default=None, gt=0, description="overrides dataset.n_examples")
    rng: RandomDraws = "cpu"
    quantize: Quantize = Field(
        default="none",
        description="store each generated corrupted batch as the released sets did before classifying it: none "
        "(floating point), uint8 (truncated to 8 bits, np.uint8(255 x), as make_cifar_c.py stored CIFAR-10-C) or "
        "jpeg85 (uint8, then JPEG at quality 85, as make_imagenet_c.py saved ImageNet-C)",
    )

    @model_validator(mode="after")
    def _check(self) -> CorruptionsSpec:
        if self.source == "released" and not self.released_manifest:
            raise ValueError("source 'released' needs released_manifest (e.g. cifar10c)")
        if self.source == "released" and self.quantize != "none":
            raise ValueError(f"quantize {self.quantize!r} applies to generated corruptions only: released images are stored quantised already")
        if not self.severities or len(set(self.severities)) != len(self.severities):
            raise ValueError(f"severities must be a non-empty list without repeats, got {list(self.severities)}")
        return self


class StabilitySpec(Schema):
    """Flip-rate stability under perturbation sequences (ImageNet-P / CIFAR-10-P)."""

    source: Literal["generated", "released"] = "generated"
    released_manifest: str | None = None
    perturbations: PerturbationNames = TEST_PERTURBATIONS
    difficulty: int = Field(default=1, ge=1, le=10, description="frame stride for sequential perturbations")
    n_examples: int | None = Field(default=None, gt=0)
    rng: RandomDraws = "cpu"
    baseline: dict[str, Annotated[float, Field(gt=0, le=1, strict=True)]] | None = Field(
        default=None, description="baseline flip probabilities per perturbation, in (0, 1], for FR and mFR"
    )

    @model_validator(mode="after")
    def _check(self) -> StabilitySpec:
        if self.source == "released" and not self.released_manifest:
            raise ValueError("source 'released' needs released_manifest (e.g. cifar10p)")
        return self

    @field_validator("baseline")
    @classmethod
    def _known_baseline(cls, baseline: dict[str, float] | None) -> dict[str, float] | None:
        # a known perturbation that is not evaluated gets the section's warning; a misspelt one left mFR
        # uncomputed with nothing but that warning
        known = TEST_PERTURBATIONS + VALIDATION_PERTURBATIONS
        unknown = sorted(set(baseline or {}) - set(known))
        if unknown:
            raise ValueError(f"unknown perturbations {unknown}; expected names from {list(known)}")
        return baseline


class CalibrationSpec(Schema):
    """Calibration metrics, clean and under the attacks and corruptions of this threat model."""

    n_bins: int = Field(default=15, gt=0, le=1000)
    conditions: tuple[Literal["clean", "attacks", "corruptions"], ...] = ("clean", "attacks", "corruptions")
    temperature_scaling: bool = False
    holdout_fraction: float = Field(default=0.2, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> CalibrationSpec:
        # no condition: the section ran and recorded nothing, with status success
        if not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise ValueError(f"conditions must be a non-empty list without repeats, got {list(self.conditions)}")
        return self


SECTION_ORDER = ("clean", "attacks", "corruptions", "stability", "certification", "calibration")
"""The order the runner runs the sections in (calibration last: it reads the others' hand-offs)."""


class Evaluations(Schema):
    """The evaluations to run, by section. Clean accuracy always runs unless disabled."""

    clean: bool = True
    attacks: tuple[EvaluationSpec, ...] = ()
    corruptions: CorruptionsSpec | None = None
    stability: StabilitySpec | None = None
    calibration: CalibrationSpec | None = None
    certification: tuple[EvaluationSpec, ...] = ()

    @field_validator("attacks", "certification")
    @classmethod
    def _unique_keys(cls, specs: tuple[EvaluationSpec, ...]) -> tuple[EvaluationSpec, ...]:
        keys = [s.key for s in specs]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"entries share the id {duplicates}; give each an `id`")
        return specs

    @model_validator(mode="after")
    def _something_to_evaluate(self) -> Evaluations:
        if not self.sections():  # a run of nothing "succeeded" with zero evaluations
            raise ValueError("nothing to evaluate: clean is false and no section is declared")
        return self

    def sections(self) -> list[str]:
        """Names of the sections that are declared, in the order the runner runs them (:data:`SECTION_ORDER`)."""
        present = {
            "clean": self.clean,
            "attacks": bool(self.attacks),
            "corruptions": self.corruptions is not None,
            "stability": self.stability is not None,
            "certification": bool(self.certification),
            "calibration": self.calibration is not None,
        }
        return [name for name in SECTION_ORDER if present[name]]


def _claimed_radius(value: Any) -> Any:
    parse_eps(value)  # a claimed eps is spelled like the adversary's: a number > 0 or "8/255"
    return value  # kept as written: the canonical JSON (and sha256) holds what the file says


def _claimed_fraction(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:20] + "..."
        raise ValueError(f"expected a fraction in [0, 1] (0.6 for 60%), got {shown}")
    return value


ClaimedFraction = Annotated[int | float, BeforeValidator(_claimed_fraction)]


class Claims(Schema):
    """What the model card claims, checked against the results by the report checklist
    (:mod:`robench.report.checklist`); every key is optional and no other key is accepted.

    Only the keys given are serialised, with their values as written, so that a threat model's
    canonical JSON (and its sha256) is that of the claims in the file.
    """

    source: str | None = Field(default=None, description="where the claims come from (free text)")
    dataset: str | None = Field(default=None, description="dataset manifest name of the claims (cifar10)")
    norm: Literal["Linf", "L2", "L1"] | None = None
    eps: Annotated[int | float | str, BeforeValidator(_claimed_radius)] | None = Field(
        default=None, description="the claimed radius: a number > 0 or a fraction like '8/255'"
    )
    clean_accuracy: ClaimedFraction | None = None
    robust_accuracy: ClaimedFraction | None = None
    certified_accuracy: ClaimedFraction | None = None
    mean_corruption_accuracy: ClaimedFraction | None = None
    other_threats: list[str] | None = Field(
        default=None, description="further claims of robustness outside the threat model (['L2:0.5', 'corruptions'])"
    )

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:  # the checklist would read it as a claim of "None"
            raise ValueError("a claim cannot be null: give a value or leave the key out")
        return value

    @model_serializer(mode="wrap")
    def _given(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {key: value for key, value in handler(self).items() if key in self.model_fields_set}


class ThreatModel(Schema):
    """A declared threat model (see the module docstring)."""

    schema_version: Literal[1] = SCHEMA_VERSION
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    description: str = ""
    dataset: DatasetSpec
    adversary: Adversary | None = None
    evaluations: Evaluations = Evaluations()
    claims: Claims = Field(
        default_factory=Claims, description="what the model card claims (norm, eps, robust_accuracy), for checks"
    )

    @model_validator(mode="after")
    def _check(self) -> ThreatModel:
        if self.evaluations.attacks and self.adversary is None:
            raise ValueError("attacks are declared but no adversary (norm, eps) is given")
        return self

    def canonical_json(self) -> str:
        """Canonical JSON of the declared model: sorted keys, no whitespace."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    @property
    def sha256(self) -> str:
        """sha256 of :meth:`canonical_json`; identifies the threat model in results."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def resolved_params(self, section: str, spec: EvaluationSpec) -> BaseModel | None:
        """Validated parameters of ``spec`` in ``section`` (``attacks`` or ``certification``).

        Raises:
            ConfigError: with the field path of the first invalid parameter.
        """
        errors = _param_errors(self, only=(section, spec))
        if errors:
            raise ConfigError(errors[0])
        from robench.registry import registry

        return registry.validate_params(SECTION_KIND[section], spec.name, spec.params)


NOT_COMPUTED = frozenset({"description", "claims"})
"""Fields of a threat model that no number depends on: free text, and the model card's claims,
which the report checks against the results when it renders."""


def computation_sha256(dumped: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a dumped threat model (``ThreatModel.model_dump(mode="json")``,
    as results hold it) without :data:`NOT_COMPUTED`: what ``--resume`` compares, so an edited
    description or claim does not refuse a resume while any change to data, adversary or
    evaluations does."""
    kept = {key: value for key, value in dumped.items() if key not in NOT_COMPUTED}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def applicable_fields(data: dict[str, Any]) -> dict[str, Any]:
    """A resolved threat model's JSON data (:meth:`ThreatModel.model_dump`, as results record it) less
    the fields its other settings make inapplicable: the adversary's ``targets`` unless its goal is
    targeted, calibration's ``holdout_fraction`` without temperature scaling, the ``released_manifest``
    of generated corruptions or sequences, and the random draws (and corruption severity table and quantisation) of
    released ones. For reading only: :attr:`ThreatModel.sha256` stays over the whole resolved model."""
    data = copy.deepcopy(data)
    adversary, evaluations = data.get("adversary"), data.get("evaluations") or {}
    if isinstance(adversary, dict) and adversary.get("goal") != "targeted":
        adversary.pop("targets", None)
    calibration = evaluations.get("calibration")
    if isinstance(calibration, dict) and not calibration.get("temperature_scaling"):
        calibration.pop("holdout_fraction", None)
    for section, generation_only in (("corruptions", ("rng", "table", "quantize")), ("stability", ("rng",))):
        spec = evaluations.get(section)
        if isinstance(spec, dict):
            for key in generation_only if spec.get("source") == "released" else ("released_manifest",):
                spec.pop(key, None)
    return data


SECTION_KIND = {"attacks": "attack", "certification": "certifier"}
"""The registry kind of each section whose entries name registered objects."""


class ThreatModelError(ConfigError):
    """A threat-model file is invalid; ``errors`` lists one line per problem with its path."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        more = f" (and {len(errors) - 1} more; run `robench validate {source}`)" if len(errors) > 1 else ""
        super().__init__(f"{source}: {errors[0]}{more}")


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = str(part) if re.fullmatch(r"[A-Za-z0-9_.+-]+", str(part)) else repr(part)
            out += ("." if out else "") + text
    return out or "<root>"


def _describe(error: ErrorDetails) -> str:
    message = error_message(error)
    if error["type"] == "extra_forbidden":
        return "unknown key (not part of the schema)"
    if error["type"] == "missing":
        return "required key is missing"
    got = error.get("input")
    if error["type"] not in ("value_error",) and not isinstance(got, (dict, list)):
        message += f" (got {got!r})"
    return message


def schema_error_lines(exc: ValidationError, prefix: tuple[Any, ...] = (), *, unknown_keys: bool = True) -> list[str]:
    """Each error of a threat-model schema check as ``path.in.file: message``; without
    ``unknown_keys``, keys the schema does not know are not errors (a recorded threat model of
    another version, :func:`robench.results.load_results`)."""
    return [f"{_path(prefix + tuple(e['loc']))}: {_describe(e)}" for e in exc.errors()
            if unknown_keys or e["type"] != "extra_forbidden"]


def _param_errors(tm: ThreatModel, only: tuple[str, EvaluationSpec] | None = None) -> list[str]:
    """Check names and parameters of attacks and certifiers against the registry."""
    errors: list[str] = []
    for section, kind in SECTION_KIND.items():
        for index, spec in enumerate(getattr(tm.evaluations, section)):
            if only is not None and (section, spec) != only:
                continue
            names, params = _entry_errors(kind, spec.name, spec.params, ("evaluations", section, index))
            errors += names + params
            if not names and not params:
                errors += _threat_errors(kind, spec, tm.adversary, ("evaluations", section, index))
    return errors


def _threat_errors(kind: str, spec: EvaluationSpec, adversary: Adversary | None, where: tuple[Any, ...]) -> list[str]:
    """An attack or certifier that cannot run under the declared adversary (``ddn`` minimises L2
    only, ``autoattack`` is untargeted, ``square`` has no L1, IBP needs an eps), found when the file is
    validated rather than when the run reaches it: the entry's optional
    ``check_threat(params, adversary)`` raises :class:`~robench.ConfigError`."""
    from robench.registry import registry

    entry = registry.get(kind, spec.name)
    check = getattr(entry, "check_threat", None)
    if check is None:
        return []
    try:
        check(registry.validate_params(kind, spec.name, spec.params), adversary)
    except ConfigError as exc:
        return [f"{_path(where + ('name',))}: {exc}"]
    return []


def _entry_errors(kind: str, name: str, params: dict[str, Any], where: tuple[Any, ...]) -> tuple[list[str], list[str]]:
    """``(name errors, parameter errors)`` of one attack or certifier entry against the registry."""
    from robench.registry import registry

    try:
        registry.validate_params(kind, name, params)
    except ValidationError as exc:
        return [], schema_error_lines(exc, where + ("params",))
    except ConfigError as exc:
        return [f"{_path(where + ('name',))}: {exc}"], []
    return [], []


def _read_yaml(path: Path) -> Any:
    from robench._io import read_text_capped

    text = read_text_capped(path, MAX_YAML_BYTES, "threat model")
    try:
        return strict_yaml.load(text, "threat models")
    except RecursionError:
        raise ConfigError(f"{path}: nested too deeply to be a threat model") from None
    except yaml.YAMLError as exc:
        where, problem = strict_yaml.where_and_problem(exc)
        raise ThreatModelError(str(path), [f"{where}malformed YAML: {problem}"]) from None


def builtin_dir() -> Path:
    """Folder of the threat models shipped with robench."""
    return Path(__file__).parent / "threat_models"


def resolve_path(name_or_path: str | Path) -> Path:
    """A path as given, or the shipped threat model of that name (``cifar10-linf-8_255``)."""
    path = Path(name_or_path)
    if path.exists() or path.suffix in (".yaml", ".yml") or "/" in str(name_or_path):
        return path
    shipped = builtin_dir() / f"{name_or_path}.yaml"
    if shipped.exists():
        return shipped
    import difflib

    names = sorted(p.stem for p in builtin_dir().glob("*.yaml"))
    close = difflib.get_close_matches(str(name_or_path), names, n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else f" (shipped: {', '.join(names)})"
    raise ConfigError(f"no threat-model file or shipped threat model named {str(name_or_path)!r}{hint}")


def validate_data(data: Any, source: str = "<threat model>") -> tuple[ThreatModel | None, list[str]]:
    """Validate parsed YAML data; return the model (or None) and every error with its path."""
    if not isinstance(data, dict):
        return None, [f"<root>: expected a mapping of keys, got {type(data).__name__}"]
    try:
        tm = ThreatModel.model_validate(data)
    except ValidationError as exc:
        # Schema errors do not hide the registry and manifest errors of the parts that are well formed:
        # check those on the raw data, so that one pass lists every error.
        errors = schema_error_lines(exc)
        return None, errors + _raw_errors(data, {e.split(": ", 1)[0] for e in errors})
    errors = _param_errors(tm) + _dataset_errors(_manifests_of(tm.model_dump())) + _eps_errors(tm)
    return (None if errors else tm), errors


def _eps_errors(tm: ThreatModel) -> list[str]:
    """An L2 or L1 eps whose ball holds the whole input box (:meth:`Adversary.box_error`), where the
    dataset's manifest gives the shape of its inputs (the run checks the loaded data's shape too)."""
    from robench._errors import RobenchError
    from robench.data.manifest import load_manifest

    if tm.adversary is None or tm.adversary.norm == "Linf" or tm.dataset.resize is not None:
        return []
    try:
        manifest, _ = load_manifest(tm.dataset.manifest)
    except RobenchError:
        return []  # reported by _dataset_errors
    shape = manifest.input_shape
    if shape is not None and tm.dataset.center_crop is not None:  # "none": the images' own size, not known here
        crop = tm.dataset.center_crop
        shape = None if crop == NO_TRANSFORM else (shape[0], int(crop), int(crop))
    problem = None if shape is None else tm.adversary.box_error(shape)
    return [] if problem is None else [f"adversary.eps: {problem}"]


def _manifests_of(data: dict[str, Any]) -> dict[str, Any]:
    """``dataset.manifest``, ``dataset.split`` and each ``evaluations.<section>.released_manifest`` of
    (raw or validated) threat-model data, by path; a value that is not a string is left out."""
    out: dict[str, Any] = {}
    dataset = data.get("dataset")
    if isinstance(dataset, dict) and isinstance(dataset.get("manifest"), str) and dataset["manifest"]:
        out["dataset.manifest"] = dataset["manifest"]
        split = dataset.get("split", DatasetSpec.model_fields["split"].default)
        if isinstance(split, str):
            out["dataset.split"] = split
    evaluations = data.get("evaluations")
    for section in ("corruptions", "stability"):
        spec = evaluations.get(section) if isinstance(evaluations, dict) else None
        if isinstance(spec, dict) and isinstance(spec.get("released_manifest"), str):
            out[f"evaluations.{section}.released_manifest"] = spec["released_manifest"]
    return out


def _raw_errors(data: dict[str, Any], failed: set[str]) -> list[str]:
    """Registry and manifest errors of raw data whose schema check failed, leaving out every path
    (and everything under a path) that already has a schema error."""

    def reported(path: str) -> bool:
        return any(path == f or path.startswith((f + ".", f + "[")) or f.startswith((path + ".", path + "[")) for f in failed)

    errors: list[str] = []
    evaluations = data.get("evaluations")
    for section, kind in SECTION_KIND.items():
        entries = evaluations.get(section) if isinstance(evaluations, dict) else None
        for index, entry in enumerate(entries if isinstance(entries, list) else []):
            where = ("evaluations", section, index)
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or reported(_path(where + ("name",))):
                continue
            params = entry.get("params", {})
            names, wrong = _entry_errors(kind, entry["name"], params if isinstance(params, dict) else {}, where)
            errors += names
            if isinstance(params, dict) and not reported(_path(where + ("params",))):
                errors += wrong
    manifests = {k: v for k, v in _manifests_of(data).items() if not reported(k)}
    if "dataset.manifest" not in manifests:
        manifests.pop("dataset.split", None)
    return errors + _dataset_errors(manifests)


def _dataset_errors(manifests: dict[str, str]) -> list[str]:
    """Check that the dataset manifests exist and have the declared split (see :func:`_manifests_of`)."""
    from robench.data.manifest import load_manifest

    errors: list[str] = []
    if "dataset.manifest" in manifests:
        try:
            manifest, _ = load_manifest(manifests["dataset.manifest"])
        except ConfigError as exc:
            errors.append(f"dataset.manifest: {exc}")
        else:
            split = manifests.get("dataset.split")
            if split is not None and split not in manifest.splits:
                errors.append(f"dataset.split: manifest {manifest.name!r} has no split {split!r}; it has {sorted(manifest.splits)}")
    for path, name in manifests.items():
        if path.endswith(".released_manifest"):
            try:
                load_manifest(name)
            except ConfigError as exc:
                errors.append(f"{path}: {exc}")
    return errors


def validate_file(path: str | Path) -> list[str]:
    """Every error of a threat-model file, each as ``path.in.file: message``; empty when valid."""
    resolved: Path | None = None
    try:
        resolved = resolve_path(path)
        data = _read_yaml(resolved)
    except ThreatModelError as exc:
        return exc.errors
    except ConfigError as exc:
        # callers put the file's name before each error: do not name it twice
        return [str(exc).removeprefix(f"{resolved}: ") if resolved is not None else str(exc)]
    return validate_data(data, str(path))[1]


def load_threat_model(path: str | Path) -> ThreatModel:
    """Load and validate a threat model from a YAML file or a shipped name.

    Raises:
        ThreatModelError: the file is malformed or invalid (every error listed in ``.errors``).
        ConfigError: the file cannot be read.
    """
    resolved = resolve_path(path)
    tm, errors = validate_data(_read_yaml(resolved), str(resolved))
    if errors or tm is None:
        raise ThreatModelError(str(resolved), errors)
    return tm
