"""What an IMU run is set up with (:class:`UnlearnConfig`) and what it reports (:class:`UnlearnReport`)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from imu_jax.influence import DEFAULT_CLIP_QUANTILE, DEFAULT_DAMPING, DEFAULT_TOP_FRACTION


PyTree = Any


INFLUENCE_MODES = ("global", "per_batch")


WEIGHTINGS = ("influence", "uniform", "shuffled")


OPTIMIZERS = ("sgd", "adamw")


INPUT_KEYS = ("image", "tokens")  # the library's data; any other input key works too


# Keys of a data dict that are not inputs: the labels, the held-out labels of the stopping
# rule's utility guard (imu_jax.unlearning.stopping.UTILITY_LABEL) and example ids. Every other
# key is an input.
LABEL_KEYS = ("label", "utility_label", "id")  # not model inputs: labels and example ids


@dataclasses.dataclass(frozen=True)
class UnlearnConfig:
    """Hyperparameters of :func:`unlearn`. The optimizer defaults (SGD momentum 0.9, coupled decay
    5e-4, lr 0.01, 10 epochs, α 0.2, batch 256, constant lr) are the public code's (spec §3);
    ``top_fraction`` (0.5, the public README's ablation value; its CLI default is 0.1) is ours,
    see ``docs/DEVIATIONS.md``.

    Attributes:
      head: the parameters θ_h: a regex (``re.search`` on "/"-joined paths: ``"^classifier/"``,
        ``"^Dense_2/"``) or a predicate ``fn(path, leaf) -> bool``, checked by
        :func:`imu_jax.check_head_selector` as in the core: a plain word such as the default
        ``"head"`` that also picks layers merely containing it (``head`` and ``pre_head``) is
        an error listing the candidates, as is a selector matching nothing.
      influence_mode: ``"global"`` (one pass over D_f, spec §1–2) or ``"per_batch"`` (weights
        recomputed inside each mini-batch, the LLM variant; every forget example is iterated).
      weighting: ``"influence"`` (IMU), ``"uniform"`` (every forget example, weight 1: GA on the
        head) or ``"shuffled"`` (ablation: IMU's kept weights placed on randomly chosen examples).
      top_fraction: fraction of the negatively influential examples kept (default 0.5).
      clip_quantile, damping: spec §1–2.
      learning_rate, epochs, batch_size, alpha (L1), momentum, weight_decay (coupled): spec §3.
      milestones: fractions of the total steps where the lr is multiplied by ``gamma``; default
        ``()``, a constant lr: the public code's MultiStepLR uses the training milestones (epochs
        91, 136), which never fire within the unlearning epochs.
      max_steps: optional cap on the number of optimizer steps.
      optimizer: ``"sgd"`` (public code) or ``"adamw"`` (Markov / LLM settings; decoupled decay).
      update_batch_stats: run a train-mode forward pass on each batch before its step so BatchNorm
        running statistics drift toward D_f, as in the public code (gradients still use inference
        mode). Off by default.
      influence_chunk_size: chunk size of the generic (streaming) influence path; ``None``
        (default) chooses it automatically (``imu_jax.auto_chunk_size``).
      closed_form: ``"auto"`` uses the dense-softmax closed form when it applies (the head is
        one dense layer, kernel ``[D, C]`` + bias ``[C]``, whatever its name, whose output is
        the logits); ``"never"`` forces the generic path. The report says which ran and why.
      cache_features: ``"auto"`` computes the frozen body once when the head is one dense layer
        whose input the model gives (the closed form's condition) and ``update_batch_stats`` is
        off: the head's input features of the forget set and the held-out data are cached and
        every ascent step and stopping check runs on the head alone (the same result to float
        rounding, ``imu_jax.unlearning.feature_cache``); ``"never"`` runs the full model at
        every step and check. The report's ``feature_cache`` says which ran and why.
    """

    head: Any = "head"  # str (regex) or a predicate fn(path, leaf) -> bool
    influence_mode: str = "global"
    weighting: str = "influence"
    top_fraction: float = DEFAULT_TOP_FRACTION
    clip_quantile: float = DEFAULT_CLIP_QUANTILE
    damping: float = DEFAULT_DAMPING
    learning_rate: float = 0.01
    epochs: int = 10
    batch_size: int = 256
    alpha: float = 0.2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    milestones: tuple[float, ...] = ()
    gamma: float = 0.1
    max_steps: int | None = None
    optimizer: str = "sgd"
    update_batch_stats: bool = False
    influence_chunk_size: int | None = None
    closed_form: str = "auto"
    cache_features: str = "auto"

    def __post_init__(self):
        for name, value, allowed in (("influence_mode", self.influence_mode, INFLUENCE_MODES),
                                     ("weighting", self.weighting, WEIGHTINGS),
                                     ("optimizer", self.optimizer, OPTIMIZERS),
                                     ("closed_form", self.closed_form, ("auto", "never")),
                                     ("cache_features", self.cache_features,
                                      ("auto", "never"))):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {value!r}.")
        if self.influence_mode == "per_batch" and self.weighting == "shuffled":
            raise ValueError("weighting='shuffled' needs influence_mode='global'.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, "
                             f"{self.batch_size}.")
        for name, low, high, low_open in (("top_fraction", 0.0, 1.0, True),
                                          ("clip_quantile", 0.0, 1.0, True),
                                          ("momentum", 0.0, 1.0, False)):
            value = getattr(self, name)
            inside = (low < value if low_open else low <= value) and value <= high
            if not (isinstance(value, (int, float)) and math.isfinite(value) and inside):
                raise ValueError(f"{name} must be in {'(' if low_open else '['}{low:g}, "
                                 f"{high:g}], got {value!r}.")
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ValueError(f"gamma must be a positive number, got {self.gamma!r}.")
        for name in ("learning_rate", "damping", "alpha", "weight_decay"):  # lr 0: a no-op run
            value = getattr(self, name)  # an infinite lr diverges at step 1, and says so
            if math.isnan(value) or value < 0 or (name != "learning_rate" and math.isinf(value)):
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}.")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 or None, got {self.max_steps!r}.")
        outside = [m for m in self.milestones if not 0 < m < 1]
        if outside:
            raise ValueError(
                f"UnlearnConfig.milestones are fractions of the run in (0, 1) (0.5 = halfway); "
                f"got {outside}. (imu.imu_sgd(milestones=...) takes optimizer steps instead.)")


@dataclasses.dataclass
class UnlearnReport:
    """What :func:`unlearn` did. ``to_dict()`` is JSON-ready; ``state`` is the model state after
    unlearning (BatchNorm statistics; unchanged unless ``update_batch_stats``).

    ``head_paths`` are the parameter paths unlearned; ``closed_form`` says which influence path
    ran (True: the dense softmax closed form, False: the generic streaming path, None: no global
    influence pass) and ``closed_form_reason`` why, e.g. ``"closed form: dense softmax top layer
    'classifier' (kernel [64, 10], bias [10])"`` or ``"generic: the head has 2 layers (...)"``.

    ``seconds`` is the wall-clock time of the whole call after its input checks (influence,
    selection, steps, stopping checks), compilation included; ``compile_seconds`` the part of
    it JAX spent tracing, lowering and compiling programs (zero when every program was compiled
    by an earlier call with the same shapes); ``run_seconds`` the rest.
    """

    influence_mode: str
    weighting: str
    num_forget: int
    num_kept: int
    fallback: bool
    steps: int
    seconds: float
    head_paths: list[str]
    compile_seconds: float = 0.0
    closed_form: bool | None = None
    closed_form_reason: str | None = None
    num_negative: int | None = None
    influence: dict[str, float] | None = None
    weights: dict[str, float] | None = None
    num_fallback_batches: int | None = None  # per-batch mode (num_kept = examples iterated)
    stop_reason: str | None = None  # imu_jax.unlearning.stopping.STOP_REASONS
    stopping: dict[str, Any] | None = None  # the rule's summary and per-check curve
    feature_cache: bool = False
    feature_cache_reason: str | None = None
    state: PyTree = dataclasses.field(default=None, repr=False)

    @property
    def run_seconds(self) -> float:
        """``seconds`` without compilation."""
        return max(0.0, self.seconds - self.compile_seconds)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("state")
        out["run_seconds"] = self.run_seconds
        return out
