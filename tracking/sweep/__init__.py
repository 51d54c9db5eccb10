"""Sweeps on Ray Tune, by where the code runs: `space` (the sweep file's space as Tune's), `trial` (inside a Tune
worker), `driver` (the `fitlens sweep` process), `scheduler` (the stopping rules and the tags saying why a trial
stopped) and `summary` (what the sweep prints). The sweep file itself is `tracking.sweep_config`, without Ray."""
