"""Sweeps on Ray Tune, by where the code runs: `config` (the sweep file, no Ray), `trial` (inside a Tune worker),
`driver` (the `fitlens sweep` process), `scheduler` (the stopping rules and the tags saying why a trial stopped)
and `summary` (what the sweep prints). Empty on purpose: importing `tracking.sweep.config` must not load Ray."""
