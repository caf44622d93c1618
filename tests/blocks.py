"""One grid point per block type and shape feature, shared by the tests of model.py and packed.py.

Strides of 1 and 2, a stem, a width multiplier, an expansion of 1 (no expansion conv), a residual
(stride 1, same channels) and none.
"""

from __future__ import annotations

from bcpareto.gridspec import GridPoint

POINTS = {
    "conv": GridPoint(0, (6, 10, 12), (5, 3, 3), (20, 7)),
    "conv_stem_strides_width": GridPoint(1, (6, 10, 12), (3, 3, 3), (9,), stem=8, strides=(2, 1, 2), width=1.5),
    "separable": GridPoint(2, (8, 16, 16, 32), (3, 3, 5, 3), (), block="separable", strides=(1, 2, 1, 2)),
    "separable_stem_width": GridPoint(3, (8, 16, 16), (3, 3, 3), (12,), block="separable", stem=8, width=0.5),
    "inverted_residual": GridPoint(4, (8, 8, 16, 16), (3, 3, 3, 5), (10,), block="inverted_residual",
                                   strides=(2, 1, 2, 1), stem=8, expansion=4),
    "inverted_residual_t1": GridPoint(5, (8, 16, 16), (3, 3, 3), (), block="inverted_residual",
                                      strides=(1, 2, 1), expansion=1, width=2),
}
