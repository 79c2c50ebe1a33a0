"""``python -m dask_softkmeans``: the command line (``dask-softkmeans``)."""

from .cli import main

main()
