"""Authentication and roles: service API keys, end-user JWTs, and the role checks of SPEC §10."""
