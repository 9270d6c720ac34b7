"""The one results schema: a versioned, typed log of a run, written atomically.

A run writes ``results.json`` when it starts (status ``started``), after every evaluation, and
at the end (``success`` or ``error``), so a crashed run still leaves a valid file.
"""

from __future__ import annotations

import math
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator, model_validator

from robench._errors import ConfigError
from robench._schema import StrictScalars, error_message
from robench.stats import clopper_pearson

SCHEMA_VERSION: Literal[2] = 2
"""Version written. 2: a :class:`Check` may be ``inconclusive``. Version-1 files still load
(every version-1 file is a valid version-2 one); an older robench refuses a version-2 file by its
version instead of failing on a check status it does not know."""
READABLE_SCHEMA_VERSIONS = (1, 2)
ConditionValue = str | int | float | bool | None
CheckStatus = Literal["pass", "warn", "fail", "inconclusive"]


class _Model(StrictScalars):
    """The results' models: no extra keys, strict scalars (a record's ``n: true`` is not 1)."""

    model_config = ConfigDict(extra="forbid")


def _decimals(*numbers: float | None) -> int:
    """Decimals that give the largest of ``numbers`` 4 significant digits, for a value and its
    interval ends alike (``0.05164 [0.04077, 0.06390]``, not ``[0.04077, 0.0639]``)."""
    largest = max((abs(v) for v in numbers if v is not None and v != 0), default=0.0)
    if largest == 0 or largest >= 1e6:
        return 0
    return min(8, max(0, 3 - math.floor(math.log10(largest))))


def _fixed(number: float, digits: int) -> str:
    return f"{number:.4g}" if abs(number) >= 1e6 else f"{number:.{digits}f}"


def signed_difference(delta: float, *values: float | None) -> str:
    """``delta`` with its sign, written to the decimals :meth:`MetricRecord.formatted` gives ``values``
    (the two numbers it is the difference of): ``+0.0002`` beside ``0.4356``, not ``+0.0001903``."""
    text = _fixed(delta, _decimals(*values, delta))
    if float(text) == 0:  # smaller than the values' last decimal: no sign to show
        return text.removeprefix("-")
    return text if text.startswith("-") else f"+{text}"


class MetricRecord(_Model):
    """One number with its provenance.

    Attributes:
        evaluation: Key of the evaluation that produced it (``clean``, ``attacks/pgd``).
        name: What it measures (``accuracy``, ``robust_accuracy``, ``median_perturbation_norm``...).
        value: The number (a fraction for accuracies, not a percentage).
        n: Number of examples behind it (``None`` only for non-sample quantities).
        ci_low: Lower end of the 95% interval, when it has one.
        ci_high: Upper end of the 95% interval.
        condition: Where it was measured: attack, eps, corruption, severity, class...
        unit: ``fraction``, ``l2``, ``linf``, ``seconds``...
        interval: How the interval was computed (``clopper-pearson``).
    """

    evaluation: str
    name: str
    value: float | None
    n: int | None = Field(default=None, ge=0)
    ci_low: float | None = None
    ci_high: float | None = None
    condition: dict[str, ConditionValue] = Field(default_factory=dict)
    unit: str = ""
    interval: str | None = None

    @model_validator(mode="after")
    def _check(self) -> MetricRecord:
        # JSON has no NaN or inf: pydantic would write them as null, and the file would not load back
        for field, number in (("value", self.value), ("ci_low", self.ci_low), ("ci_high", self.ci_high)):
            if number is not None and not math.isfinite(number):
                raise ValueError(f"metric {self.name!r} has non-finite {field} {number}")
        if (self.ci_low is None) != (self.ci_high is None):
            raise ValueError("ci_low and ci_high are given together")
        if self.ci_low is not None and self.ci_high is not None and self.ci_low > self.ci_high:  # a comparison read them as disjoint
            raise ValueError(f"metric {self.name!r} has ci_low {self.ci_low} above ci_high {self.ci_high}")
        for key in ("eps", "radius"):  # the report, exports and comparisons compute with them
            given = self.condition.get(key)
            if given is not None and (isinstance(given, bool) or not isinstance(given, (int, float)) or not abs(given) < 1e308):
                raise ValueError(f"metric {self.name!r} has condition {key} {given!r}, expected a number")
        if self.unit in ("fraction", "probability"):  # shares: a value outside [0, 1] is a damaged file, not a number
            for field, number in (("value", self.value), ("ci_low", self.ci_low), ("ci_high", self.ci_high)):
                if number is not None and not -1e-9 <= number <= 1 + 1e-9:
                    raise ValueError(f"metric {self.name!r} is a {self.unit} but its {field} is {number}")
        return self

    def formatted(self, artifacts: dict[str, Any] | None = None) -> tuple[str, str]:
        """``(value, 95% interval)`` as text, the one way every summary writes a record: proportions
        (``fraction``) in percent with one decimal, probabilities (calibration errors) in percent with
        two, other units as numbers (4 significant digits); ``""`` for a missing interval.

        A value that is 0 by construction (:func:`not_certifiable`) is written as that, with no
        interval; ``artifacts`` (its evaluation's, see :meth:`Results.formatted`) give the radii in the text.
        """
        note = not_certifiable(self, artifacts)
        if note is not None:
            return note, ""
        if self.unit in ("fraction", "probability"):
            digits = 1 if self.unit == "fraction" else 2
            value = "–" if self.value is None else f"{100 * self.value:.{digits}f}%"
            interval = (
                f"[{100 * self.ci_low:.{digits}f}, {100 * self.ci_high:.{digits}f}]"
                if self.ci_low is not None and self.ci_high is not None else ""
            )  # fmt: skip
            return value, interval
        digits = _decimals(self.value, self.ci_low, self.ci_high)
        value = "–" if self.value is None else _fixed(self.value, digits)
        interval = f"[{_fixed(self.ci_low, digits)}, {_fixed(self.ci_high, digits)}]" if self.ci_low is not None and self.ci_high is not None else ""
        capped = capped_note(self, artifacts)
        return (f"{value} ({capped})" if capped else value), interval

    @classmethod
    def proportion(
        cls,
        evaluation: str,
        name: str,
        successes: int,
        n: int,
        condition: dict[str, ConditionValue] | None = None,
    ) -> MetricRecord:
        """A proportion ``successes / n`` with its 95% Clopper-Pearson interval."""
        low, high = clopper_pearson(int(successes), int(n))
        return cls(
            evaluation=evaluation,
            name=name,
            value=successes / n if n else None,
            n=int(n),
            ci_low=low,
            ci_high=high,
            condition=condition or {},
            unit="fraction",
            interval="clopper-pearson",
        )

    @classmethod
    def shares(
        cls,
        evaluation: str,
        name: str,
        shares: Any,
        condition: dict[str, ConditionValue] | None = None,
    ) -> MetricRecord:
        """A proportion record of per-example shares (a 1-d tensor): 0/1 flags (the exact
        Clopper-Pearson interval of :meth:`proportion`), or a randomized model's pass means (their
        mean; the interval is Clopper-Pearson on the rounded count, an approximation, and says so)."""
        n = int(shares.numel())
        if all_binary(shares):
            return cls.proportion(evaluation, name, int(shares.sum()), n, condition)
        mean = float(shares.double().mean())
        record = cls.proportion(evaluation, name, round(mean * n), n, condition)
        return record.model_copy(update={"value": mean, "interval": "clopper-pearson (rounded pass-mean count)"})


NOT_CERTIFIABLE = "n/a: not certifiable with these settings"


def not_certifiable(record: MetricRecord, artifacts: dict[str, Any] | None = None) -> str | None:
    """The text that replaces a record's value when it is 0 by construction, else ``None``.

    The one decision for every place that writes a record (:meth:`MetricRecord.formatted`, the
    record labels, the checklist): a certified accuracy whose condition holds ``certifiable: False``
    (:func:`robench.certify._records.add_headline_l2`: the threat model needs an L2 radius beyond the
    largest the certifier's settings can reach; :func:`~robench.certify._records.add_curve`: a grid
    radius beyond it) measures the settings, not the model, and its
    Clopper-Pearson interval would suggest a sampling uncertainty it does not have. ``artifacts``
    (the evaluation's) add the two radii: ``... (needs L2 r = 8.4 > ceiling 0.6755)``.
    """
    if record.condition.get("certifiable") is not False:
        return None
    needed, ceiling = ((artifacts or {}).get(k) for k in ("threat_radius_l2", "max_certified_radius"))
    if isinstance(record.condition.get("radius"), (int, float)):  # a grid radius past the ceiling: its own r
        needed = record.condition["radius"]
    if isinstance(needed, (int, float)) and isinstance(ceiling, (int, float)):
        return f"{NOT_CERTIFIABLE} (needs L2 r = {needed:.4g} > ceiling {ceiling:.4g})"
    return NOT_CERTIFIABLE


def capped_note(record: MetricRecord, artifacts: dict[str, Any] | None = None) -> str | None:
    """``capped: k of n at the ceiling r`` for smoothing's average certified radius when the budget
    caps it (:func:`robench.certify.smoothing.is_capped`: too many certificates at the largest radius its
    settings allow (the budget, not the model, then sets the ACR); ``None`` otherwise or without the
    evaluation's per-example records."""
    if record.name != "average_certified_radius" or not artifacts or artifacts.get("certifier") != "smoothing":
        return None
    from robench.certify.smoothing import capped_count, is_capped

    examples, ceiling = artifacts.get("examples"), artifacts.get("max_certified_radius")
    if not isinstance(examples, list) or not examples or not isinstance(ceiling, (int, float)):
        return None
    k = capped_count(examples, float(ceiling))
    return f"capped: {k} of {len(examples)} at the ceiling {ceiling:.4g}" if is_capped(k, len(examples)) else None


class Cost(_Model):
    """What an evaluation cost. Passes count examples (a batch of 256 is 256 passes); ``batch_size``
    is the examples per batch of the evaluation's largest stage; ``wall_time_s`` includes the work
    outside its batches, and a resumed batch counts the time it took when it ran."""

    wall_time_s: float = 0.0
    forward_passes: int = Field(default=0, ge=0)
    backward_passes: int = Field(default=0, ge=0)
    device: str = "cpu"
    precision: str = "fp32"
    batch_size: int | None = Field(default=None, ge=1)
    batches: int = Field(default=0, ge=0)
    resumed_batches: int = Field(default=0, ge=0)
    oom_retries: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _check(self) -> Cost:
        if not math.isfinite(self.wall_time_s):
            raise ValueError(f"cost wall_time_s is not finite ({self.wall_time_s})")
        if self.wall_time_s < 0:
            raise ValueError(f"cost wall_time_s is negative ({self.wall_time_s})")
        return self


class Check(_Model):
    """A sanity check with a verdict and the evidence behind it (e.g. gradient masking).

    ``status``: ``pass`` (the check could have found the problem and did not), ``warn`` or
    ``fail`` (it found it), or ``inconclusive`` (schema version 2): it could not have found the
    problem, e.g. no eligible example, or too few examples or too small an attack budget to
    show it; neither a pass nor a failure. The evidence states the examples and budgets used.
    """

    name: str
    status: CheckStatus
    message: str
    evidence: dict[str, Any] = Field(default_factory=dict)


class EvaluationResult(_Model):
    """One evaluation of a section (``attacks/pgd``, ``clean``, ``corruptions``...)."""

    key: str
    section: str
    name: str
    declared: dict[str, Any] = Field(default_factory=dict)
    resolved: dict[str, Any] = Field(default_factory=dict)
    status: Literal["started", "success", "error", "skipped"] = "started"
    error: str | None = None
    cost: Cost = Field(default_factory=Cost)
    records: list[MetricRecord] = Field(default_factory=list)
    checks: list[Check] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    artifacts: dict[str, Any] = Field(default_factory=dict, description="JSON data for the report")
    outcomes: dict[str, str] = Field(
        default_factory=dict,
        description="per-example 0/1 outcomes behind headline proportions, by record name (pack_outcomes): "
        "two runs on the same examples get a paired test",
    )


def all_binary(shares: Any) -> bool:
    """Whether per-example shares (a tensor) are all 0 or 1: outcomes, not a randomized model's pass means."""
    return bool(((shares == 0) | (shares == 1)).all())


def binary_outcomes(shares: Any) -> str | None:
    """Per-example shares packed as outcomes (:func:`pack_outcomes`) when they are all 0 or 1, for
    paired comparisons; ``None`` for pass means, which have no per-example 0/1 outcome."""
    return pack_outcomes(shares == 1) if all_binary(shares) else None


def pack_outcomes(flags: Any) -> str:
    """Per-example booleans ``(N,)`` as text: ``np.packbits`` (big-endian bit order), base64."""
    import base64

    import numpy as np

    bits = np.asarray(flags.cpu() if hasattr(flags, "cpu") else flags, dtype=bool).reshape(-1)
    return base64.b64encode(np.packbits(bits).tobytes()).decode("ascii")


def unpack_outcomes(text: str, n: int) -> Any:
    """The ``(n,)`` boolean array :func:`pack_outcomes` wrote; ``None`` if ``text`` does not hold n bits."""
    import base64
    import binascii

    import numpy as np

    try:
        raw = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype=np.uint8)
    except (binascii.Error, ValueError, UnicodeError):
        return None
    if raw.size != (n + 7) // 8:
        return None
    return np.unpackbits(raw)[:n].astype(bool)


class ModelInfo(_Model):
    """The evaluated model."""

    source: str
    format: str
    sha256: str | None = None
    arch: str | None = None
    num_classes: int | None = None
    num_parameters: int | None = None
    randomized: bool = False
    randomized_declared: bool = Field(default=False, description="randomized by --randomized only: the probe's passes agreed")
    trusted_pickle: bool = False
    provenance: dict[str, Any] | None = Field(
        default=None,
        description="where the checkpoint came from, for a model robench trained itself (the demo's: recipe, seed, training data, "
        "cache tag, reused or trained in this run, the torch that trained it); None: not known (a user's checkpoint, older results)",
    )

    def provenance_text(self) -> str | None:
        """:attr:`provenance` in words (``key value; ...``), ``None`` without one; a value ``None`` reads ``unknown``."""
        if not self.provenance:
            return None
        return "; ".join(f"{key} {'unknown' if value is None else value}" for key, value in self.provenance.items())


class DatasetInfo(_Model):
    """The evaluated data."""

    manifest: str
    manifest_sha256: str
    format: str
    root: str | None = None
    split: str
    n_examples: int
    num_classes: int
    input_shape: list[int]
    verified: str = Field(description="what was verified: checksums, sizes, shapes")
    files_sha256: dict[str, str] = Field(
        default_factory=dict,
        description="sha256 of each data file checked against the manifest's, by its path in the manifest (empty: none checked, or an older file)",
    )
    source: str = Field(default="", description="where the data comes from (the manifest's source)")
    selection: str = Field(default="", description="which examples: the manifest's description of the split and the subset taken")

    def checksums(self) -> str:
        """The data's hashes in words, in full (a reader copies them): ``manifest sha256 …; mnist_5k.csv.gz sha256 …``."""
        return "; ".join([f"manifest sha256 {self.manifest_sha256}", *(f"{path} sha256 {digest}" for path, digest in self.files_sha256.items())])


DIRTY_SUFFIX = "+dirty"
"""Ends a recorded git revision when the checkout had uncommitted changes (:func:`robench.runner.git_revision`):
the code that ran is then that commit plus changes no commit holds."""


def is_dirty(revision: str | None) -> bool:
    """Whether a recorded git revision is of a checkout with uncommitted changes (:data:`DIRTY_SUFFIX`)."""
    return revision is not None and revision.endswith(DIRTY_SUFFIX)


SHORT_SHA256 = 12
"""Hex digits of a hash where it only tells two things apart (a header, the checklist's evidence);
where a reader would copy it (the summary's rows, summary.md) it is written in full."""


def short_sha256(digest: str) -> str:
    """The first :data:`SHORT_SHA256` hex digits of a hash, the one short form reports write."""
    return digest[:SHORT_SHA256]


class Numerics(_Model):
    """Torch settings that change a run's numbers (not what ran, how it rounded), read at the run's
    start. The CUDA fields are ``None`` on the CPU (and where torch refuses to read a setting:
    legacy and per-backend TF32 settings mixed)."""

    deterministic_algorithms: bool = Field(description="torch.are_deterministic_algorithms_enabled()")
    float32_matmul_precision: str | None = Field(default=None, description="torch.get_float32_matmul_precision()")
    cuda_matmul_allow_tf32: bool | None = Field(default=None, description="float32 matrix products in TF32 on CUDA (robench._numerics.tf32_enabled)")
    cudnn_allow_tf32: bool | None = Field(default=None, description="float32 cuDNN convolutions in TF32 (PyTorch's default: on)")
    cudnn_benchmark: bool | None = Field(default=None, description="torch.backends.cudnn.benchmark: algorithms picked by timing")
    cudnn_deterministic: bool | None = Field(default=None, description="torch.backends.cudnn.deterministic")


class Environment(_Model):
    """Where and with what the run happened."""

    robench_version: str
    python: str
    packages: dict[str, str] = Field(default_factory=dict)
    git_revision: str | None = None
    hostname: str = ""
    platform: str = ""
    cpu_count: int | None = Field(default=None, description="CPUs this process may run on")
    torch_threads: int | None = Field(default=None, description="torch.get_num_threads() (CPU reductions depend on it)")
    device: str = "cpu"
    device_name: str = ""
    numerics: Numerics | None = Field(default=None, description="settings that change the numbers (None: results written before it was recorded)")


class Results(_Model):
    """The results of one run (``results.json``)."""

    schema_version: Literal[1, 2] = SCHEMA_VERSION
    status: Literal["started", "success", "error"] = "started"
    error: str | None = None
    started_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    finished_at: str | None = None
    seed: int = 0
    threat_model: dict[str, Any]
    threat_model_sha256: str
    model: ModelInfo
    dataset: DatasetInfo
    environment: Environment
    options: dict[str, Any] = Field(default_factory=dict)
    evaluations: list[EvaluationResult] = Field(default_factory=list)

    @field_validator("evaluations")
    @classmethod
    def _unique_keys(cls, evaluations: list[EvaluationResult]) -> list[EvaluationResult]:
        keys = [e.key for e in evaluations]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:  # a run writes each once: the report and comparisons would read only the first
            raise ValueError(f"two evaluations have the key {duplicates[0]!r}")
        return evaluations

    def records(self, evaluation: str | None = None, name: str | None = None) -> list[MetricRecord]:
        """All metric records, optionally filtered by evaluation key and metric name."""
        return [
            r
            for e in self.evaluations
            for r in e.records
            if (evaluation is None or r.evaluation == evaluation) and (name is None or r.name == name)
        ]

    def evaluation(self, key: str) -> EvaluationResult | None:
        """The evaluation with this key, if it ran."""
        return next((e for e in self.evaluations if e.key == key), None)

    def formatted(self, record: MetricRecord) -> tuple[str, str]:
        """:meth:`MetricRecord.formatted` with the artifacts of the record's evaluation (the radii of
        a value that is :func:`not_certifiable`)."""
        evaluation = self.evaluation(record.evaluation)
        return record.formatted(evaluation.artifacts if evaluation is not None else None)

    def save(self, path: str | Path) -> Path:
        """Write atomically: to a temporary file in the same folder, fsync, then rename."""
        return atomic_write_text(Path(path), self.model_dump_json(indent=2))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` so that readers see the old or the new file, never a part.

    Raises:
        ConfigError: the path cannot be written (its folder is a file, it is a folder, no permission...).
    """
    if path.is_dir():
        raise ConfigError(f"{path} is a folder; expected the path of a file to write")
    if path.exists() and not path.is_file():  # the rename would replace a device or a FIFO (as root, /dev/null itself)
        raise ConfigError(f"{path} is not a regular file (a device, FIFO or socket); expected the path of a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc} (at {exc.filename or path.parent})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual mode of a new file
        os.replace(tmp, path)
    except OSError as exc:  # disk full, the target became a folder...
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


MAX_RESULTS_BYTES = 1 << 28
"""Largest results.json read (a 10,000-image audit's is a few MB; /dev/zero is endless)."""


def load_results(path: str | Path) -> Results:
    """Read and validate a results file.

    Raises:
        ConfigError: missing, unreadable, not JSON, or not of this schema (with the field path).
    """
    from robench._io import read_json_capped

    path = Path(path)
    data = read_json_capped(path, MAX_RESULTS_BYTES, "robench results file")
    if isinstance(data, dict) and data.get("schema_version") not in (None, *READABLE_SCHEMA_VERSIONS):
        raise ConfigError(
            f"{path}: results schema_version {data.get('schema_version')!r} is not supported "
            f"(this robench reads {', '.join(map(str, READABLE_SCHEMA_VERSIONS))})"
        )
    try:
        results = Results.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "<root>"
        raise ConfigError(f"{path}: not a robench results file: {where}: {error_message(first)}") from None
    problem = _threat_model_problem(results.threat_model)
    if problem:
        raise ConfigError(f"{path}: not a robench results file: threat_model: {problem}")
    return results


def _threat_model_problem(threat: dict[str, Any]) -> str | None:
    """What makes a recorded threat model unreadable for the report and comparisons (``None``: fine):
    its first error against the threat-model schema it was written from (a declared attack whose
    name is not text, ``calibration: {conditions: 5}``, ``adversary.bounds: null`` crashed the
    report). Keys the schema does not know are let through, so that results of other versions
    stay readable; the names of attacks and their parameters are not checked against the registry."""
    from robench.threat_model import ThreatModel, schema_error_lines

    try:
        ThreatModel.model_validate(threat)
    except ValidationError as exc:
        errors = schema_error_lines(exc, unknown_keys=False)
        return errors[0] if errors else None
    return None
