"""nbval settings: outputs that legitimately differ between runs are never compared.

Under ``--nbval-lax`` only cells marked ``# NBVAL_CHECK_OUTPUT`` are compared at all; for
those, stderr (progress bars, warnings), HTML, plotly figures, widgets and images are skipped.
"""

SKIPPED_OUTPUTS = (
    "stderr",
    "text/html",
    "application/javascript",
    "application/vnd.plotly.v1+json",
    "application/vnd.jupyter.widget-view+json",
    "image/png",
)


def pytest_collectstart(collector):
    path = getattr(collector, "path", None)
    if path is not None and path.suffix == ".ipynb":
        collector.skip_compare += SKIPPED_OUTPUTS
