"""The optimised model artifact at run time: manifest check, variant (precision, INT8)
restore and compile-cache restore. Written by gen3d.model_opt, read by the backends."""
