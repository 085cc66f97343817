"""The shape of the code, checked: import contracts (.importlinter), no import cycle, and no ML stack in the
processes that neither predict nor train."""
import json
import subprocess
import sys
from pathlib import Path

import grimp
import pytest
from django.conf import settings

# Not marked `embedded`: the checks read the source or start their own interpreter with an environment of their
# own, so the mode of the pass running them changes nothing; they run once, in the deployment pass.
PACKAGES = ("minhos_site", "trading", "mlcore", "monitoring")
ML_STACK = {"keras", "jax", "jaxlib", "xgboost", "lightgbm", "catboost", "sklearn", "tensorflow", "torch"}


def test_every_import_contract_is_kept():
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=settings.BASE_DIR, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout
    # The contracts the code's layout relies on are there (a deleted one would pass silently).
    for name in ("The pure cores", "mlcore reads trading through its selectors", "Nothing imports monitoring",
                 "without cycles"):
        assert name in result.stdout


def test_no_module_imports_itself_through_others():
    """A cycle between modules, even one dodged by an import inside a function, is a design knot: refused."""
    graph = grimp.build_graph(*PACKAGES, exclude_type_checking_imports=True)
    cycles = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            back = graph.find_shortest_chain(importer=imported, imported=module)
            if back:
                cycles.add(" -> ".join((module, *back)))
    assert not cycles, "import cycles:\n" + "\n".join(sorted(cycles))


@pytest.mark.parametrize("role, modules", [
    ("web", ["minhos_site.asgi"]),
    ("feed and beat", ["trading.management.commands.run_feed", "minhos_site.celery"]),
    ("trading worker", ["trading.tasks", "trading.workflow"]),
])
def test_processes_that_neither_predict_nor_train_do_not_load_the_ml_stack(role, modules, tmp_path):
    script = (
        "import importlib, json, os, sys, django\n"
        "os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'minhos_site.settings')\n"
        "django.setup()\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "from django.urls import get_resolver; get_resolver().url_patterns\n"  # every view module
        "from minhos_site.celery import app; app.loader.import_default_modules()\n"  # every task module
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "MINHOS_VAR_DIR": str(tmp_path), "PYTHONPATH": str(settings.BASE_DIR)}
    result = subprocess.run([sys.executable, "-c", script], cwd=settings.BASE_DIR, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = set(json.loads(result.stdout.strip().splitlines()[-1]))
    assert "django" in loaded and "celery" in loaded  # the probe did load the role's code
    assert not loaded & ML_STACK, f"the {role} process loads {sorted(loaded & ML_STACK)}"
