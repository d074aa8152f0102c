"""Every module of the package imports, and every command-line module answers --help: an import broken by a rename or
by removing an "unused" import, or an argparse definition that fails (a duplicate flag, a bad default), shows up here
without running the module's real work."""
import importlib
import inspect
import pkgutil

import pytest

import mindsemantix


def _modules():
    return sorted(m.name for m in pkgutil.walk_packages(mindsemantix.__path__, "mindsemantix."))


def test_package_finds_its_modules():
    names = _modules()
    # a walk that silently found nothing would make the tests below pass vacuously
    for expected in ("mindsemantix.train", "mindsemantix.export", "mindsemantix.ridge", "mindsemantix.sim.evaluate", "mindsemantix.evalcaps.coco"):
        assert expected in names


@pytest.mark.parametrize("name", _modules())
def test_module_imports(name):
    importlib.import_module(name)


def _clis():
    out = []
    for name in _modules():
        main = getattr(importlib.import_module(name), "main", None)
        if callable(main) and inspect.signature(main).parameters:  # main(argv=None): parse argv, not sys.argv
            out.append(name)
    return out


@pytest.mark.parametrize("name", _clis())
def test_cli_help(name, capsys):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(name).main(["--help"])
    assert e.value.code == 0
    assert capsys.readouterr().out.startswith("usage:")
