"""Rate-coded spiking networks: ANN->SNN conversion, PyTorch simulation, Lava/Loihi fixed point, netx and NIR export
(the snn and lava backends in edgekit/backends/ run them; Lava itself runs from edgekit/backends/lava/simulator.py).

An SNN here is a sequential list of layers (conv, flatten, linear) whose hidden neurons are integrate-and-fire
(threshold 1 after weight normalisation) and whose last layer is a non-spiking integrator read as V_T / T.
"""
