"""The pure cores stay pure: nothing under mlcore/domain imports Django, directly or through what it imports."""
import ast
import subprocess
import sys
from pathlib import Path

import mlcore.domain

DOMAIN = Path(mlcore.domain.__file__).parent
MODULES = sorted(f"mlcore.domain.{path.stem}" for path in DOMAIN.glob("*.py") if path.stem != "__init__")


def _imported_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    return names


def test_no_module_in_mlcore_domain_imports_django():
    offenders = {
        path.name: sorted(name for name in _imported_names(path) if name.split(".")[0] in ("django", "rest_framework"))
        for path in DOMAIN.glob("*.py")
    }
    assert not {name: found for name, found in offenders.items() if found}


def test_the_domain_modules_import_in_a_fresh_interpreter_without_loading_django():
    code = f"import sys; import {', '.join(MODULES)}; assert 'django' not in sys.modules, 'django was loaded'"
    result = subprocess.run([sys.executable, "-c", code], cwd=DOMAIN.parent.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
