"""Working examples of the SDK with the clients agent authors use: the openai client, litellm, mini-swe-agent.

Each runs against a live server (``--base-url``, default http://127.0.0.1:8000) and prints what the session
recorded; ``run(...)`` returns the same as a dict (the tests call it).
"""
