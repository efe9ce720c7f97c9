"""Built-in refiners: CRAYON's, GRADIA, the map-guided and annotation-free baselines, and controls."""
