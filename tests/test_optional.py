"""interpscan.optional: a missing optional package is one line whose hint names interpscan's extra for it; a broken
one is named, even when another package imports it (timm importing a torchvision built for another torch)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from interpscan.errors import ModelError
from interpscan.optional import PACKAGES, import_optional, install_hint

ROOT = Path(__file__).resolve().parent.parent


def test_every_optional_package_has_its_extra_declared() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11 on
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for package in PACKAGES.values():
        assert any(req.lower().startswith(package.name.lower()) for req in extras[package.extra]), package
    assert extras["all"] == ["interpscan[images,hf,vision,static]"]
    assert sorted({p.extra for p in PACKAGES.values()}) == ["hf", "images", "static", "vision"]


@pytest.mark.parametrize("module", sorted(PACKAGES))
def test_a_missing_package_names_its_extra(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what an absent package looks like to import
    with pytest.raises(ModelError) as info:
        import_optional(module, purpose="the thing", error=ModelError)
    package = PACKAGES[module]
    assert str(info.value) == f"the thing needs {package.name}, which is not installed"
    assert info.value.hint == f"pip install 'interpscan[{package.extra}]' (or pip install {package.name})"
    assert info.value.hint == install_hint(module)


def _site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **packages: str) -> None:
    """Packages (name -> the code of its __init__.py) importable from a folder of their own."""
    for name, code in packages.items():
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "__init__.py").write_text(code)
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_broken_torchvision_is_named_when_timm_imports_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """torchvision's wheel built for another torch fails as timm imports it: reinstalling timm would not help."""
    _site(
        tmp_path,
        monkeypatch,
        timm="import torchvision\n",
        torchvision="raise RuntimeError('operator torchvision::nms does not exist\\n(C++ lines)')\n",
    )
    with pytest.raises(ModelError) as info:
        import_optional("timm", purpose="model 'timm:resnet18'", error=ModelError)
    assert str(info.value) == (
        "model 'timm:resnet18' needs timm, and torchvision (which it imports) is installed but fails to import: "
        "RuntimeError: operator torchvision::nms does not exist"
    )
    assert info.value.hint == (
        f"reinstall torchvision in the version built for this torch ({torch.__version__}); pip install "
        "'interpscan[vision]' (or pip install torchvision) picks it when the index has it"
    )


def test_a_torchvision_lacking_what_timm_imports_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The ImportError is raised in timm's code ("cannot import name … from torchvision.ops"), yet it is
    torchvision (another version than timm needs) that is to be reinstalled."""
    (tmp_path / "torchvision" / "ops").mkdir(parents=True)
    (tmp_path / "torchvision" / "ops" / "__init__.py").write_text("")
    _site(tmp_path, monkeypatch, timm="from torchvision.ops import nms\n", torchvision="")
    monkeypatch.delitem(sys.modules, "torchvision.ops", raising=False)
    with pytest.raises(ModelError) as info:
        import_optional("timm", purpose="model 'timm:resnet18'", error=ModelError)
    assert str(info.value).startswith(
        "model 'timm:resnet18' needs timm, and torchvision (which it imports) is installed but fails to import: "
        "ImportError: cannot import name 'nms' from 'torchvision.ops'"
    )
    assert str(info.value.hint).startswith("reinstall torchvision in the version built for this torch")


def test_a_broken_torchvision_named_when_timm_calls_it_building_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """timm imports fine and calls torchvision only when it builds the model: the error still names torchvision."""
    from interpscan.models import ModelSpec, build_model

    _site(
        tmp_path,
        monkeypatch,
        timm="import torchvision\n"
        "def list_models(): return ['resnet18']\n"
        "def create_model(name, pretrained=False): return torchvision.make()\n",
        torchvision="def make(): raise RuntimeError('operator torchvision::nms does not exist')\n",
    )
    with pytest.raises(ModelError) as info:
        build_model(ModelSpec("timm", "timm", "resnet18", {}))
    assert str(info.value) == (
        "model 'timm:resnet18' needs timm, and torchvision (which it imports) is installed but fails: "
        "RuntimeError: operator torchvision::nms does not exist"
    )
    assert "reinstall torchvision" in str(info.value.hint)


def test_a_broken_package_names_itself(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _site(tmp_path, monkeypatch, timm="import no_such_dependency_of_timm\n")
    with pytest.raises(ModelError) as info:
        import_optional("timm", purpose="model 'timm:resnet18'", error=ModelError)
    assert str(info.value) == (
        "model 'timm:resnet18' needs timm, and no_such_dependency_of_timm (which it imports) is not installed"
    )
    assert info.value.hint == (
        "pip install no_such_dependency_of_timm, or reinstall timm with its dependencies: pip install "
        "'interpscan[vision]' (or pip install timm)"
    )


def test_a_package_broken_in_its_own_code_names_itself_and_its_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _site(tmp_path, monkeypatch, timm="raise AttributeError('module has no attribute x')\n")
    with pytest.raises(ModelError) as info:
        import_optional("timm", purpose="model 'timm:resnet18'", error=ModelError)
    assert str(info.value) == (
        "model 'timm:resnet18' needs timm, which is installed but fails to import: AttributeError: module has no "
        "attribute x"
    )
    assert info.value.hint == "reinstall timm: pip install --force-reinstall timm (interpscan's extra: 'vision')"


def test_a_missing_package_another_one_needs_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _site(tmp_path, monkeypatch, timm="import torchvision\n")
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(ModelError) as info:
        import_optional("timm", purpose="model 'timm:resnet18'", error=ModelError, instead="use a zoo model")
    assert str(info.value) == "model 'timm:resnet18' needs torchvision, which is not installed"
    assert info.value.hint == "pip install 'interpscan[vision]' (or pip install torchvision), or use a zoo model"
