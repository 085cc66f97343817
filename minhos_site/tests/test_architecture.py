"""STYLE.md's layering, checked on the source: pure cores free of the frameworks, nothing imports monitoring."""
import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.embedded

BASE_DIR = Path(__file__).resolve().parents[2]
PURE_PACKAGES = ("trading/domain", "mlcore/domain", "mlcore/predictors", "monitoring/domain")
FRAMEWORKS = ("django", "rest_framework", "channels", "celery")
APPS = ("trading", "mlcore", "monitoring", "minhos_site")


def existing_pure_packages() -> list[Path]:
    return [BASE_DIR / p for p in PURE_PACKAGES if (BASE_DIR / p / "__init__.py").exists()]


def python_files(root: Path, *, skip_tests: bool) -> list[Path]:
    files = sorted(root.rglob("*.py"))
    if skip_tests:
        files = [f for f in files if "tests" not in f.relative_to(BASE_DIR).parts]
    return files


def module_name(path: Path) -> str:
    parts = list(path.relative_to(BASE_DIR).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in the file; `from x import y` also yields x.y."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module
            yield node.lineno, module
            for alias in node.names:
                if alias.name != "*":
                    yield node.lineno, f"{module}.{alias.name}"


def top_level(module: str) -> str:
    return module.split(".")[0]


def is_pure(module: str) -> bool:
    return any(module == p.replace("/", ".") or module.startswith(p.replace("/", ".") + ".") for p in PURE_PACKAGES)


def test_the_pure_core_packages_exist_and_have_modules_to_check():
    # Guards the scans below against passing vacuously (a moved package, a wrong root).
    packages = existing_pure_packages()
    assert BASE_DIR / "trading/domain" in packages
    assert len(python_files(BASE_DIR / "trading/domain", skip_tests=True)) >= 3


def test_pure_cores_import_no_framework_and_no_app_module_outside_the_cores():
    offences = []
    for package in existing_pure_packages():
        for path in python_files(package, skip_tests=True):
            for line, module in imported_modules(path):
                where = f"{path.relative_to(BASE_DIR)}:{line} imports {module}"
                if top_level(module) in FRAMEWORKS:
                    offences.append(where)
                # trading.models, trading.services... would bring Django in through the back door.
                elif top_level(module) in APPS and module not in APPS and not is_pure(module):
                    offences.append(where)
    assert offences == []


def test_importing_every_pure_core_module_loads_no_framework():
    modules = [module_name(path) for package in existing_pure_packages()
               for path in python_files(package, skip_tests=True)]
    probe = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {FRAMEWORKS!r})))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}

    process = subprocess.run([sys.executable, "-c", probe], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                             timeout=120)

    assert process.returncode == 0, process.stderr
    assert "trading.domain" in modules
    assert json.loads(process.stdout.strip().splitlines()[-1]) == []


def test_nothing_in_trading_or_mlcore_imports_monitoring():
    offences = [
        f"{path.relative_to(BASE_DIR)}:{line} imports {module}"
        for app in ("trading", "mlcore")
        for path in python_files(BASE_DIR / app, skip_tests=False)
        for line, module in imported_modules(path)
        if top_level(module) == "monitoring"
    ]
    assert offences == []
