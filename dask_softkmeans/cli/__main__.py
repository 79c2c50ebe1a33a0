"""``python -m dask_softkmeans.cli``: the command line."""

from . import main

main()
