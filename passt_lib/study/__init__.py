"""The study: parameterised notebooks, a papermill batch runner, and the figures.

- :mod:`passt_lib.study.runner`: ``passt-study run STUDY.yaml``.
- :mod:`passt_lib.study.kernels`: the Jupyter kernels the runner executes notebooks in.
- :mod:`passt_lib.rundir`: what a notebook calls to write its run directory.
- :mod:`passt_lib.study.notebook_params`: the ``parameters`` cell, parsed and checked.
- :mod:`passt_lib.study.params`: the notebooks' parameter contracts.
- :mod:`passt_lib.study.experiments`: the ablation notebooks' bodies; they train through
  :mod:`passt_lib.study.training` and draw with :mod:`passt_lib.study.plots`.
- :mod:`passt_lib.study.figures`: ``passt-study figures``.
- :mod:`passt_lib.study.all`: ``passt-study study``.
"""

from passt_lib.rundir import Run, config_hash, start_run

__all__ = ["Run", "config_hash", "start_run"]
