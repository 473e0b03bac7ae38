"""Email: parsing incoming messages (parse.py) and sending replies over SMTP (send.py)."""
