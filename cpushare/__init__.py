"""The CPUShare system: sell orders, the seccomp-strict jail, the seller, the market.

Everything the live system runs (orders, jail, seller) uses only Python 3.11's standard
library: it is imported on the host by the builder and the tests, and runs inside the image.
"""
