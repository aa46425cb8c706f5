"""A notebook run by papermill refuses a parameter its parameters cell does not define, with the
command line's message, before any compute; a defined one runs (00_data on the tiny preset)."""
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow   # a kernel each

ROOT = Path(__file__).resolve().parents[2]
NB = ROOT / "notebooks" / "00_data.ipynb"


def _run(out, **parameters):
    import papermill as pm
    return pm.execute_notebook(str(NB), str(out), kernel_name="python3", progress_bar=False,
                               parameters={"preset": "tiny", **parameters}, cwd=str(NB.parent))


def test_unknown_parameter_stops_in_the_check_cell(tmp_path):
    import papermill as pm
    with pytest.raises(pm.PapermillExecutionError,
                       match=r"unknown parameter\(s\) \['target'\]; allowed: \[.*'targets'"
                       ) as err:
        _run(tmp_path / "out.ipynb", target=["digits"])
    assert "config.check_injected(globals())" in err.value.source


def test_known_parameters_run(tmp_path):
    import nbformat
    _run(tmp_path / "out.ipynb", targets=["digits"], device="cpu")
    nb = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
