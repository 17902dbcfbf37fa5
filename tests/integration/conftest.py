import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The tests use the one-letter secret of the brief on purpose; PyJWT warns about it.
    for item in items:
        if "tests/integration/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.filterwarnings(
                "ignore::jwt.warnings.InsecureKeyLengthWarning"))
