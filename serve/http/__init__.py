"""HTTP in and out: the Flask app, request reading and decoding, response encoding."""
