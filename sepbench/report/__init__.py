"""Present: results frames into tables, statistics across runs and versions, figures, and the HTML page.

Modules: `analysis` (frames for each section), `versions` (run-to-run comparison across PyTorch
versions), `tables` (terminal tables and number formats), `plots` (seaborn figures), `featuremaps`
(the stage-output figure's tensors), `page` (the report build). Nothing here measures.
"""
