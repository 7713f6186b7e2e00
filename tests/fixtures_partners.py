"""Loopback SMTP and FTP partner fixtures (filled in with the embedded servers)."""
