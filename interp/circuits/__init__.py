"""Attribution circuits: node effects, edge weights, the circuit graph, and its comparison
across domains.

* :mod:`interp.circuits.attribution`: per-unit effects on a logit metric (AtP, IG);
* :mod:`interp.circuits.edges`: edge weights between kept units of connected sites;
* :mod:`interp.circuits.circuit`: node and edge selection, the graph, faithfulness;
* :mod:`interp.circuits.compare`: node / edge Jaccard and the Weisfeiler-Lehman kernel.
"""
