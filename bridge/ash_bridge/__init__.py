"""The process inside each sandbox: the bridge between the Ash server and the Claude Agent SDK."""
