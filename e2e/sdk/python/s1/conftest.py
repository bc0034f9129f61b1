"""Fixtures of the s1 suite: the shared ones of tests/conftest.py (loaded
under a name of its own, so the two conftest modules do not clash), and the
hub's clock."""
import importlib.util
import pathlib

_spec = importlib.util.spec_from_file_location("sdk_e2e_common", pathlib.Path(__file__).parent.parent / "tests" / "conftest.py")
common = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(common)

registry = common.registry
make_device = common.make_device
connect_device = common.connect_device
