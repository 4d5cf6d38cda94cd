"""Every committed notebook shows everything without a kernel (the design's notebook rules).

Readers open chapters on GitHub, nbviewer or ``make course``'s HTML, where no kernel runs: a
widget needs its stored state and a picture, a plotly view needs a PNG beside its JSON, and a
progress bar must have stored its last frame, not its first.
"""

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted([*ROOT.glob("notebooks/*.ipynb"), *ROOT.glob("solutions/*.ipynb"), *ROOT.glob("exercises/*.ipynb")])
WIDGET, PLOTLY, STATE = "application/vnd.jupyter.widget-view+json", "application/vnd.plotly.v1+json", "application/vnd.jupyter.widget-state+json"
BAR = re.compile(r"(\d+)%\|[^|]*\|\s*(\d+)/(\d+)")  # tqdm's "37%|███▋      | 222/600"


def static_defects(notebook: dict) -> list[str]:
    """What a static viewer could not show, as 'cell N: ...' lines."""
    state = notebook.get("metadata", {}).get("widgets", {}).get(STATE, {}).get("state", {})
    defects = []
    for index, cell in enumerate(notebook["cells"]):
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if WIDGET in data and data[WIDGET]["model_id"] not in state:
                defects.append(f"cell {index}: a widget output without stored widget state")
            if (WIDGET in data or PLOTLY in data) and "image/png" not in data:
                defects.append(f"cell {index}: a {'widget' if WIDGET in data else 'plotly'} output without a PNG picture")
            text = "".join(output.get("text", "")) + "".join(data.get("text/plain", ""))  # strings or lists of lines
            for percent, done, total in BAR.findall(text):
                if int(percent) < 100 or int(done) < int(total):
                    defects.append(f"cell {index}: a progress bar stored at {done}/{total}")
    return defects


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_stored_notebook_shows_everything_without_a_kernel(path):
    defects = static_defects(json.loads(path.read_text()))
    assert not defects, f"{path.name}:\n" + "\n".join(defects)


def test_the_scan_finds_each_defect():
    widget = {"data": {WIDGET: {"model_id": "m1"}, "text/plain": "VBox()"}, "output_type": "display_data"}
    plotly = {"data": {PLOTLY: {}, "text/plain": "Figure"}, "output_type": "display_data"}
    bar = {"name": "stderr", "output_type": "stream", "text": "dreamfusion:   0%|          | 0/600 [00:00<?, ?it/s]"}
    done = {"data": {"text/plain": "dreamfusion: 100%|██████████| 600/600 [01:23<00:00,  7.20it/s]"}, "output_type": "display_data"}
    notebook = {"metadata": {}, "cells": [{"cell_type": "code", "outputs": [widget, plotly, bar, done]}]}
    assert static_defects(notebook) == [
        "cell 0: a widget output without stored widget state",
        "cell 0: a widget output without a PNG picture",
        "cell 0: a plotly output without a PNG picture",
        "cell 0: a progress bar stored at 0/600",
    ]
    for output in (widget, plotly):
        output["data"]["image/png"] = "iVBOR"
    notebook["metadata"] = {"widgets": {STATE: {"state": {"m1": {}}}}}
    notebook["cells"][0]["outputs"] = [widget, plotly, done]
    assert static_defects(notebook) == []
