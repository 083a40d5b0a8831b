"""canaryaudit: audit language models for memorization of sensitive training text.

Importing the package applies the offline defaults (see :mod:`canaryaudit.env`)
before any of prefect, mlflow, dvc, transformers or datasets is imported.
"""

from canaryaudit.env import apply_offline_defaults

apply_offline_defaults()

__version__ = "0.1.0"
