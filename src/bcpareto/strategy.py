"""How a search chooses and stops models: the sampler, its budget, device limits and halving.

The grid (the default) trains every row of the sheet. The other samplers draw architectures
from the workbook's ``space`` sheet (space.py) with Optuna: ``random``, ``tpe`` (TPE, the
Bayesian default of Optuna), ``nsga2`` (NSGA-II, an evolutionary multi-objective sampler) and
``gp`` (Gaussian-process Bayesian optimisation; needs the ``gp`` extra: torch and scipy). All
of them see the two objectives as they are (a real Pareto front, not a weighted sum) and the
device limits as constraints (Optuna's ``Trial.set_constraint``; feasible is <= 0).

Successive halving over epochs (``eta``) is asynchronous and multi-objective (halving.py): it
works with every sampler, the grid included. A proposal of a model the study already has is
answered from the study, and the next proposal is a random draw (``RepeatedProposals``, shared
with experiments/replay_search.py's replay). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .errors import StrategyError
from .gridspec import GridPoint

if TYPE_CHECKING:
    import optuna

    from .space import SearchSpace

SAMPLERS = ("grid", "random", "tpe", "nsga2", "gp")
NSGA2_POPULATION = 8  # small: a CPU search trains tens of models, not thousands
STARTUP_TRIALS = 8  # tpe and gp draw at random until this many models are in (Optuna's default: 10)
# A search whose proposals are models the study already has this many times in a row (random
# draws included, see RepeatedProposals) has little left to find in its space: it stops.
MAX_REPEATED_PROPOSALS = 25


@dataclass(frozen=True)
class Limits:
    """Hard device limits; a model over any of them is infeasible (None: no limit)."""

    max_int8_mb: float | None = None
    max_macs: float | None = None
    max_latency_ms: float | None = None

    def any(self) -> bool:
        return any(v is not None for v in (self.max_int8_mb, self.max_macs, self.max_latency_ms))

    def needs_tflite(self) -> bool:
        return self.max_int8_mb is not None or self.max_latency_ms is not None

    def violations(self, measures: dict[str, float]) -> dict[str, float]:
        """Constraint values (measure minus limit; > 0 breaks the limit) of the measures given."""
        out = {}
        for key, limit in (("tflite_int8_mb", self.max_int8_mb), ("macs", self.max_macs),
                           ("latency_ms", self.max_latency_ms)):
            if limit is not None and measures.get(key) is not None:
                out[key] = float(measures[key]) - float(limit)
        return out

    def describe(self, violations: dict[str, float]) -> str:
        """'int8 0.120 MB > --max-int8-mb 0.1' for every broken limit."""
        names = {"tflite_int8_mb": ("int8", "MB", "--max-int8-mb", self.max_int8_mb),
                 "macs": ("", "multiply-adds", "--max-macs", self.max_macs),
                 "latency_ms": ("latency", "ms", "--max-latency-ms", self.max_latency_ms)}
        parts = []
        for key, over in violations.items():
            if over > 0:
                what, unit, option, limit = names[key]
                value = over + float(limit)
                shown = f"{value:,.0f}" if key == "macs" else f"{value:.3f}"
                parts.append(f"{what} {shown} {unit} > {option} {limit:g}".strip())
        return "; ".join(parts)


@dataclass(frozen=True)
class Strategy:
    """What ``bcpareto search`` does beyond training each point: see the module docstring."""

    sampler: str = "grid"
    space: SearchSpace | None = None
    n_trials: int | None = None  # sampled models in all (the warm-start grid included; repeats not)
    budget_minutes: float | None = None  # this process claims nothing new after this long
    warm_start: bool = False  # queue the grid sheet's points before the first sampled one
    eta: int | None = None  # successive halving over epochs when set
    min_epochs: int = 1
    limits: Limits = field(default_factory=Limits)
    seed: int = 0
    race: bool = False  # racing over folds (racing.py): cross-validation only

    @property
    def sampled(self) -> bool:
        return self.sampler != "grid"

    @property
    def halving(self) -> bool:
        return self.eta is not None

    def fingerprint(self) -> dict[str, Any]:
        """What makes two searches of the same sheet and preset different studies.

        Empty for the plain grid, so grid studies keep their names. ``n_trials``, the budget
        and the sampler's seed are left out: raising them later continues the same study.
        """
        blob: dict[str, Any] = {}
        if self.sampled:
            blob["sampler"] = self.sampler
            blob["space"] = self.space.distributions() if self.space is not None else None
            blob["warm_start"] = self.warm_start
        if self.halving:
            blob["halving"] = [self.eta, self.min_epochs]
        if self.limits.any():
            blob["limits"] = [self.limits.max_int8_mb, self.limits.max_macs, self.limits.max_latency_ms]
        if self.race:
            blob["race"] = True
        return json.loads(json.dumps(blob, default=str))  # as the storage gives it back (lists, not tuples)

    def name_suffix(self) -> str:
        """'-tpe-sh3-1a2b3c4d' for a study name; '' for the plain grid."""
        blob = self.fingerprint()
        if not blob:
            return ""
        tag = self.sampler + (f"-sh{self.eta}" if self.halving else "") + ("-race" if self.race else "")
        digest = hashlib.sha1(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return f"-{tag}-{digest}"

    def describe(self) -> str:
        parts = [f"sampler {self.sampler}"]
        if self.sampled:
            parts.append(f"{self.n_trials} trials" if self.n_trials else "no trial limit")
        if self.budget_minutes is not None:
            parts.append(f"budget {self.budget_minutes:g} min")
        if self.halving:
            parts.append(f"successive halving over epochs (eta {self.eta}, from {self.min_epochs} epoch(s))")
        if self.race:
            parts.append("racing over folds (a point dominated with confidence by a smaller one trains no more folds)")
        if self.limits.any():
            limits = self.limits
            parts.append("limits " + ", ".join(
                f"{name} {value:g}" for name, value in (
                    ("int8 MB", limits.max_int8_mb), ("MACs", limits.max_macs),
                    ("latency ms", limits.max_latency_ms)) if value is not None))
        return "; ".join(parts)


def check_strategy(strategy: Strategy, *, sheet: str, epochs: int, folds: int = 0) -> None:
    """Options that cannot work together, before anything is created: BadInput (exit 2).
    ``folds``: the cross-validation's fold count (0: no cross-validation)."""
    from .halving import rungs

    if strategy.race and not folds:
        raise StrategyError("--fidelity folds races grid points over the folds of cross-validation; "
                            "add --folds K (or validation = \"cv\" in the preset)")
    if strategy.race and strategy.sampled:
        raise StrategyError("--fidelity folds races the grid's points; a sampler trains one fold per "
                            "drawn model (use --sampler grid, or --fidelity epochs)")

    if strategy.sampled:
        if strategy.space is None:
            raise StrategyError(
                f"--sampler {strategy.sampler} draws models from a sheet named 'space' in the "
                f"workbook, and {sheet} has none; add one (one row per parameter: name | low | "
                "high | log | choices; see `bcpareto search --help`) or use --sampler grid"
            )
        if strategy.n_trials is None and strategy.budget_minutes is None:
            raise StrategyError(f"--sampler {strategy.sampler} needs --n-trials N or --budget-minutes M "
                           "(how many models to train, or for how long)")
        if strategy.sampler == "gp":
            missing = [m for m in ("torch", "scipy") if importlib.util.find_spec(m) is None]
            if missing:
                raise StrategyError(f"--sampler gp needs {' and '.join(missing)}: "
                               "pip install 'bcpareto[gp]' (or choose tpe, nsga2 or random)")
    elif strategy.n_trials is not None:
        raise StrategyError("--n-trials counts sampled models; the grid trains every row of the sheet "
                       "(pass --sampler random|tpe|nsga2|gp to sample from the 'space' sheet)")
    if strategy.warm_start and not strategy.sampled:
        raise StrategyError("--warm-start queues the grid before a sampler's models; with --sampler grid "
                       "the grid is all there is")
    if strategy.halving:
        try:
            if not rungs(strategy.min_epochs, epochs, strategy.eta):
                raise StrategyError(
                    f"--fidelity epochs with --min-epochs {strategy.min_epochs} and {epochs} epoch(s) "
                    f"per model judges at no epoch; expected --min-epochs below --epochs {epochs}"
                )
        except ValueError as exc:
            raise StrategyError(str(exc)) from None


def make_sampler(strategy: Strategy) -> optuna.samplers.BaseSampler | None:
    """The Optuna sampler of a sampled search (None for the grid, which claims queued points)."""
    import optuna

    seed = strategy.seed
    if strategy.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if strategy.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    if strategy.sampler == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=NSGA2_POPULATION)
    if strategy.sampler == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP_TRIALS)
    return None


@dataclass
class RepeatedProposals:
    """What a search does when proposals repeat models the study already has (the live search
    and experiments/replay_search.py's replay use this one rule).

    A model-based sampler (tpe, gp, nsga2) that has converged over a small discrete space keeps
    proposing the models it rates best, which the study already has. Each such proposal is told
    the earlier result (the sampler learns from it) and trains nothing, but it finds nothing
    either. So after a repeat the next proposal is a random draw over the space (uniform, as
    Optuna's RandomSampler, seeded by the sampler's seed and the trial's number), queued as the
    trial's fixed values, and the budget goes to new models; the draws go on while they repeat
    too. ``MAX_REPEATED_PROPOSALS`` repeats in a row mean the space is (nearly) exhausted: stop.
    Counted per worker: a worker's own proposals in a row.
    """

    seed: int
    in_a_row: int = 0  # repeated proposals in a row

    @property
    def exploring(self) -> bool:
        """Whether the next proposal is a random draw (the last one repeated a known model)."""
        return self.in_a_row > 0

    def values(self, space: dict[str, optuna.distributions.BaseDistribution], *,
               number: int) -> dict[str, Any]:
        """What to queue for trial ``number``: {} (the sampler chooses) or, after a repeat, a
        random draw of every parameter. Draw under the study's lock, as the sampler would."""
        import numpy as np

        if not self.exploring:
            return {}
        rng = np.random.default_rng([self.seed, number])
        return {name: _draw(distribution, rng) for name, distribution in space.items()}

    def count(self, *, repeated: bool) -> bool:
        """Count one proposal (``repeated``: of a model the study has); True: stop the search."""
        self.in_a_row = self.in_a_row + 1 if repeated else 0
        return self.in_a_row >= MAX_REPEATED_PROPOSALS


def _draw(distribution: optuna.distributions.BaseDistribution, rng: Any) -> Any:
    """One uniform value of an Optuna distribution (log ranges: uniform in the log)."""
    import math

    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[int(rng.integers(len(distribution.choices)))]
    low, high = distribution.low, distribution.high
    if isinstance(distribution, IntDistribution):
        step = distribution.step
        if not distribution.log:
            return int(low + step * int(rng.integers((high - low) // step + 1)))
        value = math.exp(rng.uniform(math.log(low - 0.5), math.log(high + 0.5)))  # as Optuna rounds
        return int(min(max(round(value), low), high))
    if distribution.log:
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))
    return float(rng.uniform(low, high))


def distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    """The space sheet's parameters as Optuna distributions, fixed ones included."""
    from optuna.distributions import (
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    out: dict[str, Any] = {}
    for name, spec in space.distributions().items():
        if spec[0] == "categorical":
            out[name] = CategoricalDistribution(list(spec[1]))
        elif spec[0] == "int":
            out[name] = IntDistribution(int(spec[1]), int(spec[2]), log=bool(spec[3]))
        else:
            out[name] = FloatDistribution(float(spec[1]), float(spec[2]), log=bool(spec[3]))
    return out


def encode(space: SearchSpace, point: GridPoint) -> dict[str, Any] | None:
    """The space's values that give exactly this grid point, or None when no values do.

    Lets a warm start hand the grid's points to the sampler as observations of its own
    parameters (a point the space cannot express is still trained, but teaches the sampler nothing).
    """
    filters, kernels, neurons = point.filters, point.kernel_sizes, point.neurons
    if point.strides or point.stem or len(set(neurons)) > 1 or len(set(kernels[1:])) > 1:
        return None
    growth = filters[1] / filters[0] if len(filters) > 1 else 1.0
    guess: dict[str, Any] = {
        "conv_blocks": len(filters), "base_filters": filters[0], "growth": growth,
        "first_kernel": kernels[0], "kernel": kernels[1] if len(kernels) > 1 else kernels[0],
        "dense_layers": len(neurons), "dense_units": neurons[0] if neurons else None,
        "block": point.block, "width": point.width, "image_size": point.image_size or None,
    }
    values = {}
    for parameter in space.parameters:
        value = guess.get(parameter.name)
        if value is None:
            return None
        if parameter.kind == "categorical":  # 1.5 in a sheet may have been read as 1.5 or "1.5"
            value = next((c for c in parameter.choices if _same(c, value)), None)
            if value is None:
                return None
        elif parameter.kind == "int":
            value = int(value) if float(value) == int(value) else value
        if not parameter.contains(value):
            return None
        values[parameter.name] = value
    try:
        rebuilt = space.point(values, grid_id=point.grid_id)
    except ValueError:
        return None
    return values if architecture(rebuilt, default_size=0) == architecture(point, default_size=0) else None


def _same(a: Any, b: Any) -> bool:
    try:
        return float(a) == float(b)
    except (TypeError, ValueError):
        return str(a) == str(b)


def architecture(point: GridPoint, *, default_size: int) -> str:
    """A key equal for two points that build the same model (the grid id left out)."""
    params = dict(point.params())
    params.pop("grid_id", None)
    params["image_size"] = point.image_size or default_size
    return json.dumps(params, sort_keys=True, default=str)
