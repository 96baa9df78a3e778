"""Computer use over the Model Context Protocol: `hvkube mcp` (stdio) and `/mcp` under
`hvkube serve` (streamable HTTP) offer the same tools to drive pool desktops from the host.

`leases` says which VMs a session holds, `tools` builds the server, `stdio` runs it.
The `mcp` SDK is imported only here, never by the rest of core.
"""
