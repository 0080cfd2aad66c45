"""The Textual chat app (`localgw chat`); installed as `localgw.tui`. Talks to the server over HTTP only."""
