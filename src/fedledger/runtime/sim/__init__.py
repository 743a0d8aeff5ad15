"""A discrete-event simulator hosting many protocol nodes in one process."""

from fedledger.runtime.sim.compute import ComputeModel
from fedledger.runtime.sim.network import LinkSpec, NetworkModel
from fedledger.runtime.sim.simulator import SimObserver, SimStats, Simulator

__all__ = ["ComputeModel", "LinkSpec", "NetworkModel", "SimObserver", "SimStats", "Simulator"]
