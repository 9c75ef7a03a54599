pytest_plugins = ["tests.support.fixtures", "tests.support.attestor_fixtures"]
