"""A small MCP server to try agentd's MCP tools with: two tools over streamable HTTP.

    make mcp-example            # or: .data/mcp-venv/bin/python examples/maps_server.py --port 8765

`geocode` only reads (marked readOnlyHint); `book_table` changes something, so an agent's
`require_approval` can let the first run freely and stop the second for a human.
"""

import argparse

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=8765)
args = parser.parse_args()

mcp = FastMCP("maps", host="127.0.0.1", port=args.port)

PLACES = {
    "paris": (48.8566, 2.3522),
    "beijing": (39.9042, 116.4074),
    "北京": (39.9042, 116.4074),
    "new york": (40.7128, -74.0060),
}


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True))
def geocode(city: str) -> str:
    """Latitude and longitude of a city."""
    found = PLACES.get(city.strip().lower())
    if found is None:
        return f"unknown city: {city} (try one of {', '.join(sorted(PLACES))})"
    return f"{city}: {found[0]}, {found[1]}"


@mcp.tool()
def book_table(restaurant: str, time: str) -> str:
    """Book a table at a restaurant (a real action: agentd asks a human first unless told not to)."""
    return f"booked a table at {restaurant} for {time}"


if __name__ == "__main__":
    print(f"MCP server 'maps' on http://127.0.0.1:{args.port}/mcp", flush=True)
    mcp.run(transport="streamable-http")
