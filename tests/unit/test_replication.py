"""The replication check on stand-in builds: ``robust-transfer verdicts A B [C]`` compares the
claim labels and part labels each build states (glued values), and fails on any difference."""
import json

import nbformat
import pytest

from robust_transfer import build, cli


def _build(root, name, values):
    """A stand-in book build: one executed notebook holding ``values`` as myst-nb glue."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("")
    cell.outputs = [nbformat.v4.new_output(
        "display_data", data={"text/plain": repr(v)},
        metadata={"scrapbook": {"name": k, "mime_prefix": ""}}) for k, v in values.items()]
    nb.cells = [cell]
    out = root / name
    (out / "src" / "notebooks").mkdir(parents=True)
    nbformat.write(nb, out / "src" / "notebooks" / "02_transfer_vs_sample_size.ipynb")
    return out


STATED = {"ch02_verdict": "partly", "ch02_part_digits_gain_label": "holds",
          "ch02_part_digits_gain_text": "+4.3 [+1.0, +7.6]", "ch02_robust_label": "L2 ε=1",
          "ch02_part_digits_shrinks_label": "not testable at this scale"}


def test_identical_labels_replicate_though_intervals_move(tmp_path, capsys):
    a = _build(tmp_path, "A", STATED)
    b = _build(tmp_path, "B", {**STATED, "ch02_part_digits_gain_text": "+3.9 [+0.2, +7.7]"})
    c = _build(tmp_path, "C", STATED)
    table = build.compare_verdicts(a, b, c)
    assert list(table.columns) == ["name", "A", "B", "C", "same"]
    checked = table.dropna(subset=["same"])
    # the claim label and two part labels; the interval text and robust_label are not verdicts
    assert set(checked["name"]) == {"ch02_verdict", "ch02_part_digits_gain_label",
                                    "ch02_part_digits_shrinks_label"}
    assert checked["same"].all()
    assert cli.main(["verdicts", str(a), str(b), str(c)]) == 0
    assert "3 of 3 verdicts the same" in capsys.readouterr().out


def test_a_flipped_part_label_fails_the_check(tmp_path, capsys):
    a = _build(tmp_path, "A", STATED)
    b = _build(tmp_path, "B", {**STATED, "ch02_part_digits_gain_label": "undecided"})
    assert cli.main(["verdicts", str(a), str(b), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert (out["same"], out["compared"]) == (2, 3)
    flipped = [r for r in out["verdicts"] if r["same"] is False]
    assert [(r["name"], r["A"], r["B"]) for r in flipped] == [
        ("ch02_part_digits_gain_label", "holds", "undecided")]


def test_bad_uses(tmp_path):
    a = _build(tmp_path, "A", STATED)
    with pytest.raises(ValueError, match="at least two"):
        build.compare_verdicts(a)
    assert cli.main(["verdicts"]) == 2                       # neither builds nor a preset
    assert cli.main(["verdicts", str(a), "--preset", "tiny"]) == 2
    assert cli.main(["verdicts", str(tmp_path / "none"), str(a)]) == 2


RAW = {"ch03_verdict": "contradicted", "ch03_claim_key": "shape",
       "ch03_part_did_lowpass_label": "contradicted", "ch03_part_did_lowpass_raw": "contradicted",
       "ch03_part_did_stylized_label": "holds", "ch03_part_did_stylized_raw": "holds"}


def test_record_and_a_part_that_did_not_replicate_is_undecided(tmp_path, monkeypatch, capsys):
    from robust_transfer import claims
    from robust_transfer.claims import Claim, Part
    monkeypatch.setattr(claims, "REPLICATION_FILE", tmp_path / "replication.json")
    a = _build(tmp_path, "A", RAW)
    b = _build(tmp_path, "B", {**RAW, "ch03_part_did_lowpass_label": "undecided",
                               "ch03_part_did_lowpass_raw": "undecided", "ch03_verdict": "partly"})
    assert cli.main(["verdicts", str(a), str(b), "--record", "mini"]) == 1
    record = claims.replication("mini")
    assert record["builds"] == ["A", "B"]
    assert record["parts"]["shape/did_lowpass"] == {"A": "contradicted", "B": "undecided"}
    assert claims.replication("tiny") == {}
    parts = (Part("did_stylized", "s", "st", claims.HOLDS, 5.3, 2.5, 8.1),
             Part("did_lowpass", "l", "st", claims.CONTRADICTED, -1.8, -3.3, -0.3))
    c = claims.replicated(Claim("shape", "Section 2", "contradicted", parts), "mini")
    assert c.label == "partly"                       # recomputed over the stated labels
    low = c.parts[1]
    assert (low.label, low.raw_label) == (claims.UNDECIDED, claims.CONTRADICTED)
    assert "did not replicate (A: contradicted, B: undecided)" in low.why
    assert c.parts[0] == parts[0]                   # a replicated part is left alone
    same = Claim("shape", "Section 2", "contradicted", parts)
    assert claims.replicated(same, "tiny") == same and claims.replicated(same, None) == same
    assert claims.replicated(None, "mini") is None
    with pytest.raises(ValueError, match="distinct folder names"):
        build.replication_record(a, a)
