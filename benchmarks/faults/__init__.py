"""The fault zoo: training setups with a known fault (and healthy ones) that the diagnosis is measured on."""
