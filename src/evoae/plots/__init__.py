"""Figures (matplotlib, written as PNG files): fitness curves, image grids, latent maps.

Plain functions of arrays and models; the report and the search's plot reporter decide
when to draw them.
"""
