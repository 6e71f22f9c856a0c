"""Interventions on a hooked tower: where (units), how (batched patched forwards), and the
two experiments built from them (activation patching across domains, ablations).

* :mod:`interp.interventions.units`: a site plus an optional position, head and channel set;
* :mod:`interp.interventions.intervene`: many patched forwards in one batched forward;
* :mod:`interp.interventions.patching`: clean -> corrupted patching across domains;
* :mod:`interp.interventions.ablation`: zero, mean and resample ablations.
"""
