"""Hosts that execute protocol effects: the simulator, real node processes."""
