"""Reports: artifact -> Report. build.py verifies an artifact (runs it through its backend and the reference on the
evaluation set, measure.py, gates, parity.py), model.py and sections.py are the typed schema (`edgekit schema --kind
report`), cache.py reuses a verification for identical inputs, render.py writes JSON/Markdown/HTML, spiking.py the
spiking section's Markdown, summary.py the lines `edgekit compile` prints, compare.py and sample.py the comparison
page and the committed sample report."""
