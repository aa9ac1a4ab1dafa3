"""Hydra instantiates sweepers only from its ``hydra_plugins`` namespace package;
:mod:`experiments.sweep` puts experiments/_plugins on sys.path, and this class is the sweeper
Hydra sees (``hydra/sweeper: grid``). The logic is in :class:`experiments.sweep.GridSweeper`."""
from experiments.sweep import GridSweeper as _GridSweeper


class GridSweeper(_GridSweeper):
    pass
