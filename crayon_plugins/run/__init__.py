"""One run, ``crayon run``: the pipeline and its stages, the artefact cache, results, the comparison
table and figures."""
