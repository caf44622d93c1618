"""bcpareto: the accuracy/size trade-off of small white-blood-cell classifiers.

The Python API (docs/guide/api.md): load_sheet, search, read_run, front, plot, judge, compare.
"""

from .api import compare, front, judge, load_sheet, plot, read_run, search

__version__ = "0.1.0"
__all__ = ["compare", "front", "judge", "load_sheet", "plot", "read_run", "search", "__version__"]
