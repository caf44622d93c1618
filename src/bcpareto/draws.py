"""What a claimed trial trains: its queued grid point, or a sampler's draw from the space
(``assign``), and whether the study has room for one more sampled model (``may_sample``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .config import TrainConfig
from .gridspec import GridPoint
from .strategy import Strategy, architecture, distributions, encode
from .study import next_free_id, study_units, unit_of

if TYPE_CHECKING:
    import optuna


def may_sample(study: optuna.Study, strategy: Strategy) -> bool:
    """Whether the study has room for one more sampled model (``n_trials`` counts every model:
    trained, stopped, infeasible, warm-start; a proposal of a model the study has is none)."""
    if strategy.n_trials is None:
        return True
    unassigned = [t for t in study.get_trials(deepcopy=False) if unit_of(t) is None]
    return len(study_units(study)) + len(unassigned) < strategy.n_trials


def assign(
    trial: optuna.Trial, *, by_id: dict[int, GridPoint], strategy: Strategy, config: TrainConfig,
    first_sampled_id: int,
) -> GridPoint:
    """The model this claimed trial trains: its queued grid point, or the sampler's draw."""
    stale = [k for k, v in trial.user_attrs.items() if k.startswith("rung_") and v is not None]
    for key in stale:  # a retry copies its failed trial's attrs: its rungs are judged afresh
        trial.set_user_attr(key, None)
    gid = trial.user_attrs.get("grid_id")
    if not strategy.sampled:
        point = by_id[int(trial.suggest_categorical("grid_id", list(by_id)))]
    elif gid is not None and int(gid) in by_id:  # the warm start's grid point
        point = by_id[int(gid)]
        if encode(strategy.space, point) is not None:  # queued with the space's values: record them
            for name, distribution in distributions(strategy.space).items():
                _suggest(trial, name, distribution)
    else:
        values = {name: _suggest(trial, name, distribution)
                  for name, distribution in distributions(strategy.space).items()}
        new_id = int(gid) if gid is not None else next_free_id(trial.study, first=first_sampled_id)
        point = strategy.space.point(values, grid_id=new_id)
    if gid is None:
        trial.set_user_attr("grid_id", point.grid_id)
        for key, value in point.params().items():
            trial.set_user_attr(key, value)
    trial.set_user_attr("architecture", architecture(point, default_size=config.image_size))
    return point


def _suggest(trial: optuna.Trial, name: str, distribution: Any) -> Any:
    """``trial.suggest_*`` for one Optuna distribution (a queued value is returned as queued)."""
    from optuna.distributions import CategoricalDistribution, IntDistribution

    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, log=distribution.log)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)
