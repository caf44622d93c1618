"""Racing over folds (``--fidelity folds``): drop a grid point once another is, with confidence,
at least as small and more accurate on the folds both have finished (pure numpy).

The multi-objective analogue of F-Race (Birattari et al. 2002) and S-Race (Zhang et al. 2013):
the queue is fold-major (every point's fold 1 before any fold 2), and before a point trains its
next fold it is compared, paired, with every point that is no larger: on the out-of-fold images
both were scored on, resampled by source smear (cvstats.GroupBootstrap). If one of them is
better with the interval of the difference above zero, the point cannot reach the front and its
remaining folds are not trained; the reason names the rival and the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from . import cvstats

RACE_RESAMPLES = 1000  # per decision; the interval's ends move by ~0.1 points between seeds


def raced_out(
    grid_id: int, *, table: Mapping[str, np.ndarray], predictions: Mapping[tuple[int, int], Mapping[str, np.ndarray]],
    sizes: Mapping[int, float], int8: bool = False, seed: int = 0,
) -> str | None:
    """Why ``grid_id`` is dominated with confidence by a point no larger, or None.

    ``predictions``: the kept predictions of the models finished so far (runs.load_predictions),
    ``sizes``: each point's size (the int8 file's where known). ``int8``: compare the int8
    files' out-of-fold predictions instead of the float models'."""
    if grid_id not in sizes or not any(g == grid_id for g, _ in predictions):
        return None  # nothing of this point finished yet: no evidence against it
    scores = cvstats.collect(dict(table), dict(predictions))
    score = "cv_int8" if int8 else "cv"
    train = ~scores.is_test
    ids = list(scores.grid_ids)
    mine = scores.correct[score][ids.index(grid_id)][train]
    if not np.isfinite(mine).any():
        return None
    boot = cvstats.GroupBootstrap(scores.groups[train], scores.labels[train], n_resamples=RACE_RESAMPLES, seed=seed)
    rivals = sorted((g for g in ids if g != grid_id and g in sizes and sizes[g] <= sizes[grid_id]),
                    key=lambda g: sizes[g])
    for rival in rivals:
        theirs = scores.correct[score][ids.index(rival)][train]
        if not (np.isfinite(theirs) & np.isfinite(mine)).any():
            continue
        diff = boot.difference(theirs, mine)
        if diff.estimate.lo > 0:
            e = diff.estimate
            return (f"dominated with confidence by grid point {rival} ({sizes[rival]:.4g} MB <= "
                    f"{sizes[grid_id]:.4g} MB): {rival} minus {grid_id} = {e.value:+.3f}, "
                    f"{cvstats.LEVEL:.0%} interval [{e.lo:+.3f}, {e.hi:+.3f}] on {diff.n_images} out-of-fold images")
    return None
