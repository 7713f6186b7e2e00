"""All I/O: database, SMTP, FTP, HTTP, PDF, XML."""
