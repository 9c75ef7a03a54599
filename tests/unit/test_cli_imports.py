"""What every ``referee`` command pays at start-up (#23 item 7): structlog must not drag in rich (installed by
sigstore), which Referee's log processors never use; rich stays importable for whoever needs it."""

from __future__ import annotations

import subprocess
import sys


def test_the_cli_does_not_import_rich_and_rich_still_imports_afterwards() -> None:
    code = (
        "import sys, provider.cli, structlog\n"
        "print('rich' in sys.modules, structlog.dev.rich is None)\n"
        "import rich.console\n"
        "print(rich.console.Console is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split() == ["False", "True", "True"], out


def test_logged_exceptions_are_still_rendered_without_rich() -> None:
    code = (
        "import io, json\n"
        "from provider import logs\n"
        "buf = io.StringIO()\n"
        "logs.configure('info', json_output=True, stream=buf)\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    logs.structlog.get_logger('t').exception('boom')\n"
        "print(json.loads(buf.getvalue())['exception'].splitlines()[-1])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "ZeroDivisionError: division by zero", out
