"""Local fake processors (Usio, JPM) and outbound peers (Slack, Transaction Service): `python -m sandbox`.

They speak the wire protocols of docs/processors.md so the service runs and is tested end to end without the
real processors. Behaviour and the control API: docs/sandbox.md.
"""
