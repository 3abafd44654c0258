"""A real MCP server for agentd's tests: the Python MCP SDK's FastMCP over streamable HTTP.

Tools: lookup (read-only), book (changes something; counted), slow, fails, big (100 KiB),
whoami (the Authorization header it got), add_tool (adds `extra` and says the list changed).
Routes beside /mcp: GET /stats (calls and headers seen), /redirect (307 to --redirect-to),
/broken (200 text/html: not MCP), /hostile (an error that echoes the token), POST /forget (every session id answers 404 from then on). tools/list is paginated (--page-size). Prints
"PORT <n>" once it listens on 127.0.0.1.
"""

import argparse
import json
import socket
import sys

import anyio
import uvicorn
from mcp import types
from mcp.server.fastmcp import Context, FastMCP
from mcp.server.lowlevel.server import NotificationOptions
from mcp.types import ToolAnnotations
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response

from parent_watch import exit_with

parser = argparse.ArgumentParser()
parser.add_argument("--json", action="store_true", help="answer POSTs with application/json, not event streams")
parser.add_argument("--page-size", type=int, default=3)
parser.add_argument("--require-auth", default="", help="answer 401 unless Authorization is 'Bearer <this>'")
parser.add_argument("--redirect-to", default="")
parser.add_argument("--quiet-changes", action="store_true", help="add_tool does not send notifications/tools/list_changed")
parser.add_argument("--parent-pid", type=int, default=0, help="exit when this process is gone (the test run)")
args = parser.parse_args()

mcp = FastMCP("agentd-test", host="127.0.0.1", json_response=args.json, stateless_http=False)
calls: dict[str, int] = {}
authorizations: list[str] = []


def count(name: str, argument: str = "") -> None:
    """Counts by tool, and by tool and argument (`book:Chez Paul`), so that tests sharing a server count their own calls."""
    calls[name] = calls.get(name, 0) + 1
    if argument:
        calls[f"{name}:{argument}"] = calls.get(f"{name}:{argument}", 0) + 1


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True), description="Weather of a city (read-only).")
def lookup(city: str) -> str:
    count("lookup", city)
    return f"weather in {city}: sunny, 21°C"


@mcp.tool(description="Book a table at a place (changes something).")
def book(place: str) -> str:
    count("book", place)
    return f"booked a table at {place}"


@mcp.tool(description="Waits, then answers.")
async def slow(seconds: float = 2.0) -> str:
    count("slow")
    await anyio.sleep(seconds)
    return f"slept {seconds} s"


@mcp.tool(description="Always fails.")
def fails() -> str:
    count("fails")
    raise ValueError("the tool failed on purpose")


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True), description="Returns 100 KiB of text.")
def big() -> str:
    count("big")
    return ("数据" + "x" * 98) * 1024


@mcp.tool(annotations=ToolAnnotations(readOnlyHint=True), description="The Authorization header this call came with.")
def whoami(ctx: Context) -> str:
    count("whoami")
    request = ctx.request_context.request
    return request.headers.get("authorization", "(none)") if request is not None else "(no request)"


@mcp.tool(description="Adds the tool `extra` and tells clients that the tool list changed.")
async def add_tool(ctx: Context) -> str:
    count("add_tool")

    def extra(text: str) -> str:
        """A tool that was not there at first."""
        count("extra")
        return f"extra: {text}"

    mcp.add_tool(extra, name="extra", annotations=ToolAnnotations(readOnlyHint=True))
    if not args.quiet_changes:
        await ctx.session.send_tool_list_changed()
    return "added the tool extra"


@mcp._mcp_server.list_tools()
async def paged(request: types.ListToolsRequest) -> types.ListToolsResult:
    tools = await mcp.list_tools()
    cursor = request.params.cursor if request is not None and request.params is not None else None
    if request is None:
        return types.ListToolsResult(tools=tools)
    start = int(cursor) if cursor else 0
    end = start + args.page_size
    return types.ListToolsResult(tools=tools[start:end], nextCursor=str(end) if end < len(tools) else None)


@mcp.custom_route("/stats", methods=["GET"])
async def stats(request: Request) -> Response:
    return JSONResponse({"calls": calls, "authorizations": authorizations})


@mcp.custom_route("/redirect", methods=["GET", "POST", "DELETE"])
async def redirect(request: Request) -> Response:
    return RedirectResponse(args.redirect_to, status_code=307)


@mcp.custom_route("/forget", methods=["POST"])
async def forget(request: Request) -> Response:
    """Forgets every session, as a restarted server would: their ids answer 404 from now on."""
    forgotten = len(mcp.session_manager._server_instances)
    mcp.session_manager._server_instances.clear()
    return JSONResponse({"forgotten": forgotten})


@mcp.custom_route("/hostile", methods=["POST"])
async def hostile(request: Request) -> Response:
    """A JSON-RPC error with a code no integer holds, echoing the caller's Authorization header."""
    echoed = request.headers.get("authorization", "")
    return JSONResponse({"jsonrpc": "2.0", "id": 1, "error": {"code": 1e300, "message": f"{echoed} is not welcome"}})


@mcp.custom_route("/broken", methods=["GET", "POST", "DELETE"])
async def broken(request: Request) -> Response:
    return PlainTextResponse("<html>not an MCP server</html>", media_type="text/html")


# FastMCP advertises tools.listChanged = false; this server does send the notification.
_initialization_options = mcp._mcp_server.create_initialization_options
mcp._mcp_server.create_initialization_options = lambda notification_options=None, experimental_capabilities=None: (
    _initialization_options(NotificationOptions(tools_changed=True), experimental_capabilities)
)

app = mcp.streamable_http_app()


class Guard:
    """Records each MCP request's Authorization header and, with --require-auth, refuses others."""

    def __init__(self, inner):
        self.inner = inner

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"].startswith("/mcp"):
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            authorizations.append(headers.get("authorization", ""))
            if args.require_auth and headers.get("authorization") != f"Bearer {args.require_auth}":
                response = JSONResponse({"error": "unauthorized"}, status_code=401)
                await response(scope, receive, send)
                return
        await self.inner(scope, receive, send)


# Shared servers live as long as the test run that started them, not longer.
exit_with(args.parent_pid)

sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
print(f"PORT {sock.getsockname()[1]}", flush=True)
config = uvicorn.Config(Guard(app), log_level="warning", lifespan="on")
server = uvicorn.Server(config)
# FastMCP's session manager runs in the app's lifespan.
anyio.run(lambda: server.serve(sockets=[sock]))
