"""fitlens: the `fitlens` command line, on top of every other package (lightning_modules <- tracking <- analysis
<- dashboard)."""
