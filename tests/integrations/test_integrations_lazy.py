"""`import adaptlr` and `import adaptlr.integrations` import no framework; each adapter loads on first use."""

import subprocess
import sys

FRAMEWORKS = [
    "keras",
    "jax",
    "optax",
    "timm",
    "transformers",
    "accelerate",
    "pytorch_lightning",
    "lightning",
    "torchvision",
]


def test_no_framework_is_imported_until_an_adapter_is_used():
    code = (
        "import sys, adaptlr, adaptlr.integrations as I\n"
        f"loaded = [m for m in {FRAMEWORKS!r} if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "assert not [m for m in sys.modules if m.startswith('adaptlr.integrations.')], 'a submodule loaded'\n"
        "assert sorted(I.__all__) == ['keras', 'lightning', 'optax', 'timm', 'transformers']\n"
        "I.optax\n"
        "assert 'optax' in sys.modules and 'keras' not in sys.modules and 'timm' not in sys.modules\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
