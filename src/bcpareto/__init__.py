"""bcpareto: the accuracy/size trade-off of small white-blood-cell classifiers.

The Python API (docs/guide/api.md): load_sheet, run_search, read_run, front, plot, judge, compare.
(`run_search`, not `search`: bcpareto.search is the module of the search loop.)
"""

from .api import compare, front, judge, load_sheet, plot, read_run, run_search

__version__ = "0.1.0"
__all__ = ["compare", "front", "judge", "load_sheet", "plot", "read_run", "run_search", "__version__"]
