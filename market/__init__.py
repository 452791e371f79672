"""The CPUShare market: the service a research group runs to hand out jobs and credit CPUCoins.

Host-side only (it may use PyPI packages): an HTTP API on Starlette and uvicorn over a
SQLite store. Sellers lease jobs, extend their leases and post results; buyers upload
programs, submit jobs and collect accepted results. `openapi.py` documents the API (served
at /v1/openapi.json, printed by `livecd market openapi`).
"""
