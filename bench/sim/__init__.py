"""The live-path simulator's parts: a virtual-time event loop, the stream model and the report (`bench.sim.load`)."""
