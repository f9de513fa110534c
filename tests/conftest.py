import lrt

lrt.reproducible()
