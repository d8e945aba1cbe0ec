"""Client side of the container contract: requests, responses, previews."""
