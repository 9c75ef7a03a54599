pytest_plugins = ["tests.support.fixtures", "tests.support.attestor_fixtures", "tests.support.figures"]
