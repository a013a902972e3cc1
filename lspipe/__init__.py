"""lspipe: reproduce "When Does Label Smoothing Help?" (Mueller, Kornblith, Hinton, NeurIPS 2019).

The package holds all the logic; the Snakemake rules in ``workflow/`` are thin wrappers
around the ``lspipe`` command line (:mod:`lspipe.cli`).
"""

__version__ = "0.1.0"
