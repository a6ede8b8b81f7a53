"""Guard an MCP server built with the official SDK: `pip install 'mcpsec[server]'`.

See `mcpsec.server.app` for the three lines that wire it in, and the README section
"Protect your MCP server".
"""

from mcpsec.server.app import MCPVerifier, auth_options, guarded_app
from mcpsec.server.guard import Admission, Guard, Principal, rate_headers

__all__ = [
    "Admission",
    "Guard",
    "MCPVerifier",
    "Principal",
    "auth_options",
    "guarded_app",
    "rate_headers",
]
