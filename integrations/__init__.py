"""HTTP clients of the processors (JPM, Usio) and the small outbound integrations (Slack, Transaction Service).

No Django models, no domain imports: clients speak HTTP and raise ``integrations.errors``; adapters turn
processor JSON into dataclasses. See docs/processors.md for the wire shapes.
"""
