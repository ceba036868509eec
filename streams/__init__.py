"""The Kafka side of rings: Faust app, topics, agents, tables, metrics and web.

Thin by design: it moves records between Kafka and the core in `rings`, and owns nothing
that decides an alert.
"""
