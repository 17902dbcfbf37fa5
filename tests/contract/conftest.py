import pytest

# The contract suites live in plain modules that test_*.py modules subclass: have pytest
# rewrite their asserts too, so a failure shows the values compared.
pytest.register_assert_rewrite("tests.contract.broker_contract",
                               "tests.contract.directory_contract")
