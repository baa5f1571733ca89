"""A small MCP server for the README's worked example: notes kept in a directory.

    pip install "mcp>=2.3,<3"
    python docs/examples/notes_server.py          # speaks MCP over stdin/stdout

NOTES_DIR (default ./notes) holds one text file per note.
"""
import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer

NOTES = Path(os.environ.get("NOTES_DIR", "notes"))
server = MCPServer("notes")


@server.tool()
def list_notes() -> list[str]:
    """The names of all notes."""
    return sorted(p.stem for p in NOTES.glob("*.txt"))


@server.tool()
def read_note(name: str) -> str:
    """The text of one note."""
    return (NOTES / f"{Path(name).name}.txt").read_text(encoding="utf-8")


@server.tool()
def write_note(name: str, text: str) -> str:
    """Create or replace a note."""
    NOTES.mkdir(parents=True, exist_ok=True)
    (NOTES / f"{Path(name).name}.txt").write_text(text, encoding="utf-8")
    return f"saved {name}"


if __name__ == "__main__":
    server.run("stdio")
