"""A stdio MCP server with one tool. `mcp` comes from requirements.txt, which Ash installs at deploy time."""

from mcp.server.fastmcp import FastMCP

server = FastMCP("wordsmith")


@server.tool()
def count_words(text: str) -> int:
    """Count the words in a text."""
    return len(text.split())


if __name__ == "__main__":
    server.run()
