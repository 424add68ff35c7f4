"""examples/digits_mlp.py (lr_find -> one-cycle schedule -> AdamW + ReduceOnPlateau) trains to > 90%."""

import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parents[2] / "examples" / "digits_mlp.py"


def test_digits_example_trains(capsys):
    spec = importlib.util.spec_from_file_location("digits_mlp", PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    accuracy = module.main(epochs=5)
    out = capsys.readouterr().out
    assert "lr_find suggests" in out and out.count("epoch ") == 5
    assert accuracy > 0.9
