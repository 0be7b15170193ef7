"""`ash chat AGENT` without a message: a conversation on the terminal.

Input is read with GNU readline (the standard library's: line editing and a history kept in ~/.ash/chat_history);
a line ending in `\\` continues on the next, and a line of `\"\"\"` opens a block that the next `\"\"\"` closes. The
answer streams as in one-shot `chat`. Ctrl-C while a turn runs asks the server to interrupt it
(`POST /api/sessions/{id}/interrupt`) and keeps reading the stream to its end, so the prompt comes back once the
turn is over; a second Ctrl-C stops waiting. Ctrl-C at the prompt drops the line; `/exit` or Ctrl-D quits.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.markup import escape

from .client import AshClient
from .errors import AshClientError
from .render import TurnPrinter

__all__ = ["HISTORY_FILE", "Conversation", "read_message"]

HISTORY_FILE = "chat_history"
HISTORY_LENGTH = 1000
PROMPT = "> "
CONTINUE = "… "
BLOCK = '"""'
HELP = (
    "/exit quits (or Ctrl-D) · Ctrl-C interrupts the answer · end a line with \\ to go on, "
    f"or put a message between {BLOCK} lines · /session shows the session id"
)


@contextlib.contextmanager
def _readline(history: Path) -> Iterator[None]:
    """Line editing and a persistent history, when GNU readline is there (else plain input())."""
    try:
        import readline
    except ImportError:  # a Python without it still chats, without editing keys
        yield
        return
    with contextlib.suppress(OSError):
        readline.read_history_file(history)
    readline.set_history_length(HISTORY_LENGTH)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            history.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            readline.write_history_file(history)
            history.chmod(0o600)  # prompts may hold anything the user typed


def _forget_last() -> None:
    """Drop the line just read from the history: `/exit` should not be the line the up arrow brings back."""
    try:
        import readline
    except ImportError:
        return
    length = readline.get_current_history_length()
    if length:
        readline.remove_history_item(length - 1)


def read_message(read: Callable[[str], str] = input) -> str:
    """One message from the user, continuation lines and blocks joined with newlines (EOFError at the end)."""
    while True:
        line = read(PROMPT)
        if line.strip() == BLOCK:
            lines: list[str] = []
            while (more := read(CONTINUE)).strip() != BLOCK:
                lines.append(more)
            return "\n".join(lines)
        lines = []
        while line.endswith("\\"):
            lines.append(line[:-1])
            line = read(CONTINUE)
        lines.append(line)
        message = "\n".join(lines)
        if message.strip():
            return message


class _Interrupter:
    """While a turn streams, SIGINT interrupts the turn on the server instead of ending the program."""

    def __init__(self, client_factory: Callable[[], AshClient], session_id: str, err: Console) -> None:
        self._client_factory = client_factory
        self._session_id = session_id
        self._err = err
        self.requested = False
        self._previous: signal.Handlers | Callable[[int, FrameType | None], object] | int | None = None

    def __enter__(self) -> _Interrupter:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt  # the second Ctrl-C: stop waiting for the turn to end
        self.requested = True
        self._err.print("\n[yellow]⏹ interrupting the turn…[/] [dim](Ctrl-C again to stop waiting)[/]")
        # The stream is being read on this thread: the request goes from another, so both go on.
        threading.Thread(target=self._interrupt, daemon=True).start()

    def _interrupt(self) -> None:
        try:
            with self._client_factory() as client:
                client.interrupt(self._session_id)
        except AshClientError as exc:
            self._err.print(f"[red]could not interrupt the turn: {escape(exc.message)}[/]")


class Conversation:
    """The loop: read a message, stream its answer, again, until /exit or end of input."""

    def __init__(
        self,
        client: AshClient,
        client_factory: Callable[[], AshClient],
        session_id: str,
        out: Console,
        err: Console,
    ) -> None:
        self._client = client
        self._client_factory = client_factory
        self.session_id = session_id
        self._out = out
        self._err = err

    def run(self, history: Path, read: Callable[[str], str] = input) -> None:
        with _readline(history):
            while True:
                try:
                    message = read_message(read)
                except KeyboardInterrupt:
                    self._out.file.write("\n")  # off the abandoned prompt's line
                    self._out.file.flush()
                    self._err.print("[dim](Ctrl-C drops the line; /exit or Ctrl-D quits)[/]")
                    continue
                except EOFError:
                    self._out.file.write("\n")
                    return
                command = message.strip()
                if command.startswith("/"):
                    _forget_last()
                if command in ("/exit", "/quit"):
                    return
                if command == "/help":
                    self._err.print(f"[dim]{escape(HELP)}[/]")
                    continue
                if command == "/session":
                    self._err.print(f"[dim]session {self.session_id}[/]")
                    continue
                self.turn(message)

    def turn(self, message: str) -> None:
        printer = TurnPrinter(self._out, self._err)
        with _Interrupter(self._client_factory, self.session_id, self._err) as interrupter:
            try:
                for event, data in self._client.send_message_stream(self.session_id, message, include_partial=True):
                    printer.handle(event, data)
            except KeyboardInterrupt:
                printer.finish()
                self._err.print(f"[dim]stopped waiting; the turn may still end on the server ({self.session_id})[/]")
                return
            except AshClientError as exc:  # a refused message (409 busy, 410 ended) ends this turn, not the chat
                printer.finish()
                self._err.print(f"[bold red]Error:[/] {escape(exc.message)}")
                return
        printer.finish()
        if interrupter.requested and not printer.failed:  # the turn had ended before the interrupt came
            self._err.print("[dim]the turn had already ended[/]")
