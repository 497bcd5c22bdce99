"""The Navidrome library: its database, files, and listening history."""
