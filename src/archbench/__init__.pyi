# Types of the package root for type checkers (the lazy-loading stub pattern; see __init__.py).
from pathlib import Path

import pandas as pd

from archbench.api import Run as Run
from archbench.api import load_run as load_run
from archbench.api import plan as plan
from archbench.api import run as run

__version__: str

def load_results(path: str | Path) -> pd.DataFrame: ...

__all__ = ["Run", "__version__", "load_results", "load_run", "plan", "run"]
