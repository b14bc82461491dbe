"""Ready-made worlds: `standard` (uplift follows the customer types) and `misaligned`
(uplift follows a hidden trait that no lifecycle stratum names)."""

from airspace.sim.worlds.misaligned import MisalignedWorld
from airspace.sim.worlds.standard import StandardWorld

__all__ = ["MisalignedWorld", "StandardWorld"]
