"""mcpsec: security operations for MCP servers, as a library and a CLI.

from mcpsec.core import pkce
pair = pkce.generate()
"""

__version__ = "0.1.0"
