import os

pytest_plugins = ["tests.support.fixtures", "tests.support.attestor_fixtures", "tests.support.figures"]

# Referee honours HTTPS_PROXY/HTTP_PROXY/NO_PROXY (provider/proxy.py). The suite talks only to servers on 127.0.0.1:
# a developer's corporate proxy settings must not route it elsewhere. Tests of the proxy set their own.
for _name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"):
    os.environ.pop(_name, None)
