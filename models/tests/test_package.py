import mindsemantix


def test_package_imports():
    assert mindsemantix.__doc__
